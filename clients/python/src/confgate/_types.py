"""Public value types."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Optional, Sequence, Tuple, Union

from .v1 import config_pb2 as pb


class Version(NamedTuple):
    """The Kafka position of the record that set an entry. A tuple, so it
    equals (partition, offset)."""

    partition: int
    offset: int


@dataclass(frozen=True)
class Header:
    """A Kafka record header carried with an entry."""

    key: str
    value: bytes


@dataclass(frozen=True)
class Entry:
    """One configuration key with its value, version and metadata.

    (partition, offset) is the entry's version: the Kafka position of the
    record that set it. Versions of one key only grow."""

    key: str
    value: bytes
    partition: int
    offset: int
    content_type: str = ""
    headers: Tuple[Header, ...] = ()

    @property
    def version(self) -> Version:
        return Version(self.partition, self.offset)

    def text(self, encoding: str = "utf-8") -> str:
        """The value decoded as text."""
        return self.value.decode(encoding)

    @classmethod
    def from_proto(cls, e: "pb.Entry") -> "Entry":
        if not e.key:
            raise ValueError("entry has no key")
        if not e.HasField("version"):
            raise ValueError(f"entry {e.key!r} has no version")
        check_version(e.key, e.version.partition, e.version.offset)
        return cls(
            key=e.key,
            value=bytes(e.value),
            partition=e.version.partition,
            offset=e.version.offset,
            content_type=e.content_type,
            headers=tuple(Header(h.key, bytes(h.value)) for h in e.headers),
        )

    def to_proto(self) -> "pb.Entry":
        """from_proto's inverse (the state file holds entries as a gateway
        sends them)."""
        return pb.Entry(key=self.key, value=self.value,
                        version=pb.Version(partition=self.partition, offset=self.offset),
                        content_type=self.content_type,
                        headers=[pb.Header(key=h.key, value=h.value) for h in self.headers])


def check_version(key: str, partition: int, offset: int) -> None:
    """Refuses a version that is no Kafka position: a negative partition or
    offset would lie "before" any cursor (an unknown partition is at 0) and,
    as another partition, would replace or delete any entry regardless of its
    version."""
    if partition < 0 or offset < 0:
        raise ValueError(
            f"entry {key!r} has version partition {partition} offset {offset}, not a Kafka position")


# Event kinds.
PUT = "put"
DELETE = "delete"
SNAPSHOT = "snapshot"
RESET = "reset"
LOADED = "loaded"


@dataclass(frozen=True)
class Event:
    """One change to a Subscription's view, passed to on_change.

    kind is "put" (key was set to entry), "delete" (key was deleted),
    "snapshot" (the first snapshot was applied: the view is synced),
    "reset" (a later snapshot replaced the whole view, or replaced a view
    loaded from the state file: keys may have appeared, changed or
    disappeared without individual events; read the view) or "loaded"
    (the view was loaded from the state file: the first event, before any
    gateway is contacted; a loaded view has no "snapshot" event, its
    changes arrive as puts and deletes or as one reset).
    cursor is the view's cursor (text form) once the message carrying the
    change was applied."""

    kind: str
    cursor: str
    key: str = ""
    entry: Optional[Entry] = None


@dataclass(frozen=True)
class Status:
    """The connection state of a Subscription."""

    connected: bool
    """A stream to a gateway delivers messages."""
    addr: str
    """The gateway of the current stream, or of the last attempt."""
    stale: bool
    """The view may be behind the topic: not synced yet (or only loaded
    from the state file), disconnected (it serves the last-known-good
    state), or the gateway said it has not heard from Kafka recently."""
    lag_records: int
    """The gateway's lag behind the topic, from the last progress message."""
    reconnects: int
    """Stream attempts after the first one."""
    resets: int
    """Snapshots that replaced an existing view."""
    last_error: Optional[BaseException] = field(default=None)
    """What ended the most recent failed stream (kept after a successful
    reconnect), or the permanent error that stopped the subscription."""
    from_file: bool = False
    """The view holds what was loaded from the state file and no gateway
    has answered yet (wait_synced has not returned); stale meanwhile."""
    state_file_error: Optional[BaseException] = field(default=None)
    """Why the state file was ignored at start, or why its last write
    failed; None once a write succeeded. The view is not affected, only
    what a restart would boot from."""


@dataclass(frozen=True)
class WriteResult:
    """The outcome of a put or delete: the record's version and a cursor
    that includes the write (pass it as min_cursor to read it back from any
    gateway). duplicate: the request ID had already landed, so nothing was
    written and the version is the original write's. request_id: the ID the
    write was sent with (given or generated)."""

    partition: int
    offset: int
    cursor: str
    duplicate: bool = False
    request_id: str = ""

    @property
    def version(self) -> Version:
        return Version(self.partition, self.offset)


VersionLike = Union[Version, Tuple[int, int]]


@dataclass(frozen=True)
class Put:
    """A put of a change set (Client.apply). if_absent: only if the key is
    absent; if_version: only if the key is live at exactly this version (a
    Version, a (partition, offset) tuple, or an Entry or WriteResult)."""

    key: str
    value: Union[bytes, str]
    content_type: str = ""
    headers: Sequence[Union[Header, Tuple[str, Union[bytes, str]]]] = ()
    if_absent: bool = False
    if_version: Optional[VersionLike] = None


@dataclass(frozen=True)
class Delete:
    """A delete of a change set (Client.apply), with the same optional
    precondition as Put."""

    key: str
    if_absent: bool = False
    if_version: Optional[VersionLike] = None


@dataclass(frozen=True)
class ApplyResult:
    """The outcome of Client.apply: the version of each operation's record,
    in request order (empty with validate_only), a cursor that includes the
    whole change set, duplicate (the request ID had already landed: the
    versions are the original ones) and the request ID it was sent with."""

    versions: Tuple[Version, ...]
    cursor: str
    duplicate: bool = False
    request_id: str = ""


@dataclass(frozen=True)
class Snapshot:
    """A consistent state of a selector at one cursor, checked against its
    entry count and digest."""

    entries: Tuple[Entry, ...]
    cursor: str
    digest: bytes
    reason: int = 0
    reset: bool = False
