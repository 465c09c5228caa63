"""The protocol rules of a subscription, without any networking: snapshot
buffering, checks, never going backwards. A port of client/replica.go."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple, Union

from ._cursor import Cursor, to_text
from ._digest import Digest
from ._errors import ConfgateError
from ._types import DELETE, PUT, RESET, SNAPSHOT, Entry, Event, check_version
from .v1 import config_pb2 as pb

_REASON = pb.SnapshotReason


class ProtocolViolation(ConfgateError):
    """A gateway message the client refused to apply. The stream is dropped;
    nothing of the offending message was applied. fresh asks to resubscribe
    without a cursor: the gateway's view and ours may disagree."""

    def __init__(self, msg: str, fresh: bool) -> None:
        super().__init__("gateway protocol violation: " + msg)
        self.msg = msg
        self.fresh = fresh


@dataclass
class _Builder:
    entries: Dict[str, Entry] = field(default_factory=dict)
    digest: Digest = field(default_factory=Digest)
    # Per partition, one past the highest offset received: every entry must
    # lie before the snapshot's cursor.
    next: Dict[int, int] = field(default_factory=dict)


@dataclass
class Session:
    """Per-stream state."""

    resumed: bool
    building: Optional[_Builder] = None


@dataclass
class Result:
    changed: bool = False  # the entries changed
    moved: bool = False  # only the cursor moved
    events: List[Event] = field(default_factory=list)
    reset: bool = False  # a snapshot replaced an existing view
    # vouched: the message carried a cursor the view now stands at (a
    # snapshot end, a delta, a progress cursor that passed the checks).
    vouched: bool = False
    first: bool = False  # the first message that vouched for this view
    progress: Optional["pb.Progress"] = None


def _newer(partition: int, offset: int, old: Entry) -> bool:
    """Whether version (partition, offset) may replace old. In the same
    partition the offset must grow; another partition is accepted, as the
    gateway decides which partition owns a key."""
    return partition != old.partition or offset > old.offset


class Replica:
    """The working copy of a view. handle() either applies a whole message or
    raises ProtocolViolation having applied nothing. Not thread-safe: the
    caller serializes access."""

    def __init__(self) -> None:
        self.entries: Dict[str, Entry] = {}
        self.digest = Digest()
        self.cursor: Optional[Cursor] = None  # set once synced
        # Ask the next stream to start without a resume cursor; set after the
        # gateway refused the cursor or a snapshot failed its checks, cleared
        # once a snapshot is applied.
        self.fresh = False
        # A gateway vouched for the view: it applied a snapshot, or a delta
        # or progress cursor that covers the view's. A view loaded from the
        # state file is synced (its cursor is meaningful and is resumed
        # from) but not live until then.
        self.live = False
        # Bumped by every change of entries or cursor, so that a published
        # View can be reused until the next one.
        self.generation = 0

    @property
    def synced(self) -> bool:
        return self.cursor is not None

    def handle(self, s: Session, m: "pb.SubscribeResponse") -> Result:
        kind = m.WhichOneof("message")
        if kind == "snapshot_chunk":
            self._chunk(s, m.snapshot_chunk.entries)
            return Result()
        if kind == "snapshot_end":
            res = self._snapshot_end(s, m.snapshot_end)
        elif kind == "delta":
            res = self._delta(s, m.delta)
        elif kind == "progress":
            res = self._progress(s, m.progress)
        else:
            return Result()  # an unknown message kind from a newer gateway
        if res.changed or res.moved:
            self.generation += 1
        if res.vouched and not self.live:
            self.live = res.first = True
        return res

    def _chunk(self, s: Session, entries: Iterable["pb.Entry"]) -> None:
        if s.building is None:
            s.building = _Builder()
        b = s.building
        for pe in entries:
            try:
                e = Entry.from_proto(pe)
            except ValueError as err:
                raise ProtocolViolation(f"snapshot chunk: {err}", True) from None
            old = b.entries.get(e.key)
            if old is not None:
                b.digest.remove(old.key, old.value, old.partition, old.offset)
            b.entries[e.key] = e
            b.digest.add(e.key, e.value, e.partition, e.offset)
            if e.offset + 1 > b.next.get(e.partition, 0):
                b.next[e.partition] = e.offset + 1

    def _snapshot_end(self, s: Session, end: "pb.SnapshotEnd") -> Result:
        b = s.building or _Builder()
        s.building = None
        try:
            nxt = Cursor.decode(end.cursor)
        except ValueError as err:
            raise ProtocolViolation(f"snapshot end: {err}", True) from None
        if len(b.entries) != end.entry_count:
            raise ProtocolViolation(
                f"snapshot has {len(b.entries)} entries, its end says {end.entry_count}", True)
        # A gateway always sends the digest; an empty one (a third-party
        # gateway that does not compute it) is not checked.
        if end.digest and end.digest != b.digest.to_bytes():
            raise ProtocolViolation(
                f"snapshot digest {end.digest.hex()} does not match the received entries "
                f"({b.digest.to_bytes().hex()})", True)
        for p, n in b.next.items():
            if n > nxt.offset(p):
                raise ProtocolViolation(
                    f"snapshot holds an entry at partition {p} offset {n - 1}, at or past its cursor "
                    f"{nxt.offset(p)}", True)
        if self.cursor is not None and not _snapshot_may_replace(self.cursor, nxt, end, s.resumed):
            raise ProtocolViolation(
                f"snapshot cursor {nxt} (reason {end.reason}, reset {end.reset}) is behind the "
                f"view's cursor {self.cursor}", False)
        reset = self.cursor is not None
        self.entries, self.digest, self.cursor, self.fresh = b.entries, b.digest, nxt, False
        return Result(changed=True, reset=reset, vouched=True,
                      events=[Event(RESET if reset else SNAPSHOT, str(nxt))])

    def _delta(self, s: Session, d: "pb.Delta") -> Result:
        if s.building is not None:
            raise ProtocolViolation("delta in the middle of a snapshot", True)
        if self.cursor is None:
            raise ProtocolViolation("delta before any snapshot", True)
        nxt = self._advance(d.cursor, "delta")
        ops: List[Tuple[Optional[Entry], Optional["pb.Deletion"]]] = []
        for i, c in enumerate(d.changes):
            kind = c.WhichOneof("change")
            if kind == "put":
                try:
                    e = Entry.from_proto(c.put)
                except ValueError as err:
                    raise ProtocolViolation(f"delta change {i}: {err}", False) from None
                ops.append((e, None))
                p, off = e.partition, e.offset
            elif kind == "delete":
                if not c.delete.key or not c.delete.HasField("version"):
                    raise ProtocolViolation(f"delta change {i}: deletion without key or version", False)
                try:
                    check_version(c.delete.key, c.delete.version.partition, c.delete.version.offset)
                except ValueError as err:
                    raise ProtocolViolation(f"delta change {i}: {err}", False) from None
                ops.append((None, c.delete))
                p, off = c.delete.version.partition, c.delete.version.offset
            else:
                raise ProtocolViolation(f"delta change {i} is empty", False)
            if off >= nxt.offset(p):
                raise ProtocolViolation(
                    f"delta change {i} at partition {p} offset {off} is at or past the delta's "
                    f"cursor {nxt.offset(p)}", False)
        res = Result(moved=True, vouched=True)
        cs = str(nxt)
        cur = self.cursor
        for put, dele in ops:
            # A change below the view's cursor in its partition was applied
            # already or superseded: ignored (applied to a key deleted
            # since, it would bring the key back).
            if put is not None:
                p, off = put.partition, put.offset
            else:
                assert dele is not None
                p, off = dele.version.partition, dele.version.offset
            if off < cur.offset(p):
                continue
            if put is not None:
                old = self.entries.get(put.key)
                if old is not None and not _newer(put.partition, put.offset, old):
                    continue
                if old is not None:
                    self.digest.remove(old.key, old.value, old.partition, old.offset)
                self.entries[put.key] = put
                self.digest.add(put.key, put.value, put.partition, put.offset)
                res.events.append(Event(PUT, cs, put.key, put))
                continue
            assert dele is not None
            old = self.entries.get(dele.key)
            if old is None or not _newer(dele.version.partition, dele.version.offset, old):
                continue
            del self.entries[dele.key]
            self.digest.remove(old.key, old.value, old.partition, old.offset)
            res.events.append(Event(DELETE, cs, old.key))
        res.changed = bool(res.events)
        self.cursor = nxt
        return res

    def _progress(self, s: Session, p: "pb.Progress") -> Result:
        res = Result(progress=p)
        # A cursor means something only against a view; during a snapshot the
        # view is about to be replaced and the end carries the cursor.
        if self.cursor is None or s.building is not None or not p.cursor:
            return res
        nxt = self._advance(p.cursor, "progress")
        res.moved = not nxt.equals(self.cursor)
        res.vouched = True
        self.cursor = nxt
        return res

    def _advance(self, b: bytes, what: str) -> Cursor:
        """Decodes a delta or progress cursor and checks that it does not move
        the view backwards."""
        assert self.cursor is not None
        try:
            nxt = Cursor.decode(b)
        except ValueError as err:
            raise ProtocolViolation(f"{what}: {err}", False) from None
        if nxt.topic != self.cursor.topic:
            raise ProtocolViolation(
                f"{what} cursor {nxt} is of topic {to_text(nxt.topic)}, the view's cursor {self.cursor} "
                f"of topic {to_text(self.cursor.topic)}", False)
        if not nxt.covers(self.cursor):
            raise ProtocolViolation(f"{what} cursor {nxt} is behind the view's cursor {self.cursor}", False)
        return nxt


def _snapshot_may_replace(cur: Cursor, nxt: Cursor, end: "pb.SnapshotEnd", resumed: bool) -> bool:
    """Never backwards: a snapshot must cover the view's cursor, unless the
    gateway flagged a reset that legitimately moves versions (another topic,
    or state rebuilt after a truncation). A snapshot of another topic on a
    stream without a resume cursor is accepted too: the gateway had nothing
    to flag it against, and cursors of two topics cannot be compared."""
    if nxt.covers(cur):
        return True
    other_topic = nxt.topic != cur.topic
    if end.reset and (other_topic or end.reason in (_REASON.SNAPSHOT_REASON_TOPIC_CHANGED,
                                                     _REASON.SNAPSHOT_REASON_STATE_REBUILT)):
        return True
    return other_topic and not resumed
