"""confgate for asyncio, on grpc.aio.

    import confgate.aio

    async with confgate.aio.Subscription(["127.0.0.1:50051"], ["payments/"]) as sub:
        await sub.wait_synced(timeout=10)
        print(sub.view().get("payments/db/timeout"))
        async for event in sub.events():
            print(event.kind, event.key)

Subscription and Client have the semantics of confgate.Subscription and
confgate.Client (the same view, checks, retries, resume, reports and state
file: the logic is shared, only the I/O differs). The subscription runs as a
task of the event loop it was started in; reads (view(), get(), status())
never wait; waits and calls are coroutines that can be cancelled at any
await (cancelling one leaves the subscription or client usable). Use one
from the thread of its event loop: only view(), get(), status() and the
other reads are also safe from other threads.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
import weakref
from typing import Any, Awaitable, Callable, Deque, List, Optional, Sequence, Tuple, TypeVar, Union

import grpc
import grpc.aio

from ._base import ClientBase, Reconnects, SubscriptionBase
from ._calls import (CursorLike, HeaderLike, OperationLike, SnapshotBuilder, apply_request, apply_result,
                     delete_request, get_request, put_request, snapshot_request, write_result)
from ._channel import TokenSource
from ._core import ReportClock, StreamEnded, SubscriptionClosed, details
from ._errors import convert_write_error
from ._replica import ProtocolViolation, Session
from ._stub import AioStub, aio_stub
from ._types import RESET, ApplyResult, Entry, Event, Snapshot, VersionLike, WriteResult

__all__ = ["Client", "EventStream", "Subscription"]

log = logging.getLogger("confgate")

T = TypeVar("T")

# Events an events() iterator holds for a consumer that is behind; past it
# they are replaced by one reset event (see EventStream).
DEFAULT_MAX_PENDING_EVENTS = 10_000

Metadata = Tuple[Tuple[str, str], ...]


def _open_channel(addr: str, credentials: Optional[grpc.ChannelCredentials],
                  options: Sequence[Tuple[str, Any]]) -> grpc.aio.Channel:
    if credentials is None:
        return grpc.aio.insecure_channel(addr, options=list(options))
    return grpc.aio.secure_channel(addr, credentials, options=list(options))


def _metadata(token: Optional[TokenSource]) -> Optional[Metadata]:
    """The call metadata carrying the bearer token (the threaded API adds it
    with a channel interceptor; here every call site passes it)."""
    if token is None:
        return None
    return (("authorization", "Bearer " + token.token()),)


class EventStream:
    """An async iterator over a Subscription's events, in order, from the
    moment it was made (Subscription.events()). It ends when the
    subscription is closed, and raises the permanent error that stopped it
    (INVALID_ARGUMENT: the selector was refused).

    The subscription never waits for a consumer: events wait in the
    iterator, at most max_pending of them. A consumer further behind loses
    the pending events and gets one "reset" event at the cursor of the last
    one instead, as after a snapshot that replaced the view: read the view
    (Subscription.view()) for the current state. aclose() (or dropping the
    iterator) stops the collection."""

    def __init__(self, sub: "Subscription", max_pending: int) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self._sub = sub
        self._max = max_pending
        self._items: Deque[Event] = collections.deque()
        self._wake = asyncio.Event()
        self._closed = False
        # The reset event this iterator made in place of dropped events, while
        # it waits first in _items: it stands for events already counted.
        self._reset: Optional[Event] = None
        self.dropped = 0
        """Events of the subscription replaced by reset events because the
        consumer was behind (the one that overflowed included)."""

    def _push(self, ev: Event) -> None:
        if self._closed:
            return
        if len(self._items) >= self._max:
            held = len(self._items)
            if self._reset is not None and self._items[0] is self._reset:
                held -= 1
            self.dropped += held + 1  # the pending events, and ev, which the reset replaces
            self._items.clear()
            ev = self._reset = Event(RESET, ev.cursor)
        self._items.append(ev)
        self._wake.set()

    def _end(self) -> None:
        self._wake.set()

    def __aiter__(self) -> "EventStream":
        return self

    async def __anext__(self) -> Event:
        while True:
            if self._items:
                return self._items.popleft()
            if self._closed or self._sub._core.done:
                self._closed = True
                self._sub._streams.discard(self)
                err = self._sub._core.stop_error
                if err is not None and not isinstance(err, SubscriptionClosed):
                    raise err
                raise StopAsyncIteration
            self._wake.clear()
            await self._wake.wait()

    async def aclose(self) -> None:
        """Stops collecting events; the iterator ends."""
        self._closed = True
        self._items.clear()
        self._sub._streams.discard(self)
        self._wake.set()


class Subscription(SubscriptionBase):
    """A live view of the entries whose keys start with one of prefixes,
    driven by an asyncio task: confgate.Subscription for asyncio, with the
    same arguments and semantics.

    Start it with ``async with`` (or ``await sub.start()``, and ``await
    sub.close()`` at the end); wait_synced(), wait_loaded() and events()
    start it too. The state file, when given, is read in a worker thread at
    start and written by a thread of its own, so the event loop never waits
    for the disk.

    Reads never wait: view() returns the current state as an immutable
    Mapping[str, Entry]; get(key), sub[key], key in sub and len(sub) read it
    directly. on_change, when given, is called in the event loop after each
    change, in order; it must not block. events() is the asynchronous
    alternative.
    """

    def _setup(self) -> None:
        self._starting: Optional["asyncio.Future[None]"] = None
        self._closing: Optional["asyncio.Future[None]"] = None
        self._finishing: Optional["asyncio.Future[None]"] = None
        self._task: Optional["asyncio.Task[None]"] = None
        self._closed = False
        # Set once a gateway vouched for the view or the subscription ended;
        # never cleared.
        self._settled = asyncio.Event()
        self._kick = asyncio.Event()  # a report is asked for
        self._streams: "weakref.WeakSet[EventStream]" = weakref.WeakSet()

    # Lifecycle.

    async def start(self) -> "Subscription":
        """Loads the state file (when given) and starts the subscription's
        task in the running event loop. Idempotent; concurrent calls share
        one start, and cancelling a caller does not cancel it."""
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._start())
        await asyncio.shield(self._starting)
        return self

    async def _start(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._core.load_state_file)
        if self._closed:
            return
        if self._core.writer is not None:
            self._core.writer.start()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        """Stops the subscription and waits for its task (with a state file,
        its last write). The view stays readable with its last state.
        Idempotent. Cancelling close() leaves the stop under way."""
        if self._closing is None:
            self._closed = True
            self._core.closing()
            if self._task is not None:
                # Before any await, so that a cancelled close() still stops;
                # and only once: a second cancel would land in the task's
                # cleanup (closing its channel, the last state file write).
                self._task.cancel()
            self._closing = asyncio.ensure_future(self._close())
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        if self._starting is not None:
            # A start still loading the state file starts no task (_closed).
            await asyncio.wait([self._starting])
        if self._task is not None:
            await asyncio.wait([self._task])
        # A task cancelled before it ran its first line never ran its
        # cleanup, and one cancelled while it waited for _finish left that
        # running: either way, the end is waited for here.
        await self._finish()

    async def __aenter__(self) -> "Subscription":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def wait_synced(self, timeout: Optional[float] = None) -> None:
        """Waits until a gateway vouched for the view: the first snapshot was
        applied or, for a view loaded from the state file, the resumed
        stream's first delta, progress or snapshot. Raises TimeoutError
        after timeout seconds, the permanent error that stopped the
        subscription (grpc.RpcError, INVALID_ARGUMENT for a refused
        selector), or SubscriptionClosed."""
        await self.start()
        try:
            await asyncio.wait_for(self._settled.wait(), timeout)
        except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
            raise TimeoutError(f"no snapshot within {timeout}s") from None
        if not self._core.synced:
            err = self._core.wait_error()
            assert err is not None
            raise err

    async def wait_loaded(self, timeout: Optional[float] = None) -> None:
        """wait_synced, except that it returns at once when the view was
        loaded from the state file: the view has a state to serve, fresh or
        last-known-good (watch status().stale)."""
        await self.start()
        if self._core.loaded:
            return
        await self.wait_synced(timeout)

    def events(self, max_pending: int = DEFAULT_MAX_PENDING_EVENTS) -> EventStream:
        """An async iterator over the events applied from now on (see
        EventStream)::

            async for event in sub.events():
                ...

        Starts the subscription when it is not started yet (from the first
        iteration on)."""
        es = EventStream(self, max_pending)
        self._streams.add(es)
        if self._starting is None:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                pass  # no loop yet: start() or the first wait starts it
            else:
                self._starting = asyncio.ensure_future(self._start())
        return es

    # The subscription's task.

    async def _run(self) -> None:
        core = self._core
        try:
            loaded = core.loaded_event()
            if loaded is not None:
                self._deliver([loaded])
            r = Reconnects(core)
            while True:
                addr, resumed = r.begin()
                delivered, err = await self._stream(addr, resumed)
                core.disconnected()
                wait = r.ended(delivered, err)
                if wait is None:
                    return
                await asyncio.sleep(wait)
        except asyncio.CancelledError:
            pass  # close(), or the event loop is shutting down
        except Exception as e:  # a bug: keep the view, say why it stopped
            core.failed(e)
        finally:
            await asyncio.shield(self._finish())

    def _finish(self) -> "asyncio.Future[None]":
        """Ends the subscription, once, for whoever asks first (the task as it
        stops, or close()): the last state file write, then done
        (wait_synced raises, events() iterators end). The steps run in a
        task of their own, so a waiter that is cancelled (shield it) does not
        cut them short, and close() can wait for them whatever happened to
        the subscription's task."""
        if self._finishing is None:
            self._finishing = asyncio.ensure_future(self._finish_steps())
        return self._finishing

    async def _finish_steps(self) -> None:
        try:
            writer = self._core.writer
            if writer is not None:
                # In a worker thread: the event loop never waits for the disk.
                await asyncio.get_running_loop().run_in_executor(None, writer.stop)
        finally:
            # Even if the event loop, shutting down, cancels this: without
            # done, waits and events() iterators would never end.
            self._core.finish()
            self._settled.set()
            for es in list(self._streams):
                es._end()

    async def _stream(self, addr: str, resumed: bool) -> Tuple[bool, BaseException]:
        """Runs one Subscribe stream until it fails; returns whether a message
        was applied, and the error that ended it."""
        core = self._core
        delivered = False
        req = core.subscribe_request(resumed)
        try:
            channel = _open_channel(addr, self._s.credentials, self._s.options)
        except Exception as e:  # a bad target
            return False, e
        reporter: Optional["asyncio.Task[None]"] = None
        call: Optional[Any] = None
        try:
            st = aio_stub(channel)
            call = st.Subscribe(req, metadata=_metadata(self._s.token))
            if self._s.report_interval > 0:
                # Reports go over this stream's channel, so the gateway that
                # serves the client is the one that hears from it.
                reporter = asyncio.get_running_loop().create_task(self._reporter(st, addr))
            sess = Session(resumed=resumed)
            try:
                async for m in call:
                    first = not delivered
                    if first:
                        delivered = True
                        core.first_message(addr, resumed)
                    res = core.apply(sess, m)
                    if res.first:
                        self._settled.set()
                    if core.wants_report(res, first):
                        self._kick_report()
                    self._deliver(res.events)
            except grpc.RpcError as e:
                return delivered, e
            except ProtocolViolation as e:
                return delivered, e
            return delivered, StreamEnded(f"gateway {addr} closed the stream")
        finally:
            try:
                if call is not None:
                    call.cancel()
                if reporter is not None:
                    reporter.cancel()
                    await asyncio.wait([reporter])
            finally:
                # Shielded: the channel closes even if this cleanup is itself
                # cancelled (the event loop shutting down).
                await asyncio.shield(channel.close())

    def _kick_report(self) -> None:
        if self._s.report_interval > 0:
            self._kick.set()

    async def _reporter(self, st: AioStub, addr: str) -> None:
        """Sends reports through one stream's stub until the stream ends or
        the gateway answers UNIMPLEMENTED, one at a time, as ReportClock
        says (client/report.go)."""
        core = self._core
        clock = ReportClock(self._s.report_interval, time.monotonic())
        try:
            while True:
                while True:
                    if self._kick.is_set():
                        self._kick.clear()
                        clock.ask()
                    wait = clock.wait(time.monotonic())
                    if wait <= 0:
                        break
                    try:
                        await asyncio.wait_for(self._kick.wait(), wait)
                    except asyncio.TimeoutError:
                        pass
                req = core.report_request()
                if req is None:
                    clock.skipped(time.monotonic())
                    continue
                clock.started(time.monotonic())
                try:
                    await st.Report(req, timeout=clock.timeout, metadata=_metadata(self._s.token))
                except grpc.RpcError as e:
                    if e.code() == grpc.StatusCode.UNIMPLEMENTED:
                        log.debug("gateway %s does not take reports; not reporting until the next reconnect: %s",
                                  addr, details(e))
                        return
                    log.debug("report to %s failed; retrying at the next tick (in %ss): %s",
                              addr, clock.interval, details(e))
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug: reporting stops, the subscription carries on
            log.exception("reporter failed; not reporting until the next reconnect")

    def _deliver(self, events: List[Event]) -> None:
        if not events:
            return
        for es in list(self._streams):
            for ev in events:
                es._push(ev)
        on_change = self._s.on_change
        if on_change is None:
            return
        for ev in events:
            try:
                on_change(ev)
            except Exception:
                log.exception("on_change callback raised; continuing")


class Client(ClientBase):
    """confgate.Client for asyncio: get, put, delete, apply and snapshot as
    coroutines, with the same failover (UNAVAILABLE moves on to the next
    address), request IDs kept across those retries, and errors
    (PreconditionFailed, grpc.RpcError). Channels open on the first call,
    in the running event loop; close them with ``async with`` or close().
    Cancelling a call cancels its RPC; a write whose RPC was cancelled may
    still land (retry it with the same request_id to find out)."""

    def _setup(self) -> None:
        self._channels: List[grpc.aio.Channel] = []
        self._stubs: List[AioStub] = []

    async def close(self) -> None:
        channels, self._channels, self._stubs = self._channels, [], []
        for c in channels:
            await c.close()

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _md(self) -> Optional[Metadata]:
        return _metadata(self._token)

    async def _call(self, fn: Callable[[AioStub], Awaitable[T]]) -> T:
        if not self._stubs:
            self._channels = [_open_channel(a, self._credentials, self._options) for a in self._addrs]
            self._stubs = [aio_stub(c) for c in self._channels]
        last: Optional[grpc.RpcError] = None
        for st in self._stubs:
            try:
                return await fn(st)
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                last = e
        assert last is not None
        raise last

    async def _write(self, fn: Callable[[AioStub], Awaitable[T]], conditional: bool) -> T:
        try:
            return await self._call(fn)
        except grpc.RpcError as e:
            err = convert_write_error(e, conditional)
            if err is e:
                raise
            raise err from None

    async def get(self, key: str, *, min_cursor: CursorLike = None) -> Optional[Entry]:
        """The entry for key, or None (see confgate.Client.get)."""
        req = get_request(key, min_cursor)
        try:
            resp = await self._call(lambda s: s.Get(req, timeout=self._timeout, metadata=self._md()))
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise
        return Entry.from_proto(resp.entry)

    async def put(
        self,
        key: str,
        value: Union[bytes, str],
        *,
        content_type: str = "",
        headers: Sequence[HeaderLike] = (),
        wait_applied: bool = False,
        if_absent: bool = False,
        if_version: Optional[VersionLike] = None,
        request_id: Optional[str] = None,
    ) -> WriteResult:
        """Writes value to key (see confgate.Client.put)."""
        req, conditional = put_request(key, value, content_type, headers, wait_applied, if_absent, if_version,
                                       request_id)
        resp = await self._write(lambda s: s.Put(req, timeout=self._timeout, metadata=self._md()), conditional)
        return write_result(resp, req.request_id)

    async def delete(
        self,
        key: str,
        *,
        wait_applied: bool = False,
        if_absent: bool = False,
        if_version: Optional[VersionLike] = None,
        request_id: Optional[str] = None,
    ) -> WriteResult:
        """Writes a tombstone for key (see confgate.Client.delete)."""
        req, conditional = delete_request(key, wait_applied, if_absent, if_version, request_id)
        resp = await self._write(lambda s: s.Delete(req, timeout=self._timeout, metadata=self._md()), conditional)
        return write_result(resp, req.request_id)

    async def apply(
        self,
        operations: Sequence[OperationLike],
        *,
        request_id: Optional[str] = None,
        wait_applied: bool = False,
        validate_only: bool = False,
    ) -> ApplyResult:
        """Writes a change set, all or nothing (see confgate.Client.apply)."""
        req, conditional = apply_request(operations, request_id, wait_applied, validate_only)
        resp = await self._write(lambda s: s.Apply(req, timeout=self._timeout, metadata=self._md()), conditional)
        return apply_result(resp, req.request_id)

    async def snapshot(self, prefixes: Sequence[str] = (), *, min_cursor: CursorLike = None) -> Snapshot:
        """The consistent, checked state of a selector at one cursor (see
        confgate.Client.snapshot)."""
        req = snapshot_request(prefixes, min_cursor)

        async def run(st: AioStub) -> Snapshot:
            b = SnapshotBuilder()
            call = st.GetSnapshot(req, timeout=self._timeout, metadata=self._md())
            try:
                async for m in call:
                    snap = b.add(m)
                    if snap is not None:
                        return snap
            finally:
                call.cancel()
            raise b.unfinished()

        return await self._call(run)

