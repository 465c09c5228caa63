"""Client: one-shot calls (get, put, delete, apply, snapshot) against any of
several interchangeable gateways."""

from __future__ import annotations

from typing import Callable, Optional, Sequence, TypeVar, Union

import grpc

from ._base import ClientBase
from ._calls import (CursorLike, HeaderLike, OperationLike, SnapshotBuilder, apply_request, apply_result,
                     delete_request, get_request, put_request, snapshot_request, write_result)
from ._channel import open_channel
from ._errors import convert_write_error
from ._stub import Stub, stub
from ._types import ApplyResult, Entry, Snapshot, VersionLike, WriteResult

T = TypeVar("T")


class Client(ClientBase):
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

    For asyncio, confgate.aio.Client has the same methods as coroutines.
    """

    def _setup(self) -> None:
        self._channels = [open_channel(a, self._credentials, self._options, self._token) for a in self._addrs]
        self._stubs = [stub(c) for c in self._channels]

    def close(self) -> None:
        for c in self._channels:
            c.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, fn: Callable[[Stub], T]) -> T:
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
        req = get_request(key, min_cursor)
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
        req, conditional = put_request(key, value, content_type, headers, wait_applied, if_absent, if_version,
                                       request_id)
        resp = self._write(lambda s: s.Put(req, timeout=self._timeout), conditional)
        return write_result(resp, req.request_id)

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
        req, conditional = delete_request(key, wait_applied, if_absent, if_version, request_id)
        resp = self._write(lambda s: s.Delete(req, timeout=self._timeout), conditional)
        return write_result(resp, req.request_id)

    def apply(
        self,
        operations: Sequence[OperationLike],
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
        req, conditional = apply_request(operations, request_id, wait_applied, validate_only)
        resp = self._write(lambda s: s.Apply(req, timeout=self._timeout), conditional)
        return apply_result(resp, req.request_id)

    def _write(self, fn: Callable[[Stub], T], conditional: bool) -> T:
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
        req = snapshot_request(prefixes, min_cursor)

        def run(st: Stub) -> Snapshot:
            b = SnapshotBuilder()
            for m in st.GetSnapshot(req, timeout=self._timeout):
                snap = b.add(m)
                if snap is not None:
                    return snap
            raise b.unfinished()

        return self._call(run)
