"""Subscription: a resumable subscription to a selector that keeps a local,
always-readable view of the selected entries. A port of the Go client
(client/ in the Go module), with the same semantics:

- one background thread holds a Subscribe stream to one gateway at a time,
  builds the view from snapshots, applies deltas and follows progress;
- on any failure it backs off (exponential, full jitter) and resumes on the
  next address with the last applied cursor;
- it never goes backwards: a change not newer than the view's version of its
  key is ignored, and a gateway that sends a cursor behind the view's (same
  topic, not a flagged reset) is dropped, never applied;
- it never shows a half-applied state: a snapshot replaces the view only at
  its SnapshotEnd, once its entry count and digest check out; a delta is
  applied whole;
- it keeps the last-known-good state while no gateway answers, in memory
  and, with state_file, on disk across restarts;
- it tells the gateways what it holds, for the fleet view: every Subscribe
  carries the client's identity, and the view reports its cursor and digest
  through the gateway of its stream (client/report.go).

The view's state and every decision that does not depend on threads live in
_core.Core, shared with confgate.aio; so do the constructor and the reads of
the view (_base.SubscriptionBase).
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from typing import Any, List, Optional, Tuple

import grpc

from ._base import Reconnects, SubscriptionBase
from ._channel import open_channel
from ._core import DEFAULT_BACKOFF_MAX, DEFAULT_BACKOFF_MIN, ReportClock, StreamEnded, SubscriptionClosed, details
from ._replica import ProtocolViolation, Session
from ._stub import Stub, stub
from ._types import Entry, Event

log = logging.getLogger("confgate")

__all__ = ["DEFAULT_BACKOFF_MAX", "DEFAULT_BACKOFF_MIN", "StreamEnded", "Subscription", "SubscriptionClosed"]


class Subscription(SubscriptionBase):
    """A live view of the entries whose keys start with one of prefixes.

    Starts at once in a background thread; call wait_synced() to wait for the
    first snapshot (or wait_loaded() to also accept the state file's
    content). All methods are thread-safe; reads never block on the network
    and see the last applied state. view() returns that state as an
    immutable Mapping[str, Entry]; get(key), sub[key], key in sub and
    len(sub) read the current state directly.

    For asyncio, confgate.aio.Subscription has the same semantics.

    Args:
        addrs: gateway addresses ("host:port" or any gRPC target). Gateways
            are interchangeable: the client starts at a random one (unless
            shuffle=False) and moves to the next after every lost stream.
        prefixes: the selector. Empty, or "" among them, selects every key.
            Validated and normalized by the gateways' rules.
        on_change: called with each Event, in order, from the subscription's
            thread, after the view was updated. While it runs no further
            messages are applied, so it should return quickly. It must not
            call close().
        credentials: grpc.ChannelCredentials; None means plaintext (loopback
            and trusted networks).
        backoff_min, backoff_max: seconds; the wait before reconnecting is a
            uniform draw in [0, min(backoff_max, backoff_min * 2**n)] ("full
            jitter"). The exponent resets once a stream delivered messages and
            stayed up for backoff_max.
        max_receive_message_length: bytes; default 16 MiB like the Go client.
            Gateways chunk snapshots well under gRPC's 4 MiB default, so
            passing None (gRPC's default) works too.
        channel_options: extra grpc channel options.
        token: a bearer token sent on every call as "authorization: Bearer
            <token>" metadata, for gateways run with --auth-tokens or
            --auth-jwks.
        token_file: a file holding the token instead, re-read when it
            changes (checked at most once a second), so rotated Kubernetes
            or SPIFFE tokens are used without a restart: a stream keeps the
            token it was opened with, reconnects send the new one. Missing
            or invalid at start raises; later the last good token stays in
            use. Not together with token.
        insecure_token: send the token over plaintext to gateways that are
            not on this host. By default a token needs credentials (TLS),
            except to loopback addresses; ValueError otherwise.
        client_id: identifies this process in the fleet view (confgate
            fleet, GetFleet), sent with every Subscribe and every report. Up
            to 128 printable ASCII characters without spaces. Default: one
            generated per Subscription (16 random bytes, hex), kept across
            reconnects (see the client_id property).
        service: the service this process belongs to, e.g. "payments"; up
            to 128 bytes of UTF-8.
        labels: free labels (version, zone, host): at most 16, keys not
            empty, keys and values up to 128 bytes of UTF-8. Copied.
        report_interval: seconds between two reports of the view's cursor
            and digest (the Report call) to the gateway of its stream. The
            view also reports at once after a snapshot or delta, a
            reconnect, reject() or accept(), but at most every
            report_interval/5. One report at a time; a gateway that answers
            UNIMPLEMENTED (no fleet view) gets no more reports until the next
            reconnect. None or 0: 5 s; negative: no reports (Subscribe still
            carries the identity).
    """

    def _setup(self) -> None:
        self._core.load_state_file()
        self._closing = threading.Event()
        self._call: Optional[Any] = None  # the current stream's call; guarded by _core.lock
        # A report is asked for (kick); guarded by _report_cond. Kept across
        # streams, like the Go client's kick channel.
        self._report_cond = threading.Condition(threading.Lock())
        self._kicked = False
        if self._core.writer is not None:
            self._core.writer.start()
        self._thread = threading.Thread(target=self._run, name="confgate-subscription", daemon=True)
        self._thread.start()

    # Reading the view (the rest is SubscriptionBase's).

    def items(self, prefix: str = "") -> List[Entry]:
        """Deprecated: view().entries(prefix). The entries whose keys start
        with prefix, in key order, from one consistent version; for (key,
        entry) pairs as a dict gives them, view().items()."""
        warnings.warn("Subscription.items() is deprecated: use view().entries(prefix) for entries in key "
                      "order, or view().items() for (key, entry) pairs", DeprecationWarning, stacklevel=2)
        return self._core.view().entries(prefix)

    # Lifecycle.

    def wait_synced(self, timeout: Optional[float] = None) -> None:
        """Blocks until a gateway vouched for the view: the first snapshot
        was applied or, for a view loaded from the state file, the resumed
        stream's first delta, progress or snapshot. Raises TimeoutError
        after timeout seconds, the permanent error that stopped the
        subscription (a grpc.RpcError, INVALID_ARGUMENT for a refused
        selector), or SubscriptionClosed."""
        core = self._core
        deadline = None if timeout is None else time.monotonic() + timeout
        with core.cond:
            while not core.synced:
                if core.done:
                    raise core.stop_error or SubscriptionClosed("subscription closed")
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"no snapshot within {timeout}s")
                core.cond.wait(left)

    def wait_loaded(self, timeout: Optional[float] = None) -> None:
        """wait_synced, except that it returns at once when the view was
        loaded from the state file: it waits until the view has a state to
        serve, fresh or last-known-good. A service that should start even
        while every gateway is down waits with wait_loaded() and watches
        status().stale."""
        if self._core.loaded:
            return
        self.wait_synced(timeout)

    def close(self, timeout: Optional[float] = 10.0) -> None:
        """Stops the subscription and waits for its thread (and a running
        on_change call, and with a state file its last write). The view
        stays readable with its last state. Idempotent."""
        self._core.closing()
        self._closing.set()
        with self._core.lock:
            call = self._call
        if call is not None:
            call.cancel()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # The subscription thread.

    def _run(self) -> None:
        core = self._core
        try:
            loaded = core.loaded_event()
            if loaded is not None:
                self._deliver([loaded])
            r = Reconnects(core)
            while True:
                addr, resumed = r.begin()
                delivered, err = self._stream(addr, resumed)
                core.disconnected()
                if self._closing.is_set():
                    return
                wait = r.ended(delivered, err)
                if wait is None or self._closing.wait(wait):
                    return
        except BaseException as e:  # a bug: keep the view, say why it stopped
            core.failed(e)
        finally:
            # Close returns after the last write of the state file.
            if core.writer is not None:
                core.writer.stop()
            core.finish()

    def _stream(self, addr: str, resumed: bool) -> Tuple[bool, BaseException]:
        """Runs one Subscribe stream until it fails; returns whether a message
        was applied, and the error that ended it."""
        core = self._core
        delivered = False
        req = core.subscribe_request(resumed)
        try:
            channel = open_channel(addr, self._s.credentials, self._s.options, self._s.token)
        except Exception as e:  # a bad target
            return False, e
        reporter: Optional[_Reporter] = None
        try:
            st = stub(channel)
            call = st.Subscribe(req)
            with core.lock:
                if self._closing.is_set():
                    call.cancel()
                self._call = call
            if self._s.report_interval > 0:
                # Reports go over this stream's channel, so the gateway that
                # serves the client is the one that hears from it. The
                # reporter stops before the channel closes.
                reporter = _Reporter(self, st, addr)
            sess = Session(resumed=resumed)
            try:
                for m in call:
                    first = not delivered
                    if first:
                        delivered = True
                        core.first_message(addr, resumed)
                    res = core.apply(sess, m)
                    if core.wants_report(res, first):
                        self._kick_report()
                    self._deliver(res.events)
                    if self._closing.is_set():
                        return delivered, SubscriptionClosed("subscription closed")
            except grpc.RpcError as e:
                return delivered, e
            except ProtocolViolation as e:
                call.cancel()
                return delivered, e
            return delivered, StreamEnded(f"gateway {addr} closed the stream")
        finally:
            if reporter is not None:
                reporter.stop()
            with core.lock:
                self._call = None
            channel.close()

    def _kick_report(self) -> None:
        if self._s.report_interval <= 0:
            return
        with self._report_cond:
            self._kicked = True
            self._report_cond.notify_all()

    def _deliver(self, events: List[Event]) -> None:
        on_change = self._s.on_change
        if on_change is None:
            return
        for ev in events:
            if self._closing.is_set():
                return
            try:
                on_change(ev)
            except Exception:
                log.exception("on_change callback raised; continuing")


class _Reporter:
    """Sends a Subscription's reports through one stream's stub until the
    stream ends or the gateway answers UNIMPLEMENTED, one at a time, as
    ReportClock says. Nothing is reported before the view has a cursor. A
    port of View.reporter in client/report.go."""

    def __init__(self, sub: Subscription, st: Stub, addr: str) -> None:
        self._sub = sub
        self._stub = st
        self._addr = addr
        self._stopped = False  # guarded by sub._report_cond
        self._future: Optional[Any] = None  # the report in flight (a grpc.Future)
        self._thread = threading.Thread(target=self._run, name="confgate-reporter", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stops the reporter, cancelling a report in flight, and waits for it."""
        cond = self._sub._report_cond
        with cond:
            self._stopped = True
            fut = self._future
            cond.notify_all()
        if fut is not None:
            fut.cancel()
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def _halted(self) -> bool:
        """stop() was called; the caller holds the condition's lock. (A
        method, so that a type checker does not take the flag for a
        constant between two checks: stop() sets it from another thread.)"""
        return self._stopped

    def _run(self) -> None:
        sub = self._sub
        cond = sub._report_cond
        clock = ReportClock(sub._s.report_interval, time.monotonic())
        try:
            while True:
                with cond:
                    while True:
                        if self._stopped:
                            return
                        if sub._kicked:
                            sub._kicked = False
                            clock.ask()
                        wait = clock.wait(time.monotonic())
                        if wait <= 0:
                            break
                        cond.wait(wait)
                req = sub._core.report_request()
                if req is None:
                    clock.skipped(time.monotonic())
                    continue
                clock.started(time.monotonic())
                with cond:
                    if self._halted():
                        return
                    fut = self._future = self._stub.Report.future(req, timeout=clock.timeout)
                try:
                    fut.result()
                except grpc.FutureCancelledError:
                    return
                except grpc.RpcError as e:
                    with cond:
                        if self._halted():
                            return
                    if e.code() == grpc.StatusCode.UNIMPLEMENTED:
                        log.debug("gateway %s does not take reports; not reporting until the next reconnect: %s",
                                  self._addr, details(e))
                        return
                    log.debug("report to %s failed; retrying at the next tick (in %ss): %s",
                              self._addr, clock.interval, details(e))
                finally:
                    with cond:
                        self._future = None
        except Exception:  # a bug: reporting stops, the subscription carries on
            log.exception("reporter failed; not reporting until the next reconnect")
