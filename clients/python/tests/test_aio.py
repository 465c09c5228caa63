"""confgate.aio against scripted fake gateways (the connection logic it
shares with the threaded API, driven by an event loop) and against the real
test gateway (see conftest.py). Each test runs its own event loop
(asyncio.run), so no loop or channel leaks from one test into another."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Awaitable, Callable, List, Optional

import grpc
import grpc.aio
import pytest

import confgate
import confgate.aio
from confgate._statefile import read_state_file
from confgate.v1 import config_pb2 as pb

from test_fake_gateway import gateways, hold  # noqa: F401 (gateways is a fixture)
from test_unit import cur, delete, delta, ent, progress, put, snapshot

INITIAL = pb.SNAPSHOT_REASON_INITIAL


def subscribe(addrs: List[str], **kw) -> confgate.aio.Subscription:
    return confgate.aio.Subscription(addrs, kw.pop("prefixes", []), backoff_min=0.001, backoff_max=0.02,
                                     shuffle=False, **kw)


async def eventually(what: str, cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def run(coro: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(coro(), 30))


def test_snapshot_deltas_events_and_resume(gateways) -> None:
    step = threading.Event()

    def first(n, req, ctx):
        yield from snapshot(cur(2), INITIAL, ent("a", "1", 0, 0), ent("b", "2", 0, 1))
        step.wait(5)
        yield delta(cur(3), put(ent("a", "1b", 0, 2)))
        # a clean end of stream: the next gateway resumes

    def second(n, req, ctx):
        yield delta(cur(5), delete("b", 0, 4))
        yield progress(cur(6))
        yield from hold(ctx)

    g1, g2 = gateways(first), gateways(second)

    async def main() -> None:
        seen: List[confgate.Event] = []
        async with subscribe([g1.addr, g2.addr], prefixes=["b", "a"], on_change=seen.append) as sub:
            events = sub.events()
            await sub.wait_synced(timeout=5)
            assert dict(sub.view()) == {"a": sub["a"], "b": sub["b"]} and len(sub) == 2 and "a" in sub
            step.set()
            got = []
            async for ev in events:
                got.append((ev.kind, ev.key))
                if ev.kind == confgate.DELETE:
                    break
            await events.aclose()
            assert got == [("snapshot", ""), ("put", "a"), ("delete", "b")]
            assert [(e.kind, e.key) for e in seen] == got
            assert list(g1.request(0).selector.prefixes) == ["a", "b"]
            assert g2.request(0).resume_cursor == cur(3).encode()
            await eventually("the progress cursor", lambda: sub.cursor == str(cur(6)))
            st = sub.status()
            assert st.connected and st.stale and st.lag_records == 3 and st.reconnects == 1
            assert sub.get("b") is None and sub["a"].value == b"1b"
        assert not sub.running
        assert sub.view()["a"].value == b"1b", "the view stays readable after close"

    run(main)


def test_refused_selector_stops_waits_and_events(gateways) -> None:
    def script(n, req, ctx):
        ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, "selector: prefix not allowed")
        yield

    g = gateways(script)

    async def main() -> None:
        sub = subscribe([g.addr])
        events = sub.events()
        with pytest.raises(grpc.RpcError) as e:
            await sub.wait_synced(timeout=5)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError):
            async for _ in events:
                pass
        assert not sub.running and g.calls() == 1
        await sub.close()

    run(main)


def test_cancellation_is_safe(gateways, tmp_path: Path) -> None:
    gate = threading.Event()

    def script(n, req, ctx):
        gate.wait(5)
        yield from snapshot(cur(1), INITIAL, ent("a", "1", 0, 0))
        yield from hold(ctx)

    g = gateways(script)

    async def main() -> None:
        sub = subscribe([g.addr])
        # A cancelled wait leaves the subscription running.
        waiter = asyncio.ensure_future(sub.wait_synced())
        await asyncio.sleep(0.05)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        with pytest.raises(TimeoutError):
            await sub.wait_synced(timeout=0.05)
        assert sub.running
        gate.set()
        await sub.wait_synced(timeout=5)
        # close() cancelled halfway still stops the subscription.
        closing = asyncio.ensure_future(sub.close())
        await asyncio.sleep(0)
        closing.cancel()
        await eventually("the stop", lambda: not sub.running)
        await sub.wait_synced(timeout=1)  # it was synced: that stays true, as in the Go client
        assert not sub.status().connected
        await sub.close()  # idempotent
        # Closed before it synced: the wait ends with SubscriptionClosed.
        never = subscribe(["unix:" + str(tmp_path / "nobody.sock")])
        await never.start()
        waiting = asyncio.ensure_future(never.wait_synced())
        await asyncio.sleep(0.05)
        await never.close()
        with pytest.raises(confgate.SubscriptionClosed):
            await waiting

    run(main)


@pytest.mark.parametrize("report_interval,cancel_close", [
    pytest.param(None, False, id="reports on"),
    pytest.param(-1, False, id="reports off"),
    pytest.param(None, True, id="reports on, close cancelled"),
    pytest.param(-1, True, id="reports off, close cancelled"),
])
def test_close_finishes_everything(gateways, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   report_interval: Optional[float], cancel_close: bool) -> None:
    """close() (even when the task awaiting it is cancelled) stops the
    subscription whole: the stream's channel is closed, the state file holds
    the final view, running is False and events() iterators end. The state
    file's interval is long, so only the last write, made when stopping, can
    hold the delta."""
    path = tmp_path / "state"

    def script(n, req, ctx):
        yield from snapshot(cur(2), INITIAL, ent("a", "1", 0, 0))
        yield delta(cur(3), put(ent("a", "2", 0, 2)))
        yield from hold(ctx)

    g = gateways(script)
    # Every channel the subscription opens, to see that it closed them: a
    # closed grpc.aio channel's state is SHUTDOWN.
    channels: List[grpc.aio.Channel] = []
    open_channel = confgate.aio._open_channel

    def recording(*args, **kw) -> grpc.aio.Channel:
        ch = open_channel(*args, **kw)
        channels.append(ch)
        return ch

    monkeypatch.setattr(confgate.aio, "_open_channel", recording)

    async def main() -> None:
        sub = subscribe([g.addr], report_interval=report_interval, state_file=path, state_file_interval=60)
        await sub.start()
        events = sub.events()
        await sub.wait_synced(timeout=5)
        await eventually("the delta", lambda: sub.cursor == str(cur(3)))
        if report_interval is None:
            await eventually("a report", lambda: len(g.report_list()) >= 1)
        if cancel_close:
            closing = asyncio.ensure_future(sub.close())
            await asyncio.sleep(0)
            closing.cancel()
            with pytest.raises(asyncio.CancelledError):
                await closing
            await sub.close()  # waits for the stop the cancelled close() began
        else:
            await sub.close()
        assert not sub.running
        got = await asyncio.wait_for(_drain(events), 5)
        assert [e.kind for e in got] == [confgate.SNAPSHOT, confgate.PUT], "the iterator ends after its events"
        assert len(channels) == 1 and channels[0].get_state() == grpc.ChannelConnectivity.SHUTDOWN
        saved = read_state_file(str(path), [])
        assert saved.cursor == cur(3) and saved.entries == dict(sub.view()), "close() waits for the last write"

    run(main)


async def _drain(events: confgate.aio.EventStream) -> List[confgate.Event]:
    return [ev async for ev in events]


def test_slow_event_consumer_gets_a_reset(gateways) -> None:
    def script(n, req, ctx):
        yield from snapshot(cur(1), INITIAL)
        for i in range(10):
            yield delta(cur(2 + i), put(ent(f"k{i}", "v", 0, 1 + i)))
        yield from hold(ctx)

    g = gateways(script)

    async def main() -> None:
        async with subscribe([g.addr]) as sub:
            events = sub.events(max_pending=4)
            await eventually("every delta", lambda: len(sub) == 10)
            got = [ev async for ev in _take(events, 100, 0.2)]
            assert got[0].kind == confgate.RESET, "a consumer that fell behind is told to re-read the view"
            assert len(got) <= 4 and got[-1].cursor == sub.cursor
            # The snapshot and the 10 puts: each one either reached the
            # consumer or was replaced by a reset and counted.
            assert events.dropped + sum(e.kind != confgate.RESET for e in got) == 11

    run(main)


@pytest.mark.parametrize("max_pending,pushed,dropped,kept", [
    (4, 4, 0, ["1", "2", "3", "4"]),
    (4, 5, 5, ["R5"]),  # the 5th is replaced by the reset too
    (4, 8, 5, ["R5", "6", "7", "8"]),
    (4, 9, 9, ["R9"]),  # the first reset is not an event of the view: not counted
    (4, 10, 9, ["R9", "10"]),
    (1, 3, 3, ["R3"]),
])
def test_event_stream_counts_what_the_reset_replaced(max_pending: int, pushed: int, dropped: int,
                                                     kept: List[str]) -> None:
    async def main() -> None:
        sub = subscribe(["127.0.0.1:1"])
        es = confgate.aio.EventStream(sub, max_pending)
        for i in range(1, pushed + 1):
            es._push(confgate.Event(confgate.PUT, str(i), f"k{i}"))
        sub._core.finish()  # as a stopped subscription: the iterator ends after what it holds
        got = [("R" if ev.kind == confgate.RESET else "") + ev.cursor for ev in await _drain(es)]
        assert (es.dropped, got) == (dropped, kept)

    run(main)


async def _take(events: confgate.aio.EventStream, n: int, idle: float):
    for _ in range(n):
        try:
            yield await asyncio.wait_for(events.__anext__(), idle)
        except asyncio.TimeoutError:
            return


def test_state_file(gateways, tmp_path: Path) -> None:
    path = tmp_path / "state"

    def script(n, req, ctx):
        if n == 0:
            yield from snapshot(cur(2), INITIAL, ent("a", "1", 0, 0))
        else:
            assert req.resume_cursor == cur(2).encode()
            yield delta(cur(3), put(ent("a", "2", 0, 2)))
        yield from hold(ctx)

    g = gateways(script)

    async def main() -> None:
        async with subscribe([g.addr], state_file=path) as sub:
            await sub.wait_synced(timeout=5)
        assert path.exists(), "close() waits for the last write"
        down = subscribe(["unix:" + str(tmp_path / "nobody.sock")], state_file=path)
        await down.wait_loaded(timeout=0)
        assert down["a"].value == b"1" and down.status().from_file
        await down.close()
        events: List[confgate.Event] = []
        async with subscribe([g.addr], state_file=path, on_change=events.append) as sub:
            await sub.wait_synced(timeout=5)
            assert sub["a"].value == b"2" and [e.kind for e in events] == [confgate.LOADED, confgate.PUT]

    run(main)


def test_reports_and_token(gateways) -> None:
    def script(n, req, ctx):
        yield from snapshot(cur(1), INITIAL, ent("a", "1", 0, 0))
        yield from hold(ctx)

    g = gateways(script)

    async def main() -> None:
        async with subscribe([g.addr], service="svc", report_interval=0.2, token="t0k") as sub:
            await sub.wait_synced(timeout=5)
            await eventually("a report", lambda: len(g.report_list()) >= 1)
            r = g.report_list()[-1]
            assert r.client.client_id == sub.client_id and r.client.service == "svc"
            assert r.applied_cursor == cur(1).encode() and r.digest == sub.digest
            sub.reject("a", "bad")
            await eventually("the rejection", lambda: any(len(x.rejections) == 1 for x in g.report_list()))
        assert g.request(0).client.client_id == sub.client_id

    run(main)


# The real gateway.

def test_client_against_the_gateway(addr: str, prefix: str) -> None:
    async def main() -> None:
        async with confgate.aio.Client([addr]) as c, \
                confgate.aio.Subscription([addr], [prefix], report_interval=-1) as sub:
            await sub.wait_synced(timeout=20)
            w = await c.put(prefix + "a", "1", content_type="text/plain", headers=[("by", "aio")])
            got = await c.get(prefix + "a", min_cursor=w.cursor)
            assert got is not None and got.text() == "1" and got.version == w.version
            with pytest.raises(confgate.PreconditionFailed) as e:
                await c.put(prefix + "a", "2", if_absent=True)
            assert e.value.keys == [(prefix + "a", w.version)]
            r = await c.apply([confgate.Put(prefix + "b", "2", if_absent=True),
                               confgate.Put(prefix + "a", "3", if_version=w.version)])
            d = await c.delete(prefix + "b", if_version=r.versions[0])
            assert await c.get(prefix + "b", min_cursor=d.cursor) is None
            snap = await c.snapshot([prefix], min_cursor=d.cursor)
            assert [(e.key, e.value) for e in snap.entries] == [(prefix + "a", b"3")]
            await eventually("the subscription to catch up", lambda: sub.view() == {e.key: e for e in snap.entries},
                             timeout=20)
            assert sub.digest == snap.digest
            # Concurrent calls on one client.
            ws = await asyncio.gather(*(c.put(f"{prefix}c{i}", str(i)) for i in range(20)))
            assert len({w.request_id for w in ws}) == 20

    run(main)
