"""Unit tests that need no gateway: cursors, the digest (vectors computed by
the Go implementation, internal/digest), selector rules and the replica's
protocol rules."""

from __future__ import annotations

import pytest

import confgate
from confgate._digest import Digest, entry_hash
from confgate._keyspace import normalize_selector
from confgate._replica import ProtocolViolation, Replica, Session
from confgate.v1 import config_pb2 as pb

TOPIC_A = bytes([0xA]) + bytes(15)
TOPIC_B = bytes([0xB]) + bytes(15)


def cur(*offsets: int, topic: bytes = TOPIC_A) -> confgate.Cursor:
    return confgate.Cursor(topic, tuple(offsets))


# Cursors.

def test_cursor_roundtrip_and_order() -> None:
    c = cur(0, 300, 1 << 40)
    assert confgate.Cursor.decode(c.encode()) == c
    assert confgate.Cursor.parse(str(c)) == c
    assert "=" not in str(c) and "+" not in str(c)
    assert cur(5, 5).covers(cur(5, 4)) and cur(5, 5).covers(cur(5)) and not cur(5, 4).covers(cur(5, 5))
    assert not cur(9, 9, topic=TOPIC_B).covers(cur(1, 1))
    assert cur(3).offset(7) == 0


@pytest.mark.parametrize("bad", [b"", b"\x02" + bytes(17), b"\x01" + bytes(10), b"\x01" + bytes(16),
                                 b"\x01" + bytes(16) + b"\x02\x01", b"\x01" + bytes(16) + b"\x00\x00"])
def test_cursor_decode_errors(bad: bytes) -> None:
    with pytest.raises(ValueError):
        confgate.Cursor.decode(bad)


# Digest: values from the Go implementation (internal/digest).

def test_digest_matches_go() -> None:
    hi, lo = entry_hash("payments/db/timeout", b"5s", 3, 42)
    assert (hi, lo) == (0x4485EB8098F5777B, 0x50F283F16879F4E4)
    d = Digest()
    d.add("payments/db/timeout", b"5s", 3, 42)
    d.add("a", b"1", 0, 0)
    d.add("b", b"", 5, 1 << 40)
    assert d.to_bytes().hex() == "288cce57bf6910e8a573dec74376ee71"
    d.remove("a", b"1", 0, 0)
    d.add("a", b"1", 0, 0)
    assert d.to_bytes().hex() == "288cce57bf6910e8a573dec74376ee71"
    big = Digest()
    big.add("k/\u00e9", bytes(i % 256 for i in range(300)), 2147483647, 9007199254740993)
    assert big.to_bytes().hex() == "7f7d308876c15e1b9fa34765e0ab0668"
    assert Digest().to_bytes() == bytes(16)


# Selectors.

def test_selector_normalized_like_the_gateway() -> None:
    assert normalize_selector(["db/", "app/", "app/x/", "db/"]) == ["app/", "db/"]
    assert normalize_selector(["app/", ""]) == []
    assert normalize_selector([]) == []
    for bad in (["/abs"], ["a//b"], ["a\x00"], ["x" * 1025]):
        with pytest.raises(ValueError):
            normalize_selector(bad)
    with pytest.raises(TypeError):
        normalize_selector("app/")  # type: ignore[arg-type]


# The replica: the protocol rules, message by message.

def ent(key: str, value: str, p: int, off: int) -> pb.Entry:
    return pb.Entry(key=key, value=value.encode(), version=pb.Version(partition=p, offset=off))


def digest_of(*es: pb.Entry) -> bytes:
    d = Digest()
    for e in es:
        d.add(e.key, e.value, e.version.partition, e.version.offset)
    return d.to_bytes()


def chunk(*es: pb.Entry) -> pb.SubscribeResponse:
    return pb.SubscribeResponse(snapshot_chunk=pb.SnapshotChunk(entries=es))


def end(c: confgate.Cursor, reason: int, *es: pb.Entry) -> pb.SubscribeResponse:
    return pb.SubscribeResponse(snapshot_end=pb.SnapshotEnd(
        cursor=c.encode(), reason=reason, reset=reason != pb.SNAPSHOT_REASON_INITIAL,
        entry_count=len(es), digest=digest_of(*es)))


def snapshot(c: confgate.Cursor, reason: int, *es: pb.Entry):
    return [chunk(e) for e in es] + [end(c, reason, *es)]


def delta(c: confgate.Cursor, *changes: pb.Change) -> pb.SubscribeResponse:
    return pb.SubscribeResponse(delta=pb.Delta(cursor=c.encode(), changes=changes))


def put(e: pb.Entry) -> pb.Change:
    return pb.Change(put=e)


def delete(key: str, p: int, off: int) -> pb.Change:
    return pb.Change(delete=pb.Deletion(key=key, version=pb.Version(partition=p, offset=off)))


def progress(c: confgate.Cursor) -> pb.SubscribeResponse:
    return pb.SubscribeResponse(progress=pb.Progress(cursor=c.encode(), lag_records=3, stale=True))


def feed(r: Replica, s: Session, msgs) -> list:
    events = []
    for m in msgs:
        events += r.handle(s, m).events
    return events


def view(r: Replica) -> list:
    return sorted(f"{e.key}={e.value.decode()}@{e.partition}:{e.offset}" for e in r.entries.values())


def test_snapshot_then_deltas() -> None:
    r, s = Replica(), Session(resumed=False)
    a, b, c, x = ent("app/a", "1", 0, 0), ent("app/b", "2", 1, 0), ent("app/c", "3", 0, 1), ent("db/x", "9", 1, 1)
    evs = feed(r, s, [chunk(a, b), chunk(c)])
    assert evs == [] and r.cursor is None and r.entries == {}  # nothing visible before the end
    evs = feed(r, s, [chunk(x), end(cur(2, 2), pb.SNAPSHOT_REASON_INITIAL, a, b, c, x)])
    assert [e.kind for e in evs] == ["snapshot"] and len(r.entries) == 4
    evs = feed(r, s, [delta(cur(4, 3), put(ent("app/b", "2b", 1, 2)), delete("app/c", 0, 2), put(ent("app/d", "4", 0, 3))),
                      progress(cur(5, 3))])
    assert [(e.kind, e.key) for e in evs] == [("put", "app/b"), ("delete", "app/c"), ("put", "app/d")]
    assert evs[0].cursor == str(cur(4, 3))
    assert view(r) == ["app/a=1@0:0", "app/b=2b@1:2", "app/d=4@0:3", "db/x=9@1:1"]
    assert r.cursor == cur(5, 3)
    assert r.digest.to_bytes() == digest_of(a, ent("app/b", "2b", 1, 2), ent("app/d", "4", 0, 3), x)


def test_older_version_ignored() -> None:
    r, s = Replica(), Session(resumed=False)
    feed(r, s, snapshot(cur(10), pb.SNAPSHOT_REASON_INITIAL, ent("k", "new", 0, 8), ent("j", "old", 0, 2)))
    evs = feed(r, s, [delta(cur(11), put(ent("k", "older", 0, 5)), put(ent("j", "newer", 0, 9)), delete("k", 0, 7)),
                      delta(cur(12), put(ent("k", "same", 0, 8)))])
    assert [(e.kind, e.key) for e in evs] == [("put", "j")]
    assert view(r) == ["j=newer@0:9", "k=new@0:8"]
    assert r.cursor == cur(12)


@pytest.mark.parametrize("bad", [
    [delta(cur(5, 4), put(ent("k", "v2", 1, 3)))],                          # delta behind
    [delta(cur(9, 9, topic=TOPIC_B), put(ent("k", "v2", 1, 8)))],            # delta of another topic
    [progress(cur(4, 5))],                                                  # progress behind
    snapshot(cur(3, 5), pb.SNAPSHOT_REASON_INITIAL, ent("k", "v0", 0, 1)),   # snapshot behind
    snapshot(cur(3, 5), pb.SNAPSHOT_REASON_HISTORY_EXPIRED, ent("k", "v0", 0, 1)),  # reset, but behind
    [delta(cur(6, 5), put(ent("k", "v2", 0, 6)))],                          # change past its own cursor
])
def test_never_backwards(bad) -> None:
    r, s = Replica(), Session(resumed=True)
    feed(r, Session(resumed=False), snapshot(cur(5, 5), pb.SNAPSHOT_REASON_INITIAL, ent("k", "v1", 0, 4)))
    with pytest.raises(ProtocolViolation) as e:
        feed(r, s, bad)
    assert not e.value.fresh
    assert r.cursor == cur(5, 5) and view(r) == ["k=v1@0:4"]


@pytest.mark.parametrize("second,want,cursor", [
    (snapshot(cur(6, 2), pb.SNAPSHOT_REASON_SLOW_SUBSCRIBER, ent("a", "1b", 0, 4)), ["a=1b@0:4"], cur(6, 2)),
    (snapshot(cur(1), pb.SNAPSHOT_REASON_STATE_REBUILT, ent("a", "0", 0, 0)), ["a=0@0:0"], cur(1)),
    (snapshot(cur(1, topic=TOPIC_B), pb.SNAPSHOT_REASON_TOPIC_CHANGED, ent("z", "26", 0, 0)), ["z=26@0:0"],
     cur(1, topic=TOPIC_B)),
    ([end(cur(5, 5), pb.SNAPSHOT_REASON_HISTORY_EXPIRED)], [], cur(5, 5)),
])
def test_reset_replaces_view(second, want, cursor) -> None:
    r, s = Replica(), Session(resumed=True)
    feed(r, s, snapshot(cur(3, 1), pb.SNAPSHOT_REASON_INITIAL, ent("a", "1", 0, 0), ent("b", "2", 0, 1)))
    evs = feed(r, s, second)
    assert [e.kind for e in evs] == ["reset"] and evs[0].cursor == str(cursor)
    assert view(r) == want and r.cursor == cursor


@pytest.mark.parametrize("field", ["digest", "entry_count"])
def test_snapshot_checks(field: str) -> None:
    r, s = Replica(), Session(resumed=False)
    msgs = snapshot(cur(4), pb.SNAPSHOT_REASON_INITIAL, ent("a", "1", 0, 2), ent("b", "2", 0, 1))
    if field == "digest":
        msgs[-1].snapshot_end.digest = digest_of(ent("a", "1", 0, 0))
    else:
        msgs[-1].snapshot_end.entry_count = 3
    with pytest.raises(ProtocolViolation) as e:
        feed(r, s, msgs)
    assert e.value.fresh and r.cursor is None and r.entries == {}


def test_snapshot_entry_past_its_cursor() -> None:
    r, s = Replica(), Session(resumed=False)
    with pytest.raises(ProtocolViolation):
        feed(r, s, snapshot(cur(4), pb.SNAPSHOT_REASON_INITIAL, ent("a", "1", 0, 4)))


def test_other_topic_without_resume_is_accepted() -> None:
    r = Replica()
    feed(r, Session(resumed=False), snapshot(cur(9), pb.SNAPSHOT_REASON_INITIAL, ent("a", "1", 0, 0)))
    feed(r, Session(resumed=False), snapshot(cur(1, topic=TOPIC_B), pb.SNAPSHOT_REASON_INITIAL, ent("b", "1", 0, 0)))
    assert view(r) == ["b=1@0:0"] and r.cursor == cur(1, topic=TOPIC_B)


# Channel options.

def test_channel_options_keepalive_defaults_and_overrides() -> None:
    from confgate._channel import build_options

    opts = dict(build_options(1 << 20, ()))
    assert opts == {
        "grpc.keepalive_time_ms": 20_000,
        "grpc.keepalive_timeout_ms": 10_000,
        "grpc.max_receive_message_length": 1 << 20,
    }
    given = build_options(None, [("grpc.keepalive_time_ms", 60_000), ("grpc.primary_user_agent", "x")])
    assert [k for k, _ in given].count("grpc.keepalive_time_ms") == 1
    assert dict(given) == {
        "grpc.keepalive_time_ms": 60_000,
        "grpc.keepalive_timeout_ms": 10_000,
        "grpc.primary_user_agent": "x",
    }
