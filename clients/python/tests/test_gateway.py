"""The Python client against a running gateway (see conftest.py)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import threading
import time
import urllib.request
from typing import Callable, List

import grpc
import pytest

import confgate
from confgate.v1 import config_pb2 as pb
from confgate.v1 import config_pb2_grpc as pb_grpc

TIMEOUT = 20.0


def wait_for(what: str, cond: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


class Events:
    """Collects on_change events."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: List[confgate.Event] = []

    def __call__(self, e: confgate.Event) -> None:
        with self._lock:
            self._events.append(e)

    def all(self) -> List[confgate.Event]:
        with self._lock:
            return list(self._events)

    def after(self, n: int) -> List[confgate.Event]:
        return self.all()[n:]

    def wait(self, what: str, n: int) -> List[confgate.Event]:
        wait_for(what, lambda: len(self.all()) >= n)
        return self.all()


def seed(client: confgate.Client, prefix: str, n: int) -> None:
    """Writes n entries and waits until the gateway applied them all: a put
    is acknowledged once Kafka has it, not once the gateway applied it, so
    without the wait a subscription opened right after could see the last
    writes as deltas."""
    for i in range(n):
        last = i == n - 1
        if i % 3 == 0:
            client.put(f"{prefix}k{i:03d}", f"v{i}", content_type="application/json",
                       headers=[("by", "py-test"), ("n", str(i))], wait_applied=last)
        else:
            client.put(f"{prefix}k{i:03d}", f"v{i}", wait_applied=last)


def open_subscription(addrs: List[str], prefixes: List[str], events=None, **kw) -> confgate.Subscription:
    kw.setdefault("backoff_min", 0.02)
    kw.setdefault("backoff_max", 0.5)
    return confgate.Subscription(addrs, prefixes, on_change=events, shuffle=False, **kw)


def control(url: str, what: str) -> None:
    req = urllib.request.Request(f"{url}/proxy/{what}", method="POST", data=b"")
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200


def health(addr: str, service: str) -> int:
    # grpc.health.v1 without the grpcio-health-checking package: the request
    # is HealthCheckRequest{service} (field 1, string), the response
    # HealthCheckResponse{status} (field 1, enum; SERVING = 1).
    name = service.encode()
    req = (b"\x0a" + bytes([len(name)]) + name) if name else b""
    with grpc.insecure_channel(addr) as ch:
        check = ch.unary_unary("/grpc.health.v1.Health/Check",
                               request_serializer=None, response_deserializer=None)
        resp = check(req, timeout=5)
    assert resp[:1] == b"\x08", resp
    return resp[1]


def test_health_serving(addr: str) -> None:
    assert health(addr, "") == 1
    assert health(addr, "confgate.v1.ConfigService") == 1


def test_snapshot_matches_get_snapshot(client: confgate.Client, addr: str, prefix: str) -> None:
    seed(client, prefix, 25)
    client.put(f"{prefix}bin", bytes(range(256)), wait_applied=True)
    events = Events()
    with open_subscription([addr], [prefix], events) as sub:
        sub.wait_synced(timeout=TIMEOUT)
        snap = client.snapshot([prefix], min_cursor=sub.cursor)
        assert len(snap.entries) == 26
        assert sub.view().entries() == list(snap.entries)  # keys, values, versions, metadata
        assert sub.digest == snap.digest
        assert len(sub) == 26
        e = sub.get(f"{prefix}k000")
        assert e is not None and e.content_type == "application/json"
        assert ("by", b"py-test") in [(h.key, h.value) for h in e.headers]
        assert sub.get(f"{prefix}bin").value == bytes(range(256))
        assert sub.cursor and confgate.Cursor.parse(sub.cursor)
        assert [ev.kind for ev in events.all()] == [confgate.SNAPSHOT]
        st = sub.status()
        assert st.connected and st.addr == addr and not st.stale and st.resets == 0
    # The same through the raw generated stubs: the view equals what
    # GetSnapshot returns at its cursor, version for version.
    with grpc.insecure_channel(addr) as ch:
        stub = pb_grpc.ConfigServiceStub(ch)
        raw = [e for m in stub.GetSnapshot(pb.GetSnapshotRequest(selector=pb.Selector(prefixes=[prefix])), timeout=10)
               if m.WhichOneof("message") == "chunk" for e in m.chunk.entries]
    assert [(e.key, e.version.partition, e.version.offset) for e in raw] == \
        [(e.key, e.partition, e.offset) for e in snap.entries]


@pytest.mark.skipif(not os.environ.get("CONFGATE_BIN"), reason="CONFGATE_BIN (the confgate CLI) not set")
def test_matches_the_cli(client: confgate.Client, addr: str, prefix: str) -> None:
    cli = os.environ["CONFGATE_BIN"]
    seed(client, prefix, 5)
    events = Events()
    with open_subscription([addr], [prefix], events) as sub:
        sub.wait_synced(timeout=TIMEOUT)
        # confgate put arrives as a delta.
        out = subprocess.run([cli, "--addr", addr, "put", f"{prefix}cli", "from-cli", "-o", "json"],
                             check=True, capture_output=True, text=True, timeout=30).stdout
        put = json.loads(out.splitlines()[-1])
        evs = events.wait("the CLI's put", 2)
        assert evs[1].kind == confgate.PUT and evs[1].key == f"{prefix}cli"
        assert evs[1].entry.version == (put["version"]["partition"], put["version"]["offset"])
        # confgate snapshot shows the same entries and digest as the view.
        out = subprocess.run([cli, "--addr", addr, "snapshot", prefix, "--min-cursor", put["cursor"], "-o", "json"],
                             check=True, capture_output=True, text=True, timeout=30).stdout
        lines = [json.loads(line) for line in out.splitlines()]
        *entries, end = lines
        got = [(e["key"], e["value"], e["version"]["partition"], e["version"]["offset"]) for e in entries]
        want = [(e.key, e.text(), e.partition, e.offset) for e in sub.view().entries()]
        assert got == want
        assert end["entry_count"] == len(sub)
        assert base64.urlsafe_b64decode(end["digest"] + "==") == sub.digest


def test_put_and_delete_arrive_as_deltas(client: confgate.Client, addr: str, prefix: str) -> None:
    seed(client, prefix, 3)
    events = Events()
    with open_subscription([addr], [prefix], events) as sub:
        sub.wait_synced(timeout=TIMEOUT)
        w1 = client.put(f"{prefix}new", "1", content_type="text/plain")
        w2 = client.put(f"{prefix}k001", "changed")
        w3 = client.delete(f"{prefix}k002")
        client.put("elsewhere/not-selected", "x")
        evs = events.wait("three changes", 4)[1:]
        assert [(e.kind, e.key) for e in evs] == [
            (confgate.PUT, f"{prefix}new"), (confgate.PUT, f"{prefix}k001"), (confgate.DELETE, f"{prefix}k002")]
        assert evs[0].entry.version == (w1.partition, w1.offset) and evs[0].entry.content_type == "text/plain"
        assert evs[1].entry.value == b"changed" and evs[1].entry.version == (w2.partition, w2.offset)
        assert evs[2].entry is None
        assert sub.get(f"{prefix}k002") is None
        assert sub.get(f"{prefix}k001").text() == "changed"
        # The cursor is never behind the writes the view has seen.
        wait_for("the cursor to include the delete",
                 lambda: confgate.Cursor.parse(sub.cursor).covers(confgate.Cursor.parse(w3.cursor)))
        snap = client.snapshot([prefix], min_cursor=sub.cursor)
        assert sub.view().entries() == list(snap.entries)
        assert sub.digest == snap.digest
        assert sub.status().resets == 0
        # Read-your-writes with the unary helpers.
        assert client.get(f"{prefix}new", min_cursor=w1.cursor).text() == "1"
        assert client.get(f"{prefix}k002", min_cursor=w3.cursor) is None


def test_resume_after_disconnect_yields_only_missed_changes(
        client: confgate.Client, proxy_addr: str, control_url: str, prefix: str) -> None:
    seed(client, prefix, 4)
    events = Events()
    control(control_url, "up")
    try:
        with open_subscription([proxy_addr], [prefix], events) as sub:
            sub.wait_synced(timeout=TIMEOUT)
            before = sub.cursor
            control(control_url, "down")
            wait_for("the subscription to notice the disconnect", lambda: not sub.status().connected)
            w = [client.put(f"{prefix}k000", "v0-new"), client.put(f"{prefix}added", "a"),
                 client.delete(f"{prefix}k003")]
            # While disconnected the view serves the last-known-good state.
            assert sub.get(f"{prefix}k000").text() == "v0"
            assert sub.cursor == before and sub.status().stale
            control(control_url, "up")
            evs = events.wait("the missed changes", 4)
            assert [(e.kind, e.key) for e in evs] == [
                (confgate.SNAPSHOT, ""), (confgate.PUT, f"{prefix}k000"), (confgate.PUT, f"{prefix}added"),
                (confgate.DELETE, f"{prefix}k003")]
            assert [e.entry.version for e in evs[1:3]] == [(w[0].partition, w[0].offset), (w[1].partition, w[1].offset)]
            st = sub.status()
            assert st.resets == 0 and st.reconnects >= 1
            wait_for("reconnected", lambda: sub.status().connected)
            snap = client.snapshot([prefix], min_cursor=sub.cursor)
            assert sub.view().entries() == list(snap.entries) and sub.digest == snap.digest
            time.sleep(0.3)
            assert len(events.all()) == 4, "nothing but the missed changes arrived"
    finally:
        control(control_url, "up")


def test_raw_resume_by_cursor_is_exact(client: confgate.Client, addr: str, prefix: str) -> None:
    """The protocol itself: a Subscribe with the cursor of an earlier stream
    yields exactly the changes after it, and no snapshot."""
    seed(client, prefix, 3)
    sel = pb.Selector(prefixes=[prefix])
    with grpc.insecure_channel(addr) as ch:
        stub = pb_grpc.ConfigServiceStub(ch)
        call = stub.Subscribe(pb.SubscribeRequest(selector=sel), timeout=30)
        cur = None
        for m in call:
            if m.WhichOneof("message") == "snapshot_end":
                cur = m.snapshot_end.cursor
                assert m.snapshot_end.entry_count == 3 and not m.snapshot_end.reset
                break
        call.cancel()
        client.put(f"{prefix}k000", "x")
        client.delete(f"{prefix}k001")
        client.put(f"{prefix}k000", "y")
        call = stub.Subscribe(pb.SubscribeRequest(selector=sel, resume_cursor=cur), timeout=30)
        got = []
        for m in call:
            kind = m.WhichOneof("message")
            assert kind in ("delta", "progress"), f"resume sent {kind}"
            if kind == "delta":
                for c in m.delta.changes:
                    if c.WhichOneof("change") == "put":
                        got.append(("put", c.put.key, c.put.value))
                    else:
                        got.append(("delete", c.delete.key, b""))
            if len(got) >= 3:
                break
        call.cancel()
    assert got == [("put", f"{prefix}k000", b"x"), ("delete", f"{prefix}k001", b""), ("put", f"{prefix}k000", b"y")]


def test_malformed_cursor_is_invalid_argument(client: confgate.Client, addr: str, prefix: str) -> None:
    bad = [b"\x07not-a-cursor", b"\x01truncated"]
    with grpc.insecure_channel(addr) as ch:
        stub = pb_grpc.ConfigServiceStub(ch)
        for cur in bad:
            with pytest.raises(grpc.RpcError) as e:
                next(iter(stub.Subscribe(pb.SubscribeRequest(selector=pb.Selector(prefixes=[prefix]),
                                                             resume_cursor=cur), timeout=10)))
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value
            assert "cursor" in e.value.details()
        with pytest.raises(grpc.RpcError) as e:
            next(iter(stub.Subscribe(pb.SubscribeRequest(selector=pb.Selector(prefixes=["/abs"])), timeout=10)))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    for call in (lambda: client.get(f"{prefix}x", min_cursor=bad[0]),
                 lambda: client.snapshot([prefix], min_cursor=bad[1])):
        with pytest.raises(grpc.RpcError) as e:
            call()
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_snapshot_over_4mib_with_default_limits(addr: str, prefix: str) -> None:
    value_size, n = 100 * 1024, 60  # 6 MB in all, over gRPC's 4 MiB default
    with confgate.Client([addr], timeout=30) as c:
        for i in range(n):
            c.put(f"{prefix}big{i:02d}", os.urandom(value_size), wait_applied=i == n - 1)
    # max_receive_message_length=None: gRPC's default 4 MiB limit.
    with confgate.Client([addr], timeout=30, max_receive_message_length=None) as c:
        snap = c.snapshot([prefix])
        assert len(snap.entries) == n and all(len(e.value) == value_size for e in snap.entries)
    with open_subscription([addr], [prefix], max_receive_message_length=None) as sub:
        sub.wait_synced(timeout=60)
        assert len(sub) == n
        assert sub.digest == snap.digest
        assert sub.status().resets == 0


# Conditional and retry-safe writes (preconditions, request IDs, apply).

def test_conditional_put_race_one_wins(addr: str, prefix: str) -> None:
    """Writers racing to create a key with if_absent: exactly one wins, the
    others get PreconditionFailed naming the winner's version."""
    key = f"{prefix}leader"
    n = 4
    barrier = threading.Barrier(n)
    results: List[object] = [None] * n

    def race(i: int) -> None:
        with confgate.Client([addr], timeout=TIMEOUT) as c:
            barrier.wait(timeout=TIMEOUT)
            try:
                results[i] = c.put(key, f"writer-{i}", if_absent=True)
            except confgate.PreconditionFailed as e:
                results[i] = e

    threads = [threading.Thread(target=race, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=2 * TIMEOUT)
    wins = [r for r in results if isinstance(r, confgate.WriteResult)]
    losses = [r for r in results if isinstance(r, confgate.PreconditionFailed)]
    assert len(wins) == 1 and len(losses) == n - 1, results
    w = wins[0]
    assert not w.duplicate
    for e in losses:
        # The winner's version; or none yet when the gateway decided the
        # loser in the same Kafka transaction as the winner (the key was
        # still being written).
        assert len(e.keys) == 1 and e.keys[0][0] == key and e.keys[0][1] in (w.version, None), e.keys
        assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    with confgate.Client([addr]) as c:
        got = c.get(key, min_cursor=w.cursor)
        assert got is not None and got.version == w.version
        assert got.text() == f"writer-{results.index(w)}"
        # Once it landed, a late writer learns the winner's version.
        with pytest.raises(confgate.PreconditionFailed) as e:
            c.put(key, "late", if_absent=True)
        assert e.value.keys == [(key, w.version)]
        # Compare-and-set on the version: the current one wins, a stale one
        # fails with the current version and writes nothing.
        w2 = c.put(key, "next", if_version=got.version)
        with pytest.raises(confgate.PreconditionFailed) as e:
            c.put(key, "stale", if_version=got)
        assert e.value.keys == [(key, w2.version)]
        with pytest.raises(confgate.PreconditionFailed) as e:
            c.delete(key, if_version=w.version)
        assert e.value.keys == [(key, w2.version)]
        d = c.delete(key, if_version=w2.version)
        with pytest.raises(confgate.PreconditionFailed) as e:
            c.put(key, "x", if_version=w2.version)
        assert e.value.keys == [(key, None)], "a deleted key is absent"
        assert c.get(key, min_cursor=d.cursor) is None
        assert c.put(key, "again", if_absent=True).version > d.version


def test_request_id_reuse_returns_the_original_write(client: confgate.Client, prefix: str) -> None:
    key = f"{prefix}k"
    rid = f"py-test-{prefix}put"
    w1 = client.put(key, "v1", request_id=rid)
    assert not w1.duplicate and w1.request_id == rid
    again = client.put(key, "v1", request_id=rid)
    assert again.duplicate and again.version == w1.version
    got = client.get(key, min_cursor=again.cursor)
    assert got is not None and got.version == w1.version, "the retry wrote nothing"
    # A conditional write retried after it landed is a duplicate, not a
    # failed precondition.
    cid = f"py-test-{prefix}create"
    c1 = client.put(f"{prefix}c", "1", if_absent=True, request_id=cid)
    c2 = client.put(f"{prefix}c", "1", if_absent=True, request_id=cid)
    assert c2.duplicate and c2.version == c1.version
    d1 = client.delete(key, request_id=f"py-test-{prefix}del")
    d2 = client.delete(key, request_id=f"py-test-{prefix}del")
    assert not d1.duplicate and d2.duplicate and d2.version == d1.version
    # Generated IDs differ per call: the same write twice lands twice.
    g1, g2 = client.put(key, "v2"), client.put(key, "v2")
    assert g1.request_id != g2.request_id and not g2.duplicate and g2.version != g1.version
    # Reusing an ID for other keys is refused.
    with pytest.raises(grpc.RpcError) as e:
        client.put(f"{prefix}other", "v1", request_id=rid)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_apply_is_all_or_nothing(client: confgate.Client, prefix: str) -> None:
    a, b, c = f"{prefix}a", f"{prefix}b", f"{prefix}c"
    wa = client.put(a, "a1")
    wb = client.put(b, "b1", wait_applied=True)
    before = client.snapshot([prefix], min_cursor=wb.cursor)
    # One failing precondition (b exists): nothing of the set is written.
    with pytest.raises(confgate.PreconditionFailed) as e:
        client.apply([
            confgate.Put(a, "a2", if_version=wa.version),
            confgate.Put(b, "b2", if_absent=True),
            confgate.Put(c, "c1"),
        ], wait_applied=True)
    assert e.value.keys == [(b, wb.version)]
    # Both failing: both named.
    with pytest.raises(confgate.PreconditionFailed) as e:
        client.apply([confgate.Delete(a, if_version=(wa.partition, wa.offset + 1_000_000)),
                      confgate.Put(c, "c1", if_version=wb.version)])
    assert sorted(e.value.keys) == [(a, wa.version), (c, None)]
    # validate_only checks without writing.
    v = client.apply([confgate.Put(c, "c1", if_absent=True)], validate_only=True)
    assert v.versions == () and not v.duplicate
    after = client.snapshot([prefix])
    assert after.entries == before.entries, "a failed or validate-only change set writes nothing"
    # The same set with its preconditions holding lands whole.
    rid = f"py-test-{prefix}set"
    ops = [confgate.Put(a, "a2", content_type="text/plain", if_version=wa.version),
           confgate.Delete(b, if_version=wb.version),
           confgate.Put(c, "c1", headers=[("by", "py-test")], if_absent=True)]
    r = client.apply(ops, request_id=rid, wait_applied=True)
    assert len(r.versions) == 3 and not r.duplicate and r.request_id == rid
    snap = client.snapshot([prefix], min_cursor=r.cursor)
    assert [(x.key, x.text(), x.version) for x in snap.entries] == [(a, "a2", r.versions[0]), (c, "c1", r.versions[2])]
    assert snap.entries[0].content_type == "text/plain"
    assert ("by", b"py-test") in [(h.key, h.value) for h in snap.entries[1].headers]
    # Sent again with its request ID (a retry): the original versions, no write.
    r2 = client.apply(ops, request_id=rid)
    assert r2.duplicate and r2.versions == r.versions
    assert client.snapshot([prefix], min_cursor=r2.cursor).entries == snap.entries


# The fleet view. The test gateway keeps one (clients/testgateway: records
# written at most every 200ms, a closed client's record kept 2s) and expects
# reports every 200ms, the interval these tests report at.

GATEWAY_NAME = os.environ.get("CONFGATE_GATEWAY_NAME", "testgateway")
REPORT_INTERVAL = 0.2
FLEET_GRACE = 2.0
IN_SYNC = pb.FleetState.FLEET_STATE_IN_SYNC


def fleet_entry(stub: pb_grpc.ConfigServiceStub, service: str, client_id: str) -> "pb.FleetClient | None":
    resp = stub.GetFleet(pb.GetFleetRequest(service=service), timeout=10)
    found = [c for c in resp.clients if c.client.client_id == client_id]
    assert len(found) <= 1, found
    return found[0] if found else None


def wait_fleet(stub: pb_grpc.ConfigServiceStub, service: str, client_id: str, what: str,
               cond: Callable[["pb.FleetClient"], bool], timeout: float = TIMEOUT) -> "pb.FleetClient":
    """Polls GetFleet until the client is listed and cond holds for its entry."""
    last: List[object] = [None]

    def ok() -> bool:
        fc = fleet_entry(stub, service, client_id)
        last[0] = fc
        return fc is not None and cond(fc)

    deadline = time.monotonic() + timeout
    while not ok():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}; last GetFleet entry: {last[0]}")
        time.sleep(0.05)
    assert last[0] is not None
    return last[0]  # type: ignore[return-value]


def test_the_client_shows_in_the_fleet_view(client: confgate.Client, addr: str, prefix: str, caplog) -> None:
    tag = prefix.rstrip("/")
    cid, service, labels = f"{tag}-fleet", f"{tag}-svc", {"lang": "python", "zone": "test-a"}
    seed(client, prefix, 3)
    caplog.set_level("DEBUG", logger="confgate")
    with grpc.insecure_channel(addr) as ch:
        stub = pb_grpc.ConfigServiceStub(ch)
        assert fleet_entry(stub, service, cid) is None
        sub = open_subscription([addr], [prefix], client_id=cid, service=service, labels=labels,
                                report_interval=REPORT_INTERVAL)
        try:
            sub.wait_synced(timeout=TIMEOUT)
            assert sub.client_id == cid

            def in_sync_at_view(fc: "pb.FleetClient") -> bool:
                return fc.state == IN_SYNC and fc.applied_cursor == confgate.Cursor.parse(sub.cursor).encode()

            fc = wait_fleet(stub, service, cid, "the client in sync at the subscription's cursor", in_sync_at_view)
            assert fc.client.service == service and dict(fc.client.labels) == labels
            assert fc.gateway == GATEWAY_NAME
            assert list(fc.selector.prefixes) == [prefix]
            assert fc.digest == sub.digest and len(fc.digest) == 16
            assert fc.connected_since_unix_ms > 0 and fc.last_report_unix_ms >= fc.connected_since_unix_ms
            assert not fc.rejections
            resp = stub.GetFleet(pb.GetFleetRequest(service=service), timeout=10)
            assert [(s.service, s.in_sync, s.behind, s.diverged, s.not_reporting, s.unknown)
                    for s in resp.services] == [(service, 1, 0, 0, 0, 0)]

            # A rejection of the current value shows with its version and reason.
            key = f"{prefix}k001"
            held = sub.get(key)
            assert held is not None
            sub.reject(key, "refused by the test: not a number")
            fc = wait_fleet(stub, service, cid, "the rejection", lambda fc: len(fc.rejections) == 1)
            rj = fc.rejections[0]
            assert (rj.key, rj.version.partition, rj.version.offset, rj.reason) == \
                (key, held.partition, held.offset, "refused by the test: not a number")
            assert fc.state == IN_SYNC, "a rejection does not change the view's state"

            # A put through the client's write API: the view moves to the
            # new cursor, in sync again, and the key's new version ends its
            # rejection.
            w = client.put(key, "42", wait_applied=True)
            wait_for("the view to reach the put", lambda: confgate.Cursor.parse(sub.cursor).covers(
                confgate.Cursor.parse(w.cursor)))
            assert sub.get(key).version == w.version
            fc = wait_fleet(stub, service, cid, "the client in sync at the put's cursor",
                            lambda fc: in_sync_at_view(fc) and not fc.rejections and
                            confgate.Cursor.decode(fc.applied_cursor).covers(confgate.Cursor.parse(w.cursor)))
            assert fc.digest == sub.digest
            st = sub.status()
            assert st.connected and st.reconnects == 0 and st.last_error is None
        finally:
            sub.close()
        assert not sub.running
        # Closed: the gateway marks it disconnected, and GetFleet lists only
        # connected clients; the record is tombstoned after the grace.
        start = time.monotonic()
        wait_for("the closed client to leave the fleet", lambda: fleet_entry(stub, service, cid) is None,
                 timeout=FLEET_GRACE + 10 * REPORT_INTERVAL)
        assert time.monotonic() - start < FLEET_GRACE + 10 * REPORT_INTERVAL
    assert "does not take reports" not in caplog.text
    assert not [r for r in caplog.records if r.name == "confgate" and r.levelno >= 30]
