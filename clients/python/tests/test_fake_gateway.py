"""The Subscription's connection logic against scripted fake gateways (grpc
servers in this process): resume cursor on reconnect, failover, refused
selectors and cursors, snapshots that fail their checks."""

from __future__ import annotations

import threading
import time
from concurrent import futures
from typing import Callable, Iterator, List

import grpc
import pytest

import confgate
from confgate.v1 import config_pb2 as pb
from confgate.v1 import config_pb2_grpc as pb_grpc

from test_unit import chunk, cur, delta, digest_of, end, ent, put, snapshot

Script = Callable[[int, pb.SubscribeRequest, grpc.ServicerContext], Iterator[pb.SubscribeResponse]]


class FakeGateway(pb_grpc.ConfigServiceServicer):
    def __init__(self, script: Script) -> None:
        self.script = script
        self.lock = threading.Lock()
        self.requests: List[pb.SubscribeRequest] = []
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        pb_grpc.add_ConfigServiceServicer_to_server(self, self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.addr = f"127.0.0.1:{port}"
        self.server.start()

    def Subscribe(self, request, context):
        with self.lock:
            n = len(self.requests)
            self.requests.append(request)
        yield from self.script(n, request, context)

    def request(self, n: int, timeout: float = 5.0) -> pb.SubscribeRequest:
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                if len(self.requests) > n:
                    return self.requests[n]
            if time.monotonic() > deadline:
                pytest.fail(f"no Subscribe call {n} on {self.addr}")
            time.sleep(0.005)

    def calls(self) -> int:
        with self.lock:
            return len(self.requests)

    def stop(self) -> None:
        self.server.stop(grace=None)


def hold(context: grpc.ServicerContext) -> Iterator[pb.SubscribeResponse]:
    while context.is_active():
        time.sleep(0.01)
    return
    yield  # a generator


@pytest.fixture
def gateways():
    started: List[FakeGateway] = []

    def start(script: Script) -> FakeGateway:
        g = FakeGateway(script)
        started.append(g)
        return g

    yield start
    for g in started:
        g.stop()


def subscribe(addrs, **kw) -> confgate.Subscription:
    return confgate.Subscription(addrs, kw.pop("prefixes", []), backoff_min=0.001, backoff_max=0.02, shuffle=False, **kw)


def eventually(what: str, cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


INITIAL = pb.SNAPSHOT_REASON_INITIAL


def test_selector_sent_normalized_and_resume_on_the_next_gateway(gateways) -> None:
    def first(n, req, ctx):
        if n == 0:
            yield from snapshot(cur(2), INITIAL, ent("a", "1", 0, 0), ent("b", "2", 0, 1))
            return  # a clean end of stream
        yield from hold(ctx)

    def second(n, req, ctx):
        yield delta(cur(3), put(ent("a", "1b", 0, 2)))
        yield from hold(ctx)

    g1, g2 = gateways(first), gateways(second)
    with subscribe([g1.addr, g2.addr], prefixes=["db/", "app/", "app/x/"]) as sub:
        sub.wait_synced(timeout=5)
        assert list(g1.request(0).selector.prefixes) == ["app/", "db/"]
        assert g1.request(0).resume_cursor == b""
        assert g2.request(0).resume_cursor == cur(2).encode()
        eventually("the delta from the second gateway", lambda: sub.cursor == str(cur(3)))
        assert sub.get("a").value == b"1b"
        st = sub.status()
        assert st.addr == g2.addr and st.reconnects == 1 and st.resets == 0


def test_first_address_down(gateways) -> None:
    def script(n, req, ctx):
        yield from snapshot(cur(1), INITIAL, ent("a", "1", 0, 0))
        yield from hold(ctx)

    g = gateways(script)
    down = gateways(script)
    down.stop()
    with subscribe([down.addr, g.addr]) as sub:
        sub.wait_synced(timeout=5)
        st = sub.status()
        assert st.addr == g.addr and st.reconnects == 1
        assert st.last_error is not None and st.last_error.code() == grpc.StatusCode.UNAVAILABLE


def test_invalid_selector_is_permanent(gateways) -> None:
    def script(n, req, ctx):
        ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, "selector prefix not allowed")
        yield

    g = gateways(script)
    sub = subscribe([g.addr])
    with pytest.raises(grpc.RpcError) as e:
        sub.wait_synced(timeout=5)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    eventually("the subscription to stop", lambda: not sub.running)
    assert g.calls() == 1
    assert sub.status().stale
    sub.close()


def test_refused_cursor_is_dropped(gateways) -> None:
    def script(n, req, ctx):
        if n == 0:
            yield from snapshot(cur(2), INITIAL, ent("a", "1", 0, 0), ent("b", "2", 0, 1))
            return
        if req.resume_cursor:
            ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, "resume cursor: unknown format")
        yield from snapshot(cur(3), INITIAL, ent("a", "1b", 0, 2))
        yield from hold(ctx)

    g = gateways(script)
    with subscribe([g.addr]) as sub:
        sub.wait_synced(timeout=5)
        assert g.request(1).resume_cursor == cur(2).encode()
        assert g.request(2).resume_cursor == b""
        eventually("the fresh snapshot", lambda: sub.cursor == str(cur(3)))
        assert [e.key for e in sub.items()] == ["a"]
        assert sub.running


@pytest.mark.parametrize("bad", ["digest", "entry_count"])
def test_snapshot_failing_its_checks_resubscribes_fresh(gateways, bad: str) -> None:
    def script(n, req, ctx):
        if n == 0:
            yield from snapshot(cur(2), INITIAL, ent("a", "1", 0, 0), ent("b", "2", 0, 1))
            msgs = snapshot(cur(4), pb.SNAPSHOT_REASON_HISTORY_EXPIRED, ent("a", "1b", 0, 2), ent("b", "2", 0, 1))
            if bad == "digest":
                msgs[-1].snapshot_end.digest = digest_of(ent("a", "1", 0, 0))
            else:
                msgs[-1].snapshot_end.entry_count = 3
            yield from msgs
        elif n == 1:
            yield from snapshot(cur(4), INITIAL, ent("a", "1b", 0, 2), ent("b", "2", 0, 1))
        yield from hold(ctx)

    g = gateways(script)
    with subscribe([g.addr]) as sub:
        assert g.request(1).resume_cursor == b""
        eventually("the good snapshot", lambda: sub.cursor == str(cur(4)))
        assert [(e.key, e.value) for e in sub.items()] == [("a", b"1b"), ("b", b"2")]
        assert sub.status().resets == 1


def test_cursor_behind_drops_the_stream_and_resumes_with_own_cursor(gateways) -> None:
    def script(n, req, ctx):
        if n == 0:
            yield from snapshot(cur(5, 5), INITIAL, ent("k", "v1", 0, 4))
            yield delta(cur(5, 4), put(ent("k", "v2", 1, 3)))
        yield from hold(ctx)

    g = gateways(script)
    with subscribe([g.addr]) as sub:
        sub.wait_synced(timeout=5)
        assert g.request(1).resume_cursor == cur(5, 5).encode()
        assert sub.cursor == str(cur(5, 5)) and sub.get("k").value == b"v1"
        st = sub.status()
        assert st.resets == 0 and isinstance(st.last_error, confgate.ProtocolViolation)


def test_close_and_wait_synced(gateways) -> None:
    g = gateways(lambda n, req, ctx: hold(ctx))  # never sends a snapshot
    sub = subscribe([g.addr])
    with pytest.raises(TimeoutError):
        sub.wait_synced(timeout=0.05)
    g.request(0)
    sub.close()
    sub.close()
    with pytest.raises(confgate.SubscriptionClosed):
        sub.wait_synced(timeout=1)
    assert len(sub) == 0 and sub.cursor == "" and not sub.running


def test_on_change_sees_the_updated_view(gateways) -> None:
    def script(n, req, ctx):
        yield chunk(ent("a", "1", 0, 0))
        yield end(cur(1), INITIAL, ent("a", "1", 0, 0))
        yield delta(cur(2), put(ent("b", "2", 0, 1)))
        yield from hold(ctx)

    seen = []
    sub: List[confgate.Subscription] = []

    def on_change(e: confgate.Event) -> None:
        while not sub:
            time.sleep(0.001)
        seen.append((e.kind, e.key, len(sub[0]), sub[0].cursor))

    g = gateways(script)
    s = subscribe([g.addr], on_change=on_change)
    sub.append(s)
    try:
        eventually("two events", lambda: len(seen) == 2)
        assert seen == [("snapshot", "", 1, str(cur(1))), ("put", "b", 2, str(cur(2)))]
    finally:
        s.close()
