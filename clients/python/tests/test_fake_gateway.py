"""The Subscription's connection logic against scripted fake gateways (grpc
servers in this process): resume cursor on reconnect, failover, refused
selectors and cursors, snapshots that fail their checks."""

from __future__ import annotations

import queue as queue_mod
import threading
import time
from concurrent import futures
from typing import Callable, Iterator, List, Optional, Tuple

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
        # Report calls: (time.monotonic(), request), in order.
        self.reports: List[Tuple[float, pb.ReportRequest]] = []
        # When set, Report answers with this code instead of OK.
        self.report_code: Optional[grpc.StatusCode] = None
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

    def Report(self, request, context):
        with self.lock:
            self.reports.append((time.monotonic(), request))
            code = self.report_code
        if code is not None:
            context.abort(code, "no fleet view here")
        return pb.ReportResponse()

    def report_list(self) -> List[pb.ReportRequest]:
        with self.lock:
            return [r for _, r in self.reports]

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
        assert [e.key for e in sub.view().entries()] == ["a"]
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
        assert [(e.key, e.value) for e in sub.view().entries()] == [("a", b"1b"), ("b", b"2")]
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


# The fleet view: client identity on Subscribe, and Report.


class Feed:
    """A script whose messages the test sends while the stream is open:
    stream n gets what is put in queue(n); None ends the stream cleanly."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.queues: dict = {}

    def queue(self, n: int) -> "queue_mod.Queue":
        with self.lock:
            return self.queues.setdefault(n, queue_mod.Queue())

    def __call__(self, n, req, ctx):
        q = self.queue(n)
        while ctx.is_active():
            try:
                m = q.get(timeout=0.01)
            except queue_mod.Empty:
                continue
            if m is None:
                return
            yield m


def test_client_info_sent_and_generated_id_stable_across_reconnects(gateways) -> None:
    feed = Feed()
    feed.queue(0).put(None)  # the first stream ends at once: a reconnect
    for m in snapshot(cur(1), INITIAL, ent("a", "1", 0, 0)):
        feed.queue(1).put(m)
    g = gateways(feed)
    with subscribe([g.addr], service="payments", labels={"zone": "eu-1", "version": "1.2.3"}) as sub:
        sub.wait_synced(timeout=5)
        r0, r1 = g.request(0), g.request(1)
        assert r0.client.client_id == sub.client_id
        assert len(sub.client_id) == 32 and bytes.fromhex(sub.client_id)
        assert r1.client == r0.client  # the same ID after the reconnect
        assert r0.client.service == "payments"
        assert dict(r0.client.labels) == {"zone": "eu-1", "version": "1.2.3"}
    other = subscribe([g.addr], report_interval=-1)
    assert other.client_id != sub.client_id  # one per Subscription
    other.close()
    g2 = gateways(lambda n, req, ctx: hold(ctx))
    with subscribe([g2.addr], client_id="pod-7", report_interval=-1) as named:
        assert named.client_id == "pod-7" and g2.request(0).client.client_id == "pod-7"


@pytest.mark.parametrize("kw", [
    {"client_id": "has space"},
    {"client_id": "é"},
    {"client_id": "x" * 129},
    {"service": "s" * 129},
    {"labels": {"": "v"}},
    {"labels": {"k" * 129: "v"}},
    {"labels": {"k": "v" * 129}},
    {"labels": {f"k{i}": "v" for i in range(17)}},
])
def test_identity_validated(kw) -> None:
    with pytest.raises(ValueError):
        confgate.Subscription(["127.0.0.1:1"], **kw)


def test_identity_limits_accepted(gateways) -> None:
    g = gateways(lambda n, req, ctx: hold(ctx))
    sub = subscribe([g.addr], client_id="x" * 128, service="s" * 128,
                    labels={f"k{i:03d}" + "k" * 124: "v" * 128 for i in range(16)}, report_interval=-1)
    g.request(0)
    sub.close()


def test_report_after_snapshot_and_delta(gateways) -> None:
    feed = Feed()
    a0, b1, a2 = ent("a", "1", 0, 0), ent("b", "2", 0, 1), ent("a", "3", 0, 2)
    for m in snapshot(cur(2), INITIAL, a0, b1):
        feed.queue(0).put(m)
    g = gateways(feed)
    with subscribe([g.addr], prefixes=["a", "b"], service="svc", report_interval=2.5) as sub:
        sub.wait_synced(timeout=5)
        eventually("a report of the snapshot", lambda: len(g.report_list()) >= 1, timeout=1.0)
        r = g.report_list()[0]
        assert r.applied_cursor == cur(2).encode()
        assert r.digest == digest_of(a0, b1) == sub.digest
        assert r.client.client_id == sub.client_id and r.client.service == "svc"
        assert list(r.selector.prefixes) == ["a", "b"]
        assert list(r.rejections) == []
        feed.queue(0).put(delta(cur(3), put(a2)))
        # At once, but not before interval/5 (0.5 s) after the first.
        eventually("a report of the delta", lambda: len(g.report_list()) >= 2, timeout=1.5)
        with g.lock:
            (t0, _), (t1, r) = g.reports[0], g.reports[1]
        assert t1 - t0 >= 0.45
        assert r.applied_cursor == cur(3).encode()
        assert r.digest == digest_of(a2, b1) == sub.digest


def test_reports_coalesce(gateways) -> None:
    feed = Feed()
    for m in snapshot(cur(1), INITIAL, ent("k", "0", 0, 0)):
        feed.queue(0).put(m)
    g = gateways(feed)
    with subscribe([g.addr], report_interval=5.0) as sub:  # at most one a second
        sub.wait_synced(timeout=5)
        eventually("the first report", lambda: len(g.report_list()) == 1, timeout=1.0)
        for i in range(1, 21):
            feed.queue(0).put(delta(cur(i + 1), put(ent("k", str(i), 0, i))))
        eventually("all deltas", lambda: sub.cursor == str(cur(21)))
        eventually("the report of the burst", lambda: len(g.report_list()) >= 2, timeout=2.0)
        time.sleep(1.3)
        rs = g.report_list()
        assert 2 <= len(rs) <= 3, len(rs)  # twenty deltas, one or two reports
        assert rs[-1].applied_cursor == cur(21).encode() and rs[-1].digest == sub.digest


def test_periodic_report(gateways) -> None:
    feed = Feed()
    for m in snapshot(cur(1), INITIAL, ent("k", "0", 0, 0)):
        feed.queue(0).put(m)
    g = gateways(feed)
    with subscribe([g.addr], report_interval=0.3) as sub:
        sub.wait_synced(timeout=5)
        eventually("four reports without changes", lambda: len(g.report_list()) >= 4, timeout=3.0)
        with g.lock:
            ts = [t for t, _ in g.reports]
        # Every interval, not faster.
        assert all(b - a >= 0.25 for a, b in zip(ts, ts[1:])), ts
        assert all(r.applied_cursor == cur(1).encode() for r in g.report_list())


def test_progress_does_not_ask_for_a_report(gateways) -> None:
    feed = Feed()
    for m in snapshot(cur(1), INITIAL, ent("k", "0", 0, 0)):
        feed.queue(0).put(m)
    g = gateways(feed)
    with subscribe([g.addr], report_interval=1.0) as sub:
        sub.wait_synced(timeout=5)
        eventually("the first report", lambda: len(g.report_list()) == 1, timeout=1.0)
        time.sleep(0.3)
        feed.queue(0).put(pb.SubscribeResponse(progress=pb.Progress(cursor=cur(5).encode())))
        eventually("the progress", lambda: sub.cursor == str(cur(5)))
        time.sleep(0.3)
        assert len(g.report_list()) == 1  # the next tick tells
        eventually("the periodic report", lambda: len(g.report_list()) == 2, timeout=1.5)
        assert g.report_list()[1].applied_cursor == cur(5).encode()


def test_reporting_off(gateways) -> None:
    feed = Feed()
    for m in snapshot(cur(1), INITIAL, ent("k", "0", 0, 0)):
        feed.queue(0).put(m)
    g = gateways(feed)
    with subscribe([g.addr], report_interval=-1) as sub:
        sub.wait_synced(timeout=5)
        sub.reject("k", "no")
        time.sleep(0.3)
        assert g.report_list() == []
        assert g.request(0).client.client_id == sub.client_id


def test_reject_and_accept(gateways) -> None:
    feed = Feed()
    a0, b1 = ent("a", "1", 0, 0), ent("b", "2", 0, 1)
    for m in snapshot(cur(2), INITIAL, a0, b1):
        feed.queue(0).put(m)
    g = gateways(feed)
    with subscribe([g.addr], prefixes=["a", "b", "c"], report_interval=0.5) as sub:
        sub.wait_synced(timeout=5)
        eventually("the first report", lambda: len(g.report_list()) == 1, timeout=1.0)
        sub.reject("b", "schema: max_rps must be positive")
        sub.reject("c", "must exist")  # absent: rejected without a version
        sub.reject("zzz", "outside the selector: ignored")
        sub.reject("b", "x" * 2000)  # latest per key, cut to 1 KiB
        eventually("a report with the rejections", lambda: len(g.report_list()[-1].rejections) == 2, timeout=1.0)
        rj = g.report_list()[-1].rejections
        assert [r.key for r in rj] == ["b", "c"]
        assert rj[0].version == pb.Version(partition=0, offset=1) and rj[0].reason == "x" * 1024
        assert not rj[1].HasField("version") and rj[1].reason == "must exist"
        # Reported until the key changes: b's new version ends its rejection.
        n = len(g.report_list())
        feed.queue(0).put(delta(cur(3), put(ent("b", "3", 0, 2))))
        eventually("the report after the delta", lambda: len(g.report_list()) > n, timeout=1.0)
        assert [r.key for r in g.report_list()[-1].rejections] == ["c"]
        sub.accept("c")
        eventually("no rejection left", lambda: len(g.report_list()[-1].rejections) == 0, timeout=1.0)
        sub.accept("c")  # nothing to clear: ignored


def test_reject_keeps_the_latest_100(gateways) -> None:
    feed = Feed()
    for m in snapshot(cur(1), INITIAL):
        feed.queue(0).put(m)
    g = gateways(feed)
    with subscribe([g.addr], report_interval=0.5) as sub:
        sub.wait_synced(timeout=5)
        for i in range(101):
            sub.reject(f"k{i:03d}", "no")
        eventually("a report with 100 rejections",
                   lambda: len(g.report_list()) > 0 and len(g.report_list()[-1].rejections) == 100, timeout=2.0)
        keys = [r.key for r in g.report_list()[-1].rejections]
        assert keys[0] == "k001" and keys[-1] == "k100"


def test_report_unimplemented_stops_until_reconnect(gateways) -> None:
    feed = Feed()
    for m in snapshot(cur(1), INITIAL, ent("a", "1", 0, 0)):
        feed.queue(0).put(m)
    g = gateways(feed)
    g.report_code = grpc.StatusCode.UNIMPLEMENTED
    with subscribe([g.addr], report_interval=0.2) as sub:
        sub.wait_synced(timeout=5)
        eventually("the refused report", lambda: len(g.report_list()) == 1, timeout=1.0)
        feed.queue(0).put(delta(cur(2), put(ent("a", "2", 0, 1))))
        eventually("the delta", lambda: sub.cursor == str(cur(2)))
        sub.reject("a", "no")
        time.sleep(0.6)
        assert len(g.report_list()) == 1  # no more reports on this stream
        st = sub.status()
        assert st.connected and st.reconnects == 0 and sub.running
        # The next stream reports again.
        g.report_code = None
        feed.queue(1)
        feed.queue(0).put(None)
        eventually("a report on the new stream", lambda: len(g.report_list()) >= 2, timeout=2.0)
        r = g.report_list()[1]
        assert r.applied_cursor == cur(2).encode() and [x.key for x in r.rejections] == ["a"]
        assert sub.status().reconnects == 1


def test_report_errors_retry_at_the_next_tick(gateways) -> None:
    feed = Feed()
    for m in snapshot(cur(1), INITIAL, ent("a", "1", 0, 0)):
        feed.queue(0).put(m)
    g = gateways(feed)
    g.report_code = grpc.StatusCode.UNAVAILABLE
    with subscribe([g.addr], report_interval=0.2) as sub:
        sub.wait_synced(timeout=5)
        eventually("reports retried", lambda: len(g.report_list()) >= 3, timeout=2.0)
        assert sub.status().reconnects == 0
