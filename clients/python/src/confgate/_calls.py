"""Request building and response checking shared by Client and
confgate.aio.Client: everything about a call but the network."""

from __future__ import annotations

import uuid
from typing import Any, List, Optional, Sequence, Tuple, Union

from ._cursor import Cursor, cursor_bytes, to_text
from ._digest import Digest
from ._keyspace import normalize_selector
from ._replica import ProtocolViolation
from ._types import ApplyResult, Delete, Entry, Header, Put, Snapshot, Version, VersionLike, WriteResult
from .v1 import config_pb2 as pb

CursorLike = Union[str, bytes, Cursor, None]
HeaderLike = Union[Header, Tuple[str, Union[bytes, str]]]
OperationLike = Union[Put, Delete, "pb.Operation"]


def get_request(key: str, min_cursor: CursorLike) -> pb.GetRequest:
    return pb.GetRequest(key=key, min_cursor=cursor_bytes(min_cursor))


def put_request(key: str, value: Union[bytes, str], content_type: str, headers: Sequence[HeaderLike],
                wait_applied: bool, if_absent: bool, if_version: Optional[VersionLike],
                request_id: Optional[str]) -> Tuple[pb.PutRequest, bool]:
    """The request, and whether it is conditional."""
    req = pb.PutRequest(key=key, value=_bytes(value), content_type=content_type, headers=_headers(headers),
                        wait_applied=wait_applied, request_id=_request_id(request_id))
    cond = _precondition(if_absent, if_version)
    if cond is not None:
        req.precondition.CopyFrom(cond)
    return req, cond is not None


def delete_request(key: str, wait_applied: bool, if_absent: bool, if_version: Optional[VersionLike],
                   request_id: Optional[str]) -> Tuple[pb.DeleteRequest, bool]:
    req = pb.DeleteRequest(key=key, wait_applied=wait_applied, request_id=_request_id(request_id))
    cond = _precondition(if_absent, if_version)
    if cond is not None:
        req.precondition.CopyFrom(cond)
    return req, cond is not None


def apply_request(operations: Sequence[OperationLike], request_id: Optional[str], wait_applied: bool,
                  validate_only: bool) -> Tuple[pb.ApplyRequest, bool]:
    ops = [_operation(o) for o in operations]
    req = pb.ApplyRequest(operations=ops, request_id=_request_id(request_id),
                          wait_applied=wait_applied, validate_only=validate_only)
    return req, any(o.HasField("precondition") for o in ops)


def write_result(resp: Union[pb.PutResponse, pb.DeleteResponse], request_id: str) -> WriteResult:
    return WriteResult(resp.version.partition, resp.version.offset, to_text(resp.cursor), resp.duplicate,
                       request_id)


def apply_result(resp: pb.ApplyResponse, request_id: str) -> ApplyResult:
    return ApplyResult(tuple(Version(v.partition, v.offset) for v in resp.versions), to_text(resp.cursor),
                       resp.duplicate, request_id)


def snapshot_request(prefixes: Sequence[str], min_cursor: CursorLike) -> pb.GetSnapshotRequest:
    return pb.GetSnapshotRequest(selector=pb.Selector(prefixes=normalize_selector(prefixes)),
                                 min_cursor=cursor_bytes(min_cursor))


class SnapshotBuilder:
    """Collects a GetSnapshot stream and checks it: entry count and digest.
    add() returns the Snapshot at the stream's end, None before."""

    def __init__(self) -> None:
        self._entries: List[Entry] = []
        self._digest = Digest()

    def add(self, m: pb.GetSnapshotResponse) -> Optional[Snapshot]:
        kind = m.WhichOneof("message")
        if kind == "chunk":
            for pe in m.chunk.entries:
                e = Entry.from_proto(pe)
                self._entries.append(e)
                self._digest.add(e.key, e.value, e.partition, e.offset)
        elif kind == "end":
            end = m.end
            d = self._digest.to_bytes()
            if end.entry_count != len(self._entries):
                raise ProtocolViolation(
                    f"snapshot has {len(self._entries)} entries, its end says {end.entry_count}", True)
            if end.digest and end.digest != d:
                raise ProtocolViolation(
                    f"snapshot digest {end.digest.hex()} does not match the received entries ({d.hex()})", True)
            Cursor.decode(end.cursor)
            return Snapshot(tuple(self._entries), to_text(end.cursor), bytes(end.digest), end.reason, end.reset)
        return None

    @staticmethod
    def unfinished() -> ProtocolViolation:
        return ProtocolViolation("snapshot stream ended without its end", True)


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
