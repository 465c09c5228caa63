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
- it keeps the last-known-good state while no gateway answers;
- it tells the gateways what it holds, for the fleet view: every Subscribe
  carries the client's identity, and the view reports its cursor and digest
  through the gateway of its stream (client/report.go).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Any, Callable, Iterator, List, Mapping, Optional, Sequence, Tuple

import grpc

from ._channel import DEFAULT_MAX_RECEIVE, build_options, check_addrs, open_channel, token_source
from ._cursor import Cursor
from ._errors import ConfgateError
from ._keyspace import normalize_selector
from ._replica import ProtocolViolation, Replica, Result, Session
from ._report import DEFAULT_REPORT_INTERVAL, Rejections, clean_reason, client_identity, selects, valid_key
from ._report import report_interval as _report_interval
from ._types import Entry, Event, Status
from .v1 import config_pb2 as pb
from .v1 import config_pb2_grpc as pb_grpc

log = logging.getLogger("confgate")

DEFAULT_BACKOFF_MIN = 0.1
DEFAULT_BACKOFF_MAX = 10.0


class SubscriptionClosed(ConfgateError):
    """wait_synced was interrupted because the subscription was closed."""


class StreamEnded(ConfgateError):
    """The gateway ended the stream without an error."""


class Subscription:
    """A live view of the entries whose keys start with one of prefixes.

    Starts at once in a background thread; call wait_synced() to wait for the
    first snapshot. All methods are thread-safe; reads never block on the
    network and see the last applied state.

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

    def __init__(
        self,
        addrs: Sequence[str],
        prefixes: Sequence[str] = (),
        *,
        on_change: Optional[Callable[[Event], None]] = None,
        credentials: Optional[grpc.ChannelCredentials] = None,
        backoff_min: float = DEFAULT_BACKOFF_MIN,
        backoff_max: float = DEFAULT_BACKOFF_MAX,
        max_receive_message_length: Optional[int] = DEFAULT_MAX_RECEIVE,
        channel_options: Sequence[Tuple[str, Any]] = (),
        shuffle: bool = True,
        token: Optional[str] = None,
        token_file: Optional[str] = None,
        insecure_token: bool = False,
        client_id: Optional[str] = None,
        service: str = "",
        labels: Optional[Mapping[str, str]] = None,
        report_interval: Optional[float] = DEFAULT_REPORT_INTERVAL,
    ) -> None:
        self._addrs = check_addrs(addrs)
        self._client_id, self._service, self._labels = client_identity(client_id, service, labels)
        self._report_interval = _report_interval(report_interval)
        self._token = token_source(self._addrs, credentials, token, token_file, insecure_token)
        self._prefixes = normalize_selector(prefixes)
        if backoff_min < 0 or backoff_max < 0:
            raise ValueError("backoff_min and backoff_max must not be negative")
        if backoff_min == 0:
            backoff_min = DEFAULT_BACKOFF_MIN
        if backoff_max == 0:
            backoff_max = max(DEFAULT_BACKOFF_MAX, backoff_min)
        if backoff_min > backoff_max:
            raise ValueError(f"backoff_min ({backoff_min}) is greater than backoff_max ({backoff_max})")
        self._backoff_min, self._backoff_max = backoff_min, backoff_max
        self._on_change = on_change
        self._credentials = credentials
        self._options = build_options(max_receive_message_length, channel_options)
        if shuffle:
            random.shuffle(self._addrs)

        self._lock = threading.Lock()  # guards the replica and the status
        self._cond = threading.Condition(self._lock)
        self._replica = Replica()
        self._connected = False
        self._addr = ""
        self._gateway_stale = False
        self._lag = 0
        self._reconnects = 0
        self._resets = 0
        self._last_error: Optional[BaseException] = None
        self._stop_error: Optional[BaseException] = None
        self._synced = False
        self._done = False
        self._closing = threading.Event()
        self._call: Optional[grpc.Future] = None
        self._rejections = Rejections()  # guarded by _lock
        # A report is asked for (kick); guarded by _report_cond. Kept across
        # streams, like the Go client's kick channel.
        self._report_cond = threading.Condition(threading.Lock())
        self._kicked = False

        self._thread = threading.Thread(target=self._run, name="confgate-subscription", daemon=True)
        self._thread.start()

    # Reading the view.

    def get(self, key: str) -> Optional[Entry]:
        """The entry for key, or None."""
        with self._lock:
            return self._replica.entries.get(key)

    def __getitem__(self, key: str) -> Entry:
        e = self.get(key)
        if e is None:
            raise KeyError(key)
        return e

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    def __len__(self) -> int:
        with self._lock:
            return len(self._replica.entries)

    def items(self, prefix: str = "") -> List[Entry]:
        """The entries whose keys start with prefix, in key order (by UTF-8
        bytes, like the gateways), from one consistent version of the view."""
        with self._lock:
            es = [e for k, e in self._replica.entries.items() if k.startswith(prefix)]
        es.sort(key=lambda e: e.key.encode("utf-8"))
        return es

    @property
    def cursor(self) -> str:
        """The last applied cursor in its text form (the one the CLI prints
        and accepts), or "" before the first snapshot."""
        with self._lock:
            c = self._replica.cursor
        return "" if c is None else str(c)

    @property
    def digest(self) -> bytes:
        """The state digest of the view's entries (16 bytes): the value a
        gateway computes for this selector at the view's cursor."""
        with self._lock:
            return self._replica.digest.to_bytes()

    @property
    def prefixes(self) -> List[str]:
        """The normalized selector."""
        return list(self._prefixes)

    @property
    def client_id(self) -> str:
        """The client ID sent to the gateways: the one given, or the one
        generated for this Subscription."""
        return self._client_id

    def reject(self, key: str, reason: str) -> None:
        """Records that the application refuses the current value of key,
        like an xDS NACK: the version the view holds now, or the key's
        absence, with a reason for operators. It is sent with every report
        (one soon after the call) and shows in the fleet view until the key
        changes in the view (a newer version, a deletion, or a snapshot that
        replaced it) or accept(key) clears it. A second reject of a key
        replaces the first; the 100 most recently rejected keys are kept. A
        reason over 1 KiB is cut. A key outside the selector is ignored.
        The view still serves the rejected value."""
        if not valid_key(key) or not selects(self._prefixes, key):
            return
        reason = clean_reason(reason)
        with self._lock:
            self._rejections.reject(key, self._replica.entries.get(key), reason)
        self._kick_report()

    def accept(self, key: str) -> None:
        """Clears a rejection of key made with reject(). A key without a
        rejection is ignored."""
        with self._lock:
            ok = self._rejections.accept(key)
        if ok:
            self._kick_report()

    def status(self) -> Status:
        with self._lock:
            return Status(
                connected=self._connected,
                addr=self._addr,
                stale=not self._connected or not self._synced or self._gateway_stale,
                lag_records=self._lag,
                reconnects=self._reconnects,
                resets=self._resets,
                last_error=self._last_error,
            )

    # Lifecycle.

    def wait_synced(self, timeout: Optional[float] = None) -> None:
        """Blocks until the first snapshot was applied. Raises TimeoutError
        after timeout seconds, the permanent error that stopped the
        subscription (a grpc.RpcError, INVALID_ARGUMENT for a refused
        selector), or SubscriptionClosed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._synced:
                if self._done:
                    raise self._stop_error or SubscriptionClosed("subscription closed")
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"no snapshot within {timeout}s")
                self._cond.wait(left)

    @property
    def running(self) -> bool:
        """False once the subscription stopped (close(), or a permanent error)."""
        with self._lock:
            return not self._done

    def close(self, timeout: Optional[float] = 10.0) -> None:
        """Stops the subscription and waits for its thread (and a running
        on_change call). The view stays readable with its last state.
        Idempotent."""
        with self._lock:
            if self._stop_error is None:
                self._stop_error = SubscriptionClosed("subscription closed")
            self._closing.set()
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
        attempt = 0  # backoff exponent
        i = 0
        try:
            while True:
                addr = self._addrs[i % len(self._addrs)]
                with self._lock:
                    self._addr = addr
                    if i > 0:
                        self._reconnects += 1
                    resumed = self._replica.synced and not self._replica.fresh
                start = time.monotonic()
                delivered, err = self._stream(addr, resumed)
                with self._lock:
                    self._connected = False
                    self._gateway_stale = False
                if self._closing.is_set():
                    return
                if delivered and time.monotonic() - start >= self._backoff_max:
                    attempt = 0
                if isinstance(err, ProtocolViolation):
                    with self._lock:
                        self._replica.fresh = self._replica.fresh or err.fresh
                    log.warning("dropping gateway stream from %s: %s (resubscribe fresh: %s)", addr, err, err.fresh)
                elif _code(err) == grpc.StatusCode.INVALID_ARGUMENT and resumed:
                    # Either the cursor or the selector was refused. Retry
                    # without the cursor: if the selector was the problem,
                    # the next answer is permanent.
                    with self._lock:
                        self._replica.fresh = True
                    log.warning("gateway %s refused the request; resubscribing without a cursor: %s",
                                addr, _details(err))
                elif _code(err) == grpc.StatusCode.INVALID_ARGUMENT:
                    log.error("gateway %s refused the selector; subscription stopped: %s", addr, _details(err))
                    with self._lock:
                        self._last_error = err
                        if self._stop_error is None or isinstance(self._stop_error, SubscriptionClosed):
                            self._stop_error = err
                    return
                elif isinstance(err, StreamEnded):
                    log.info("gateway %s closed the stream; reconnecting", addr)
                else:
                    log.info("gateway %s stream failed; reconnecting: %s", addr, _details(err))
                with self._lock:
                    self._last_error = err
                wait = self._backoff(attempt)
                attempt += 1
                i += 1
                if self._closing.wait(wait):
                    return
        except BaseException as e:  # a bug: keep the view, say why it stopped
            log.exception("subscription thread failed")
            with self._lock:
                self._last_error = e
                self._stop_error = e
        finally:
            with self._cond:
                self._done = True
                self._connected = False
                self._cond.notify_all()

    def _backoff(self, n: int) -> float:
        bound = self._backoff_min * (2 ** min(n, 62))
        return random.uniform(0, min(bound, self._backoff_max))

    def _stream(self, addr: str, resumed: bool) -> Tuple[bool, BaseException]:
        """Runs one Subscribe stream until it fails; returns whether a message
        was applied, and the error that ended it."""
        delivered = False
        req = pb.SubscribeRequest(selector=pb.Selector(prefixes=self._prefixes), client=self._client_info())
        with self._lock:
            if resumed:
                assert self._replica.cursor is not None
                req.resume_cursor = self._replica.cursor.encode()
        try:
            channel = open_channel(addr, self._credentials, self._options, self._token)
        except Exception as e:  # a bad target
            return False, e
        reporter: Optional[_Reporter] = None
        try:
            stub = pb_grpc.ConfigServiceStub(channel)
            call = stub.Subscribe(req)
            with self._lock:
                if self._closing.is_set():
                    call.cancel()
                self._call = call
            if self._report_interval > 0:
                # Reports go over this stream's channel, so the gateway that
                # serves the client is the one that hears from it. The
                # reporter stops before the channel closes.
                reporter = _Reporter(self, stub, addr)
            sess = Session(resumed=resumed)
            try:
                for m in call:
                    first = not delivered
                    if first:
                        delivered = True
                        with self._lock:
                            self._connected = True
                        log.info("connected to gateway %s (resumed: %s)", addr, resumed)
                    with self._cond:
                        res = self._replica.handle(sess, m)
                        self._applied(res)
                    # Report at once to a new gateway, and after a snapshot
                    # or delta (a progress message moves the cursor only:
                    # the next tick tells).
                    if first or res.changed or (res.moved and res.progress is None):
                        self._kick_report()
                    self._deliver(res)
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
            with self._lock:
                self._call = None
            channel.close()

    def _client_info(self) -> "pb.ClientInfo":
        return pb.ClientInfo(client_id=self._client_id, service=self._service, labels=self._labels)

    def _kick_report(self) -> None:
        """Asks the reporter of the current stream for a report soon
        (report_interval/5 after the last one at the latest)."""
        if self._report_interval <= 0:
            return
        with self._report_cond:
            self._kicked = True
            self._report_cond.notify_all()

    def _report(self) -> Optional["pb.ReportRequest"]:
        """The report of the view as it is now, None before the first
        snapshot; drops the rejections of keys that changed."""
        with self._lock:
            c = self._replica.cursor
            if c is None:
                return None
            return pb.ReportRequest(
                client=self._client_info(),
                selector=pb.Selector(prefixes=self._prefixes),
                applied_cursor=c.encode(),
                digest=self._replica.digest.to_bytes(),
                rejections=self._rejections.current(self._replica.entries),
            )

    def _applied(self, res: Result) -> None:
        """Updates the status after a handled message. Holds the lock."""
        if res.progress is not None:
            self._lag = res.progress.lag_records
            self._gateway_stale = res.progress.stale
        if res.reset:
            self._resets += 1
            log.info("view replaced by a new snapshot at %s (%d entries)",
                     self._replica.cursor, len(self._replica.entries))
        if res.first:
            self._synced = True
            self._cond.notify_all()

    def _deliver(self, res: Result) -> None:
        if self._on_change is None:
            return
        for ev in res.events:
            if self._closing.is_set():
                return
            try:
                self._on_change(ev)
            except Exception:
                log.exception("on_change callback raised; continuing")


class _Reporter:
    """Sends a Subscription's reports through one stream's stub until the
    stream ends or the gateway answers UNIMPLEMENTED, one at a time: at once
    when asked (_kick_report) but at least report_interval/5 after the
    previous one, and report_interval after the previous one otherwise.
    Nothing is reported before the view has a cursor. A port of
    View.reporter in client/report.go."""

    def __init__(self, sub: "Subscription", stub: pb_grpc.ConfigServiceStub, addr: str) -> None:
        self._sub = sub
        self._stub = stub
        self._addr = addr
        self._stopped = False  # guarded by sub._report_cond
        self._future: Optional[grpc.Future] = None  # the report in flight
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

    def _run(self) -> None:
        sub = self._sub
        cond = sub._report_cond
        interval = sub._report_interval
        gap = interval / 5
        timeout = max(interval, 1.0)
        last: Optional[float] = None  # start of the last report
        nxt = time.monotonic() + interval
        asked = False
        try:
            while True:
                with cond:
                    while True:
                        if self._stopped:
                            return
                        if sub._kicked:
                            sub._kicked = False
                            asked = True
                        now = time.monotonic()
                        wait = nxt - now
                        if asked:
                            wait = min(wait, (now if last is None else last + gap) - now)
                        if wait <= 0:
                            break
                        cond.wait(wait)
                asked = False
                req = sub._report()
                if req is None:
                    # No cursor to report yet; the snapshot will ask.
                    nxt = time.monotonic() + interval
                    continue
                last = time.monotonic()
                nxt = last + interval
                with cond:
                    if self._stopped:
                        return
                    fut = self._future = self._stub.Report.future(req, timeout=timeout)
                try:
                    fut.result()
                except grpc.FutureCancelledError:
                    return
                except grpc.RpcError as e:
                    with cond:
                        if self._stopped:
                            return
                    if e.code() == grpc.StatusCode.UNIMPLEMENTED:
                        log.debug("gateway %s does not take reports; not reporting until the next reconnect: %s",
                                  self._addr, _details(e))
                        return
                    log.debug("report to %s failed; retrying at the next tick (in %ss): %s",
                              self._addr, interval, _details(e))
                finally:
                    with cond:
                        self._future = None
        except Exception:  # a bug: reporting stops, the subscription carries on
            log.exception("reporter failed; not reporting until the next reconnect")


def _code(err: BaseException) -> Optional[grpc.StatusCode]:
    if isinstance(err, grpc.RpcError) and hasattr(err, "code"):
        return err.code()
    return None


def _details(err: BaseException) -> str:
    if isinstance(err, grpc.RpcError) and hasattr(err, "details"):
        return f"{err.code().name}: {err.details()}"
    return str(err)
