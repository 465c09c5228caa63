"""Client: one-shot calls (get, put, delete, snapshot) against any of several
interchangeable gateways."""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence, Tuple, TypeVar, Union

import grpc

from ._channel import DEFAULT_MAX_RECEIVE, build_options, check_addrs, open_channel, token_source
from ._cursor import Cursor, cursor_bytes, to_text
from ._digest import Digest
from ._keyspace import normalize_selector
from ._replica import ProtocolViolation
from ._types import Entry, Header, Snapshot, WriteResult
from .v1 import config_pb2 as pb
from .v1 import config_pb2_grpc as pb_grpc

T = TypeVar("T")
CursorLike = Union[str, bytes, Cursor, None]
HeaderLike = Union[Header, Tuple[str, Union[bytes, str]]]


class Client:
    """Unary calls to confgate gateways. A call goes to the first address;
    when that gateway is UNAVAILABLE (down, not caught up, draining) it is
    retried on the next one. A put or delete retried that way may be
    written twice; the later record wins and holds the same value.

    Args:
        addrs: gateway addresses ("host:port" or any gRPC target).
        credentials: grpc.ChannelCredentials; None means plaintext.
        timeout: seconds, bound on each call (per address).
        max_receive_message_length: bytes; default 16 MiB like the Go client
            (None: gRPC's 4 MiB default, which gateways' chunking fits).
        channel_options: extra grpc channel options.
        token: a bearer token sent on every call as "authorization: Bearer
            <token>" metadata, for gateways run with --auth-tokens or
            --auth-jwks (confgate token new makes static ones).
        token_file: a file holding the token instead, re-read when it
            changes (checked at most once a second), for rotated Kubernetes
            or SPIFFE tokens; missing or invalid at start raises, later the
            last good token stays in use. Not together with token.
        insecure_token: send the token over plaintext to gateways that are
            not on this host. By default a token needs credentials (TLS),
            except to loopback addresses; ValueError otherwise.
    """

    def __init__(
        self,
        addrs: Sequence[str],
        *,
        credentials: Optional[grpc.ChannelCredentials] = None,
        timeout: float = 10.0,
        max_receive_message_length: Optional[int] = DEFAULT_MAX_RECEIVE,
        channel_options: Sequence[Tuple[str, Any]] = (),
        token: Optional[str] = None,
        token_file: Optional[str] = None,
        insecure_token: bool = False,
    ) -> None:
        self._addrs = check_addrs(addrs)
        self._timeout = timeout
        opts = build_options(max_receive_message_length, channel_options)
        tok = token_source(self._addrs, credentials, token, token_file, insecure_token)
        self._channels = [open_channel(a, credentials, opts, tok) for a in self._addrs]
        self._stubs = [pb_grpc.ConfigServiceStub(c) for c in self._channels]

    def close(self) -> None:
        for c in self._channels:
            c.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, fn: Callable[[pb_grpc.ConfigServiceStub], T]) -> T:
        last: Optional[grpc.RpcError] = None
        for stub in self._stubs:
            try:
                return fn(stub)
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                last = e
        assert last is not None
        raise last

    def get(self, key: str, *, min_cursor: CursorLike = None) -> Optional[Entry]:
        """The entry for key, or None when it does not exist. With
        min_cursor (e.g. a put's cursor) the gateway first waits, bounded,
        until it has applied it: read-your-writes from any gateway."""
        req = pb.GetRequest(key=key, min_cursor=cursor_bytes(min_cursor))
        try:
            resp = self._call(lambda s: s.Get(req, timeout=self._timeout))
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise
        return Entry.from_proto(resp.entry)

    def put(
        self,
        key: str,
        value: Union[bytes, str],
        *,
        content_type: str = "",
        headers: Sequence[HeaderLike] = (),
        wait_applied: bool = False,
    ) -> WriteResult:
        """Writes value to key; answers once Kafka acknowledged the record
        (acks=all). wait_applied: also wait until this gateway applied it."""
        if isinstance(value, str):
            value = value.encode("utf-8")
        hs = []
        for h in headers:
            k, v = (h.key, h.value) if isinstance(h, Header) else h
            hs.append(pb.Header(key=k, value=v.encode("utf-8") if isinstance(v, str) else v))
        req = pb.PutRequest(key=key, value=value, content_type=content_type, headers=hs,
                            wait_applied=wait_applied)
        resp = self._call(lambda s: s.Put(req, timeout=self._timeout))
        return WriteResult(resp.version.partition, resp.version.offset, to_text(resp.cursor))

    def delete(self, key: str, *, wait_applied: bool = False) -> WriteResult:
        """Writes a tombstone for key."""
        req = pb.DeleteRequest(key=key, wait_applied=wait_applied)
        resp = self._call(lambda s: s.Delete(req, timeout=self._timeout))
        return WriteResult(resp.version.partition, resp.version.offset, to_text(resp.cursor))

    def snapshot(self, prefixes: Sequence[str] = (), *, min_cursor: CursorLike = None) -> Snapshot:
        """The consistent state of a selector at one cursor, in key order.
        Its entry count and digest are checked; ProtocolViolation when they
        do not match what arrived."""
        req = pb.GetSnapshotRequest(selector=pb.Selector(prefixes=normalize_selector(prefixes)),
                                    min_cursor=cursor_bytes(min_cursor))

        def run(stub: pb_grpc.ConfigServiceStub) -> Snapshot:
            entries: List[Entry] = []
            d = Digest()
            for m in stub.GetSnapshot(req, timeout=self._timeout):
                kind = m.WhichOneof("message")
                if kind == "chunk":
                    for pe in m.chunk.entries:
                        e = Entry.from_proto(pe)
                        entries.append(e)
                        d.add(e.key, e.value, e.partition, e.offset)
                elif kind == "end":
                    end = m.end
                    if end.entry_count != len(entries):
                        raise ProtocolViolation(
                            f"snapshot has {len(entries)} entries, its end says {end.entry_count}", True)
                    if end.digest and end.digest != d.to_bytes():
                        raise ProtocolViolation(
                            f"snapshot digest {end.digest.hex()} does not match the received entries "
                            f"({d.to_bytes().hex()})", True)
                    Cursor.decode(end.cursor)
                    return Snapshot(tuple(entries), to_text(end.cursor), bytes(end.digest), end.reason, end.reset)
            raise ProtocolViolation("snapshot stream ended without its end", True)

        return self._call(run)

