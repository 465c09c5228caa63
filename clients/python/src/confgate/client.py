"""Client: one-shot calls (get, put, delete, apply, snapshot) against any of
several interchangeable gateways."""

from __future__ import annotations

import uuid
from typing import Any, Callable, List, Optional, Sequence, Tuple, TypeVar, Union

import grpc

from ._channel import DEFAULT_MAX_RECEIVE, build_options, check_addrs, open_channel, token_source
from ._cursor import Cursor, cursor_bytes, to_text
from ._digest import Digest
from ._errors import convert_write_error
from ._keyspace import normalize_selector
from ._replica import ProtocolViolation
from ._types import ApplyResult, Delete, Entry, Header, Put, Snapshot, Version, VersionLike, WriteResult
from .v1 import config_pb2 as pb
from .v1 import config_pb2_grpc as pb_grpc

T = TypeVar("T")
CursorLike = Union[str, bytes, Cursor, None]
HeaderLike = Union[Header, Tuple[str, Union[bytes, str]]]


class Client:
    """Unary calls to confgate gateways. A call goes to the first address;
    when that gateway is UNAVAILABLE (down, not caught up, draining) it is
    retried on the next one. Writes (put, delete, apply) carry a request
    ID, given or generated per call and the same on every retry, so a
    write retried that way lands once: when the first attempt had landed,
    the gateway answers with its result and duplicate=True.

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
        if_absent: bool = False,
        if_version: Optional[VersionLike] = None,
        request_id: Optional[str] = None,
    ) -> WriteResult:
        """Writes value to key; answers once Kafka acknowledged the record
        (acks=all). wait_applied: also wait until this gateway applied it.

        if_absent: write only if the key is absent (never written, or
        deleted); if_version: only if it is live at exactly this version
        (a Version, a (partition, offset) tuple, an Entry or a
        WriteResult). When the precondition fails nothing is written and
        PreconditionFailed is raised, with the key's current version.

        request_id: makes the write retry-safe (up to 128 printable ASCII
        characters); when None one is generated. A retry of this call uses
        the same ID, and a write whose ID already landed is answered with
        the original version and duplicate=True."""
        req = pb.PutRequest(key=key, value=_bytes(value), content_type=content_type, headers=_headers(headers),
                            wait_applied=wait_applied, request_id=_request_id(request_id))
        cond = _precondition(if_absent, if_version)
        if cond is not None:
            req.precondition.CopyFrom(cond)
        resp = self._write(lambda s: s.Put(req, timeout=self._timeout), cond is not None)
        return WriteResult(resp.version.partition, resp.version.offset, to_text(resp.cursor),
                           resp.duplicate, req.request_id)

    def delete(
        self,
        key: str,
        *,
        wait_applied: bool = False,
        if_absent: bool = False,
        if_version: Optional[VersionLike] = None,
        request_id: Optional[str] = None,
    ) -> WriteResult:
        """Writes a tombstone for key. if_absent, if_version and request_id
        as for put."""
        req = pb.DeleteRequest(key=key, wait_applied=wait_applied, request_id=_request_id(request_id))
        cond = _precondition(if_absent, if_version)
        if cond is not None:
            req.precondition.CopyFrom(cond)
        resp = self._write(lambda s: s.Delete(req, timeout=self._timeout), cond is not None)
        return WriteResult(resp.version.partition, resp.version.offset, to_text(resp.cursor),
                           resp.duplicate, req.request_id)

    def apply(
        self,
        operations: Sequence[Union[Put, Delete, "pb.Operation"]],
        *,
        request_id: Optional[str] = None,
        wait_applied: bool = False,
        validate_only: bool = False,
    ) -> ApplyResult:
        """Writes a change set, all or nothing: puts and deletes of several
        keys (each at most once), each with an optional precondition. No
        subscriber or snapshot ever sees part of it. When a precondition
        fails nothing is written and PreconditionFailed is raised, listing
        every key whose precondition failed with its current version.

        validate_only: check every rule, schema and precondition against
        the gateway's current state and answer as apply would, writing
        nothing (the result then has no versions). request_id and
        wait_applied as for put.

            client.apply([
                confgate.Put("app/a", "1", if_absent=True),
                confgate.Put("app/b", "2", if_version=entry.version),
                confgate.Delete("app/c"),
            ])
        """
        ops = [_operation(o) for o in operations]
        req = pb.ApplyRequest(operations=ops, request_id=_request_id(request_id),
                              wait_applied=wait_applied, validate_only=validate_only)
        conditional = any(o.HasField("precondition") for o in ops)
        resp = self._write(lambda s: s.Apply(req, timeout=self._timeout), conditional)
        return ApplyResult(tuple(Version(v.partition, v.offset) for v in resp.versions), to_text(resp.cursor),
                           resp.duplicate, req.request_id)

    def _write(self, fn: Callable[[pb_grpc.ConfigServiceStub], T], conditional: bool) -> T:
        try:
            return self._call(fn)
        except grpc.RpcError as e:
            err = convert_write_error(e, conditional)
            if err is e:
                raise
            raise err from None

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



def _bytes(v: Union[bytes, str]) -> bytes:
    return v.encode("utf-8") if isinstance(v, str) else bytes(v)


def _headers(headers: Sequence[HeaderLike]) -> List["pb.Header"]:
    hs = []
    for h in headers:
        k, v = (h.key, h.value) if isinstance(h, Header) else h
        hs.append(pb.Header(key=k, value=_bytes(v)))
    return hs


def _request_id(request_id: Optional[str]) -> str:
    """The given request ID, or a new one (32 hex digits) when None."""
    if request_id is None:
        return uuid.uuid4().hex
    if not isinstance(request_id, str):
        raise TypeError(f"request_id must be a str, not {type(request_id).__name__}")
    return request_id


def _precondition(if_absent: bool, if_version: Optional[Any]) -> Optional["pb.Precondition"]:
    if if_absent and if_version is not None:
        raise ValueError("if_absent and if_version exclude each other: give one")
    if if_absent:
        return pb.Precondition(absent=True)
    if if_version is None:
        return None
    if isinstance(if_version, pb.Version):
        p, off = if_version.partition, if_version.offset
    elif hasattr(if_version, "partition") and hasattr(if_version, "offset"):  # Version, Entry, WriteResult
        p, off = if_version.partition, if_version.offset
    else:
        try:
            p, off = if_version
        except (TypeError, ValueError):
            raise TypeError(f"if_version must be a Version or a (partition, offset) tuple, not {if_version!r}") from None
    if not isinstance(p, int) or not isinstance(off, int) or p < 0 or off < 0:
        raise ValueError(f"if_version {if_version!r}: partition and offset must be non-negative integers")
    return pb.Precondition(version=pb.Version(partition=p, offset=off))


def _operation(o: Union[Put, Delete, "pb.Operation"]) -> "pb.Operation":
    if isinstance(o, pb.Operation):
        return o
    if isinstance(o, Put):
        op = pb.Operation(key=o.key, value=_bytes(o.value), content_type=o.content_type, headers=_headers(o.headers))
    elif isinstance(o, Delete):
        op = pb.Operation(key=o.key, delete=True)
    else:
        raise TypeError(f"an operation is a confgate.Put, confgate.Delete or pb.Operation, not {type(o).__name__}")
    cond = _precondition(o.if_absent, o.if_version)
    if cond is not None:
        op.precondition.CopyFrom(cond)
    return op
