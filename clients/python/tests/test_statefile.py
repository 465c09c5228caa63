"""The state file (state_file=): the Go client's format (client/statefile.go),
its checks on load, the atomic write, and a Subscription that boots from it
while no gateway answers and then resumes from its cursor."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path
from typing import List, Optional, Sequence

import google_crc32c
import pytest

import confgate
from confgate._cursor import uvarint
from confgate._statefile import (MAX_STATE_RECORD, STATE_CHUNK_BYTES, StateFileError, read_state_file,
                                 write_state_file)
from confgate.v1 import config_pb2 as pb

from test_fake_gateway import eventually, gateways, hold, subscribe  # noqa: F401 (gateways is a fixture)
from test_unit import cur, delta, digest_of, end, ent, put, snapshot

INITIAL = pb.SNAPSHOT_REASON_INITIAL


def record(m: bytes) -> bytes:
    return uvarint(len(m)) + m


def state_bytes(prefixes: Sequence[str], msgs: Sequence[pb.SubscribeResponse], *, version: int = 1,
                magic: bytes = b"CGSTATE", crc: Optional[int] = None, trailer: bytes = b"") -> bytes:
    """A state file built by hand, record by record, with a correct checksum
    unless crc is given."""
    body = magic + bytes([version]) + record(pb.Selector(prefixes=list(prefixes)).SerializeToString())
    body += b"".join(record(m.SerializeToString()) for m in msgs)
    c = google_crc32c.value(body) if crc is None else crc
    return body + c.to_bytes(4, "big") + trailer


E1, E2 = ent("app/a", "1", 0, 4), ent("app/b", "2", 1, 7)
GOOD = [pb.SubscribeResponse(snapshot_chunk=pb.SnapshotChunk(entries=[E1, E2])), end(cur(5, 8), INITIAL, E1, E2)]
GOOD[-1].snapshot_end.reset = False


def good() -> bytes:
    return state_bytes(["app/"], GOOD)


def test_handmade_file_loads() -> None:
    import io

    from confgate._statefile import decode_state

    data = good()
    r = decode_state(io.BytesIO(data), len(data), ["app/"])
    assert sorted(r.entries) == ["app/a", "app/b"] and r.cursor == cur(5, 8)
    assert r.digest.to_bytes() == digest_of(E1, E2)
    assert r.synced and not r.live, "loaded: its cursor is resumed from, but no gateway vouched for it"


def _with(msgs: List[pb.SubscribeResponse], i: int, change) -> List[pb.SubscribeResponse]:
    out = [pb.SubscribeResponse.FromString(m.SerializeToString()) for m in msgs]
    change(out[i])
    return out


def _chunk_with(*es: pb.Entry) -> pb.SubscribeResponse:
    return pb.SubscribeResponse(snapshot_chunk=pb.SnapshotChunk(entries=list(es)))


CORRUPT = {
    "empty": (b"", "truncated"),
    "bad magic": (state_bytes(["app/"], GOOD, magic=b"NOTSTAT"), "bad magic"),
    "newer format": (state_bytes(["app/"], GOOD, version=2), "format version 2"),
    "truncated in the header": (good()[:6], "truncated"),
    "truncated in a record": (good()[:40], "truncated|past the end"),
    "truncated checksum": (good()[:-1], "truncated"),
    "checksum mismatch": (state_bytes(["app/"], GOOD, crc=1234), "checksum mismatch"),
    "flipped byte": (good()[:30] + bytes([good()[30] ^ 0x01]) + good()[31:], "checksum|digest|parse|key"),
    "bytes after the checksum": (state_bytes(["app/"], GOOD, trailer=b"\x00"), "after the checksum"),
    "another selector": (state_bytes(["db/"], GOOD), "made for selector"),
    "entry outside the selector": (
        state_bytes(["app/"], [_chunk_with(E1, ent("db/x", "1", 0, 1)), end(cur(5), INITIAL, E1, ent("db/x", "1", 0, 1))]),
        "does not match the selector"),
    "entry count": (state_bytes(["app/"], _with(GOOD, 1, lambda m: setattr(m.snapshot_end, "entry_count", 3))),
                    "3"),
    "digest": (state_bytes(["app/"], _with(GOOD, 1, lambda m: setattr(m.snapshot_end, "digest", digest_of(E1)))),
               "digest"),
    "no digest": (state_bytes(["app/"], _with(GOOD, 1, lambda m: setattr(m.snapshot_end, "digest", b""))),
                  "no digest"),
    "entry past the cursor": (state_bytes(["app/"], [GOOD[0], end(cur(4, 8), INITIAL, E1, E2)]), "at or past"),
    "unknown record": (state_bytes(["app/"], [GOOD[0], pb.SubscribeResponse(progress=pb.Progress())]),
                       "unknown record"),
    "no end": (state_bytes(["app/"], [GOOD[0]]), "truncated|past the end"),
    "huge record": (b"CGSTATE\x01" + uvarint(MAX_STATE_RECORD + 1) + bytes(8), "over the limit"),
    "bad cursor": (state_bytes(["app/"], _with(GOOD, 1, lambda m: setattr(m.snapshot_end, "cursor", b"\x09"))),
                   "cursor"),
}


@pytest.mark.parametrize("name", sorted(CORRUPT))
def test_corrupt_file_is_refused_whole(tmp_path: Path, name: str) -> None:
    data, why = CORRUPT[name]
    p = tmp_path / "state"
    p.write_bytes(data)
    with pytest.raises(StateFileError, match=why):
        read_state_file(str(p), ["app/"])


def test_not_a_regular_file(tmp_path: Path) -> None:
    with pytest.raises((StateFileError, OSError)):
        read_state_file(str(tmp_path), ["app/"])


def _view(n: int, value_size: int) -> confgate.View:
    es = {}
    d = confgate.Digest()
    for i in range(n):
        e = confgate.Entry(f"app/k{i:04d}/\u00e9", bytes([i % 256]) * value_size, i % 3, 10 + i, "text/plain",
                           (confgate.Header("by", b"test"), confgate.Header("n", str(i).encode())))
        es[e.key] = e
        d.add(e.key, e.value, e.partition, e.offset)
    return confgate.View(es, str(cur(20 + n, 20 + n, 20 + n)), d.to_bytes())


@pytest.mark.parametrize("n, value_size, chunks", [(0, 0, 0), (3, 10, 1), (5, 120 << 10, 2), (7, 120 << 10, 3)])
def test_write_then_read(tmp_path: Path, n: int, value_size: int, chunks: int) -> None:
    v = _view(n, value_size)
    p = str(tmp_path / "state")
    size = write_state_file(p, ["app/"], v)
    assert size == os.path.getsize(p)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    assert os.listdir(tmp_path) == ["state"], "no temporary file left"
    r = read_state_file(p, ["app/"])
    assert r.entries == dict(v) and str(r.cursor) == v.cursor and r.digest.to_bytes() == v.digest
    # Entries in key order, in chunks of about STATE_CHUNK_BYTES.
    got = _records(Path(p).read_bytes())
    assert [m.WhichOneof("message") for m in got] == ["snapshot_chunk"] * chunks + ["snapshot_end"]
    keys = [e.key for m in got[:-1] for e in m.snapshot_chunk.entries]
    assert keys == sorted(keys) and len(keys) == n
    assert all(m.snapshot_chunk.ByteSize() < STATE_CHUNK_BYTES + value_size + 100 for m in got[:-1])


def _records(data: bytes) -> List[pb.SubscribeResponse]:
    from confgate._cursor import _read_uvarint

    i = 8
    n, i = _read_uvarint(data, i)
    i += n  # the selector
    out = []
    while i < len(data) - 4:
        n, i = _read_uvarint(data, i)
        out.append(pb.SubscribeResponse.FromString(data[i:i + n]))
        i += n
    return out


def test_write_replaces_atomically(tmp_path: Path) -> None:
    p = str(tmp_path / "state")
    write_state_file(p, ["app/"], _view(2, 5))
    # A failed write (here: the value cannot be encoded) leaves the previous
    # file and no temporary one.
    bad = confgate.View({"app/x": confgate.Entry("app/x", b"v", 0, 1)}, "not a cursor!", bytes(16))
    with pytest.raises(ValueError):
        write_state_file(p, ["app/"], bad)
    assert os.listdir(tmp_path) == ["state"]
    assert len(read_state_file(p, ["app/"]).entries) == 2


def test_subscription_boots_from_the_file_then_resumes(gateways, tmp_path: Path) -> None:
    path = tmp_path / "view.state"
    (tmp_path / "view.state.tmp-123").write_bytes(b"left by a crash")
    release = threading.Event()

    def first(n, req, ctx):
        yield from snapshot(cur(2, 3), INITIAL, ent("app/a", "1", 0, 0), ent("app/b", "2", 1, 2))
        yield from hold(ctx)

    g = gateways(first)
    with subscribe([g.addr], prefixes=["app/"], state_file=path, state_file_interval=0.05) as sub:
        sub.wait_synced(timeout=5)
        assert not sub.status().from_file
        eventually("the state file", lambda: path.exists())
    assert not (tmp_path / "view.state.tmp-123").exists(), "a leftover temporary file is removed at start"
    saved = sub.view()
    assert read_state_file(str(path), ["app/"]).entries == dict(saved)

    # Restart while no gateway answers: the file serves at once.
    down = gateways(first)
    down.stop()
    events: List[confgate.Event] = []
    sub2 = subscribe([down.addr], prefixes=["app/"], state_file=str(path), on_change=events.append)
    try:
        sub2.wait_loaded(timeout=0)
        assert sub2.view() == saved and sub2.cursor == saved.cursor and sub2.digest == saved.digest
        st = sub2.status()
        assert st.from_file and st.stale and st.state_file_error is None
        with pytest.raises(TimeoutError):
            sub2.wait_synced(timeout=0.2)
        eventually("the loaded event", lambda: len(events) >= 1)
        assert events[0].kind == confgate.LOADED and events[0].cursor == saved.cursor
    finally:
        sub2.close()

    # Restart with a gateway: it resumes from the file's cursor, and the
    # first delta vouches for the view (no snapshot event).
    def resumed(n, req, ctx):
        release.wait(5)
        yield delta(cur(2, 5), put(ent("app/b", "2b", 1, 4)))
        yield from hold(ctx)

    g3 = gateways(resumed)
    events.clear()
    with subscribe([g3.addr], prefixes=["app/"], state_file=path, on_change=events.append,
                   state_file_interval=0.05) as sub3:
        assert sub3.status().from_file
        release.set()
        sub3.wait_synced(timeout=5)
        assert g3.request(0).resume_cursor == cur(2, 3).encode()
        assert not sub3.status().from_file
        assert sub3["app/b"].value == b"2b"
        eventually("the put event", lambda: len(events) >= 2)
        assert [e.kind for e in events] == [confgate.LOADED, confgate.PUT]
    # Closing wrote the last state.
    assert read_state_file(str(path), ["app/"]).entries == dict(sub3.view())


def test_a_snapshot_replacing_a_loaded_view_is_a_reset(gateways, tmp_path: Path) -> None:
    path = tmp_path / "s"
    write_state_file(str(path), ["app/"], confgate.View({"app/old": confgate.Entry("app/old", b"x", 0, 1)},
                                                        str(cur(2)), digest_of(ent("app/old", "x", 0, 1))))

    def script(n, req, ctx):
        yield from snapshot(cur(9), pb.SNAPSHOT_REASON_HISTORY_EXPIRED, ent("app/new", "y", 0, 8))
        yield from hold(ctx)

    g = gateways(script)
    events: List[confgate.Event] = []
    with subscribe([g.addr], prefixes=["app/"], state_file=path, on_change=events.append) as sub:
        sub.wait_synced(timeout=5)
        assert list(sub.view()) == ["app/new"] and sub.status().resets == 1
        # on_change runs after the view was updated, so after wait_synced returned.
        eventually("the reset event", lambda: len(events) >= 2)
        assert [e.kind for e in events] == [confgate.LOADED, confgate.RESET]


@pytest.mark.parametrize("name", ["another selector", "checksum mismatch", "truncated in a record"])
def test_a_bad_file_is_ignored_and_reported(gateways, tmp_path: Path, name: str) -> None:
    path = tmp_path / "s"
    path.write_bytes(CORRUPT[name][0])

    def script(n, req, ctx):
        assert not req.resume_cursor
        yield from snapshot(cur(1), INITIAL, ent("app/z", "1", 0, 0))
        yield from hold(ctx)

    g = gateways(script)
    with subscribe([g.addr], prefixes=["app/"], state_file=path) as sub:
        assert len(sub) == 0 and not sub.status().from_file
        err = sub.status().state_file_error
        assert isinstance(err, StateFileError) and "ignored" in str(err)
        sub.wait_synced(timeout=5)
        eventually("the file rewritten", lambda: sub.status().state_file_error is None)
    assert list(read_state_file(str(path), ["app/"]).entries) == ["app/z"]


def test_write_failure_is_reported(gateways, tmp_path: Path) -> None:
    def script(n, req, ctx):
        yield from snapshot(cur(1), INITIAL, ent("a", "1", 0, 0))
        yield from hold(ctx)

    g = gateways(script)
    path = tmp_path / "missing-dir" / "s"
    with subscribe([g.addr], state_file=path) as sub:
        sub.wait_synced(timeout=5)
        eventually("the write error", lambda: sub.status().state_file_error is not None)
        assert "not written" in str(sub.status().state_file_error)
        assert sub.get("a") is not None, "the view is not affected"


@pytest.mark.parametrize("kw, msg", [({"state_file": ""}, "state_file"),
                                     ({"state_file": "x", "state_file_interval": -1}, "state_file_interval")])
def test_settings_checked(kw, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        confgate.Subscription(["127.0.0.1:1"], **kw)
