"""confgate.View: an immutable Mapping[str, Entry] of one version of a view,
alone and as Subscription.view() returns it."""

from __future__ import annotations

import collections.abc
import pickle
import threading

import pytest

import confgate
from confgate.v1 import config_pb2 as pb

from test_fake_gateway import eventually, gateways, hold, subscribe  # noqa: F401 (gateways is a fixture)
from test_unit import cur, delta, ent, put, snapshot


def entry(key: str, value: str, p: int = 0, off: int = 0) -> confgate.Entry:
    return confgate.Entry(key, value.encode(), p, off)


A, B, C = entry("app/a", "1", 0, 1), entry("app/b", "2", 1, 5), entry("db/\u00e9", "3", 0, 2)


def make() -> confgate.View:
    return confgate.View({"db/\u00e9": C, "app/b": B, "app/a": A}, "CUR", b"\x01" * 16)


def test_is_a_read_only_mapping() -> None:
    v = make()
    assert isinstance(v, collections.abc.Mapping)
    assert not isinstance(v, collections.abc.MutableMapping)
    assert len(v) == 3 and "app/a" in v and "nope" not in v and 7 not in v
    assert v["app/b"] is B and v.get("app/b") is B and v.get("nope") is None and v.get("nope", A) is A
    with pytest.raises(KeyError):
        v["nope"]
    # Key order, as the gateways order keys (UTF-8 bytes).
    assert list(v) == ["app/a", "app/b", "db/\u00e9"]
    assert list(v.keys()) == list(v)
    assert list(v.values()) == [A, B, C]
    assert list(v.items()) == [("app/a", A), ("app/b", B), ("db/\u00e9", C)]
    assert ("app/a", A) in v.items() and ("app/a", B) not in v.items()
    assert dict(v) == {"app/a": A, "app/b": B, "db/\u00e9": C}
    assert v.cursor == "CUR" and v.digest == b"\x01" * 16
    assert v.entries() == [A, B, C] and v.entries("app/") == [A, B] and v.entries("x") == []


@pytest.mark.parametrize("other, equal", [
    ({"app/a": A, "app/b": B, "db/\u00e9": C}, True),
    ({"app/a": A, "app/b": B}, False),
    ({"app/a": A, "app/b": A, "db/\u00e9": C}, False),
    (collections.OrderedDict([("db/\u00e9", C), ("app/a", A), ("app/b", B)]), True),
    (confgate.View({"app/a": A, "app/b": B, "db/\u00e9": C}, "another cursor"), True),
    ([("app/a", A)], False),
    (None, False),
])
def test_equality_as_a_dict(other: object, equal: bool) -> None:
    v = make()
    assert (v == other) is equal and (other == v) is equal and (v != other) is not equal


def test_is_immutable() -> None:
    v = make()
    with pytest.raises(TypeError):
        v["app/a"] = B  # type: ignore[index]
    with pytest.raises(TypeError):
        del v["app/a"]  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        v.extra = 1  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        v.update({})  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        hash(v)  # equal to dicts, so unhashable like them
    # The View owns a copy: changing what it was made from changes nothing.
    src = {"k": A}
    v2 = confgate.View(src)
    src["k"] = B
    assert v2["k"] is A
    assert pickle.loads(pickle.dumps(v)) == v


def test_empty() -> None:
    v = confgate.View()
    assert len(v) == 0 and list(v.items()) == [] and v == {} and v.cursor == "" and v.digest == bytes(16)


def test_subscription_views_are_consistent_versions(gateways) -> None:
    step = threading.Event()

    def script(n, req, ctx):
        yield from snapshot(cur(2), pb.SNAPSHOT_REASON_INITIAL, ent("a", "1", 0, 0), ent("b", "2", 0, 1))
        step.wait(5)
        yield delta(cur(4), put(ent("a", "1b", 0, 2)), put(ent("c", "3", 0, 3)))
        yield from hold(ctx)

    g = gateways(script)
    with subscribe([g.addr]) as sub:
        sub.wait_synced(timeout=5)
        before = sub.view()
        assert sub.view() is before, "the same View until something changes"
        assert dict(before.items()) == {"a": sub["a"], "b": sub["b"]}
        assert before.cursor == str(cur(2)) and before.digest == sub.digest
        step.set()
        eventually("the delta", lambda: sub.cursor == str(cur(4)))
        after = sub.view()
        # The old version is untouched: a reader iterating it sees one state.
        assert [(k, e.value) for k, e in before.items()] == [("a", b"1"), ("b", b"2")]
        assert before.cursor == str(cur(2))
        assert [(k, e.value) for k, e in after.items()] == [("a", b"1b"), ("b", b"2"), ("c", b"3")]
        assert after != before and after.digest != before.digest
        assert len(sub) == 3 and "c" in sub and sub.get("zz") is None


def test_items_is_deprecated(gateways) -> None:
    def script(n, req, ctx):
        yield from snapshot(cur(1), pb.SNAPSHOT_REASON_INITIAL, ent("a", "1", 0, 0))
        yield from hold(ctx)

    g = gateways(script)
    with subscribe([g.addr]) as sub:
        sub.wait_synced(timeout=5)
        with pytest.warns(DeprecationWarning, match="view"):
            assert sub.items() == sub.view().entries()
