"""The language-neutral conformance vectors of testdata/conformance (see its
README.md), computed by the Go implementation: cursors, digests, selector
normalization and replica message sequences. Every vector is one test case."""

from __future__ import annotations

import json
import pathlib
from typing import Any, Dict, List, Optional

import pytest

from confgate._cursor import Cursor
from confgate._digest import Digest, entry_hash
from confgate._keyspace import normalize_selector
from confgate._replica import ProtocolViolation, Replica, Session
from confgate.v1 import config_pb2 as pb

ROOT = pathlib.Path(__file__).resolve().parents[3]
VECTORS = ROOT / "testdata" / "conformance"


def _load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


def _phrases() -> Dict[str, str]:
    p = dict(_load("phrases.json")["phrases"])
    rules = json.loads((ROOT / "internal" / "keyspace" / "testdata" / "rules.json").read_text(encoding="utf-8"))
    p.update(rules["phrases"])
    return p


PHRASES = _phrases()
CURSORS = _load("cursor.json")
DIGESTS = _load("digest.json")
SELECTORS = _load("selectors.json")
REPLICA_FILES = sorted((VECTORS / "replica").glob("*.json"))


def _ids(vs: List[Dict[str, Any]]) -> List[str]:
    return [v["name"] for v in vs]


def _class_of(err: BaseException, cls: str) -> None:
    assert cls in PHRASES, f"error class {cls!r} is not in phrases.json"
    assert PHRASES[cls] in str(err), f"error {str(err)!r} is not of class {cls!r} (phrase {PHRASES[cls]!r})"


# Cursors.

def _cursor(v: Dict[str, Any]) -> Cursor:
    return Cursor(bytes.fromhex(v["topic"]), tuple(int(o) for o in v["offsets"]))


@pytest.mark.parametrize("v", CURSORS["valid"], ids=_ids(CURSORS["valid"]))
def test_cursor_valid(v: Dict[str, Any]) -> None:
    c = _cursor(v)
    assert c.encode().hex() == v["hex"]
    assert str(c) == v["text"]
    assert Cursor.decode(bytes.fromhex(v["hex"])) == c
    assert Cursor.parse(v["text"]) == c


@pytest.mark.parametrize("v", CURSORS["noncanonical"], ids=_ids(CURSORS["noncanonical"]))
def test_cursor_noncanonical(v: Dict[str, Any]) -> None:
    c = Cursor.decode(bytes.fromhex(v["hex"]))
    assert c == _cursor(v)
    assert c.encode().hex() == v["canonical"]


@pytest.mark.parametrize("v", CURSORS["invalid"], ids=_ids(CURSORS["invalid"]))
def test_cursor_invalid(v: Dict[str, Any]) -> None:
    with pytest.raises(ValueError) as e:
        Cursor.decode(bytes.fromhex(v["hex"]))
    _class_of(e.value, v["error"])


@pytest.mark.parametrize("v", CURSORS["invalid_text"], ids=_ids(CURSORS["invalid_text"]))
def test_cursor_invalid_text(v: Dict[str, Any]) -> None:
    with pytest.raises(ValueError) as e:
        Cursor.parse(v["text"])
    _class_of(e.value, v["error"])


@pytest.mark.parametrize("v", CURSORS["compare"], ids=_ids(CURSORS["compare"]))
def test_cursor_compare(v: Dict[str, Any]) -> None:
    a, b = _cursor(v["a"]), _cursor(v["b"])
    assert a.covers(b) == v["a_covers_b"]
    assert b.covers(a) == v["b_covers_a"]
    assert a.equals(b) == v["equal"] == b.equals(a)


# Digests.

def _value(e: Dict[str, Any]) -> bytes:
    if "value_hex" in e:
        return bytes.fromhex(e["value_hex"])
    return e.get("value", "").encode("utf-8")


@pytest.mark.parametrize("v", DIGESTS["entries"], ids=_ids(DIGESTS["entries"]))
def test_digest_entry(v: Dict[str, Any]) -> None:
    hi, lo = entry_hash(v["key"], _value(v), v["partition"], int(v["offset"]))
    assert (hi.to_bytes(8, "big") + lo.to_bytes(8, "big")).hex() == v["hash"]


@pytest.mark.parametrize("v", DIGESTS["sets"], ids=_ids(DIGESTS["sets"]))
def test_digest_set(v: Dict[str, Any]) -> None:
    d = Digest()
    for e in v["entries"]:
        d.add(e["key"], _value(e), e["partition"], int(e["offset"]))
    assert d.to_bytes().hex() == v["digest"]
    for e in reversed(v["entries"]):
        d.remove(e["key"], _value(e), e["partition"], int(e["offset"]))
    assert d.to_bytes() == bytes(16)


# Selectors. The Python client validates and normalizes selectors (the
# gateway matches them), so it runs the normalize vectors; match vectors are
# for implementations that filter keys.

@pytest.mark.parametrize("v", SELECTORS["normalize"], ids=_ids(SELECTORS["normalize"]))
def test_selector_normalize(v: Dict[str, Any]) -> None:
    if "error" in v:
        with pytest.raises(ValueError) as e:
            normalize_selector(v["prefixes"])
        _class_of(e.value, v["error"])
        return
    assert normalize_selector(v["prefixes"]) == v["normalized"]


# Replica message sequences.

_REASONS = {
    "": pb.SNAPSHOT_REASON_UNSPECIFIED,
    "INITIAL": pb.SNAPSHOT_REASON_INITIAL,
    "HISTORY_EXPIRED": pb.SNAPSHOT_REASON_HISTORY_EXPIRED,
    "TOPIC_CHANGED": pb.SNAPSHOT_REASON_TOPIC_CHANGED,
    "SLOW_SUBSCRIBER": pb.SNAPSHOT_REASON_SLOW_SUBSCRIBER,
    "STATE_REBUILT": pb.SNAPSHOT_REASON_STATE_REBUILT,
}


class _Run:
    def __init__(self, f: Dict[str, Any]) -> None:
        self.topics = {n: bytes.fromhex(h) for n, h in f["topics"].items()}
        self.names = {b: n for n, b in self.topics.items()}

    def cursor_bytes(self, c: Optional[Dict[str, Any]]) -> bytes:
        if c is None:
            return b""
        if "hex" in c:
            return bytes.fromhex(c["hex"])
        return Cursor(self.topics[c["topic"]], tuple(c.get("offsets", []))).encode()

    def cursor_json(self, c: Optional[Cursor]) -> Optional[Dict[str, Any]]:
        if c is None:
            return None
        if c.topic not in self.names:
            return {"hex": c.encode().hex()}
        out: Dict[str, Any] = {"topic": self.names[c.topic]}
        if c.offsets:
            out["offsets"] = list(c.offsets)
        return out

    @staticmethod
    def version(v: Optional[List[int]]) -> Optional["pb.Version"]:
        return None if v is None else pb.Version(partition=v[0], offset=v[1])

    def entry(self, e: Dict[str, Any]) -> "pb.Entry":
        pe = pb.Entry(key=e.get("key", ""), value=_value(e), content_type=e.get("content_type", ""))
        if "version" in e:
            pe.version.CopyFrom(self.version(e["version"]))
        if e.get("content_type"):
            pe.headers.add(key="content-type", value=e["content_type"].encode())
        return pe

    def message(self, m: Dict[str, Any]) -> "pb.SubscribeResponse":
        if "snapshot_chunk" in m:
            c = pb.SnapshotChunk(entries=[self.entry(e) for e in m["snapshot_chunk"]["entries"]])
            return pb.SubscribeResponse(snapshot_chunk=c)
        if "snapshot_end" in m:
            e = m["snapshot_end"]
            return pb.SubscribeResponse(snapshot_end=pb.SnapshotEnd(
                cursor=self.cursor_bytes(e["cursor"]), reason=_REASONS[e.get("reason", "")],
                reset=e.get("reset", False), entry_count=e["entry_count"],
                digest=bytes.fromhex(e.get("digest", ""))))
        if "delta" in m:
            d = pb.Delta(cursor=self.cursor_bytes(m["delta"]["cursor"]), coalesced=m["delta"].get("coalesced", False))
            for c in m["delta"]["changes"]:
                pc = d.changes.add()
                if "put" in c:
                    pc.put.CopyFrom(self.entry(c["put"]))
                elif "delete" in c:
                    pc.delete.key = c["delete"].get("key", "")
                    if "version" in c["delete"]:
                        pc.delete.version.CopyFrom(self.version(c["delete"]["version"]))
            return pb.SubscribeResponse(delta=d)
        if "progress" in m:
            p = m["progress"]
            return pb.SubscribeResponse(progress=pb.Progress(
                cursor=self.cursor_bytes(p["cursor"]), lag_records=p.get("lag_records", 0), stale=p.get("stale", False)))
        return pb.SubscribeResponse()  # a message kind this client does not know

    def state(self, r: Replica) -> Dict[str, Any]:
        view = {}
        for k, e in r.entries.items():
            v: Dict[str, Any] = {}
            try:
                if e.value:
                    v["value"] = e.value.decode("utf-8")
            except UnicodeDecodeError:
                v["value_hex"] = e.value.hex()
            v["version"] = [e.partition, e.offset]
            if e.content_type:
                v["content_type"] = e.content_type
            view[k] = v
        return {"view": view, "cursor": self.cursor_json(r.cursor), "digest": r.digest.to_bytes().hex()}


@pytest.mark.parametrize("path", REPLICA_FILES, ids=[p.name for p in REPLICA_FILES])
def test_replica(path: pathlib.Path) -> None:
    f = json.loads(path.read_text(encoding="utf-8"))
    run = _Run(f)
    r = Replica()
    s = Session(resumed=False)
    for i, st in enumerate(f["steps"]):
        what = f"step {i} ({st['name']})"
        if "stream" in st:
            s = Session(resumed=st["stream"]["resumed"])
            continue
        want = st["expect"]
        before = run.state(r)
        events = []
        try:
            res = r.handle(s, run.message(st["msg"]))
            events = [{"kind": e.kind, **({"key": e.key} if e.key else {})} for e in res.events]
            err: Optional[ProtocolViolation] = None
        except ProtocolViolation as e:
            err = e
        after = run.state(r)
        if want["accepted"]:
            assert err is None, f"{what}: rejected ({err}), want accepted"
        else:
            assert err is not None, f"{what}: accepted, want rejected ({want['error']})"
            assert PHRASES[want["error"]] in str(err), \
                f"{what}: error {str(err)!r} is not of class {want['error']!r}"
            assert err.fresh == want.get("fresh", False), f"{what}: fresh is {err.fresh}"
            assert after == before, f"{what}: rejected, yet the view changed"
        assert events == want.get("events", []), f"{what}: events"
        assert after["view"] == want["view"], f"{what}: view"
        assert after["cursor"] == want["cursor"], f"{what}: cursor"
        assert after["digest"] == want["digest"], f"{what}: digest"


def test_every_vector_file_is_run() -> None:
    names = {p.name for p in VECTORS.glob("*.json")}
    assert names == {"cursor.json", "digest.json", "selectors.json", "phrases.json"}, names
    assert REPLICA_FILES
