"""What the threaded Subscription and the asyncio one share: validated
settings, and the view's state with every decision that does not depend on
how the network is driven (applying messages, status, what to do after a
lost stream, backoff, reports, the state file). The two front ends only run
streams and timers, each in its own way; nothing here does network I/O or
blocks on anything but its own lock, which is never held while calling out.
"""

from __future__ import annotations

import logging
import os
import random
import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import grpc

from ._channel import TokenSource, build_options, check_addrs, token_source
from ._errors import ConfgateError
from ._keyspace import normalize_selector
from ._replica import ProtocolViolation, Replica, Result, Session
from ._report import Rejections, clean_reason, client_identity, selects, valid_key
from ._report import report_interval as _report_interval
from ._statefile import DEFAULT_STATE_FILE_INTERVAL, StateFileError, StateFileWriter, read_state_file, remove_state_temps
from ._types import LOADED, Entry, Event, Status
from ._view import View
from .v1 import config_pb2 as pb

log = logging.getLogger("confgate")

DEFAULT_BACKOFF_MIN = 0.1
DEFAULT_BACKOFF_MAX = 10.0

PathLike = Union[str, "os.PathLike[str]"]


class SubscriptionClosed(ConfgateError):
    """wait_synced was interrupted because the subscription was closed."""


class StreamEnded(ConfgateError):
    """The gateway ended the stream without an error."""


@dataclass(frozen=True)
class Settings:
    """A subscription's validated configuration."""

    addrs: List[str]
    prefixes: List[str]
    client_id: str
    service: str
    labels: Dict[str, str]
    report_interval: float
    token: Optional[TokenSource]
    credentials: Optional[grpc.ChannelCredentials]
    options: List[Tuple[str, Any]]
    backoff_min: float
    backoff_max: float
    on_change: Optional[Callable[[Event], None]]
    state_file: Optional[str]
    state_file_interval: float


def settings(
    addrs: Sequence[str],
    prefixes: Sequence[str],
    *,
    on_change: Optional[Callable[[Event], None]],
    credentials: Optional[grpc.ChannelCredentials],
    backoff_min: float,
    backoff_max: float,
    max_receive_message_length: Optional[int],
    channel_options: Sequence[Tuple[str, Any]],
    shuffle: bool,
    token: Optional[str],
    token_file: Optional[str],
    insecure_token: bool,
    client_id: Optional[str],
    service: str,
    labels: Optional[Mapping[str, str]],
    report_interval: Optional[float],
    state_file: Optional[PathLike],
    state_file_interval: Optional[float],
) -> Settings:
    """Validates a subscription's arguments (ValueError, TypeError)."""
    addr_list = check_addrs(addrs)
    cid, svc, lbls = client_identity(client_id, service, labels)
    ri = _report_interval(report_interval)
    tok = token_source(addr_list, credentials, token, token_file, insecure_token)
    sel = normalize_selector(prefixes)
    if backoff_min < 0 or backoff_max < 0:
        raise ValueError("backoff_min and backoff_max must not be negative")
    if backoff_min == 0:
        backoff_min = DEFAULT_BACKOFF_MIN
    if backoff_max == 0:
        backoff_max = max(DEFAULT_BACKOFF_MAX, backoff_min)
    if backoff_min > backoff_max:
        raise ValueError(f"backoff_min ({backoff_min}) is greater than backoff_max ({backoff_max})")
    path: Optional[str] = None
    if state_file is not None:
        path = os.fspath(state_file)
        if not path:
            raise ValueError("state_file is empty: give a path, or None for no state file")
    if state_file_interval is None or state_file_interval == 0:
        state_file_interval = DEFAULT_STATE_FILE_INTERVAL
    if state_file_interval < 0:
        raise ValueError("state_file_interval must not be negative")
    if shuffle:
        random.shuffle(addr_list)
    return Settings(addr_list, sel, cid, svc, lbls, ri, tok, credentials,
                    build_options(max_receive_message_length, channel_options), backoff_min, backoff_max,
                    on_change, path, float(state_file_interval))


def status_code(err: Optional[BaseException]) -> Optional[grpc.StatusCode]:
    if isinstance(err, grpc.RpcError) and callable(getattr(err, "code", None)):
        code: grpc.StatusCode = err.code()
        return code
    return None


def details(err: BaseException) -> str:
    code = status_code(err)
    if code is not None and isinstance(err, grpc.RpcError) and callable(getattr(err, "details", None)):
        return f"{code.name}: {err.details()}"
    return str(err)


class Core:
    """A subscription's view and status. Thread-safe: every method takes
    the lock for what it touches. One stream at a time calls apply()."""

    def __init__(self, s: Settings) -> None:
        self.s = s
        self.lock = threading.Lock()  # guards everything below
        self.cond = threading.Condition(self.lock)  # notified on synced and done
        self.replica = Replica()
        self.connected = False
        self.addr = ""
        self.gateway_stale = False
        self.lag = 0
        self.reconnects = 0
        self.resets = 0
        self.last_error: Optional[BaseException] = None
        self.stop_error: Optional[BaseException] = None
        self.synced = False  # a gateway vouched for the view
        self.done = False
        self.loaded = False  # the view was loaded from the state file
        self.file_error: Optional[BaseException] = None
        self.rejections = Rejections()
        self._view: Optional[View] = None  # the published view, until the next change
        self.writer: Optional[StateFileWriter] = None

    # The state file.

    def load_state_file(self) -> None:
        """Loads the state file, when there is one, and sets up its writer
        (not started). Blocking file I/O: runs before the stream loop."""
        path = self.s.state_file
        if path is None:
            return
        remove_state_temps(path)
        saved: Optional[Tuple[str, bytes]] = None
        try:
            r = read_state_file(path, self.s.prefixes)
        except FileNotFoundError:
            log.info("no state file yet at %s; starting empty", path)
        except (OSError, StateFileError) as e:
            err = StateFileError(f"state file {path} ignored: {e}")
            log.warning("ignoring the state file; starting empty: %s", err)
            with self.lock:
                self.file_error = err
        else:
            assert r.cursor is not None
            log.info("view loaded from the state file %s; stale until a gateway answers (%d entries, cursor %s)",
                     path, len(r.entries), r.cursor)
            saved = (str(r.cursor), r.digest.to_bytes())
            with self.lock:
                self.replica, self.loaded, self._view = r, True, None
        self.writer = StateFileWriter(path, self.s.prefixes, self._synced_view, self._file_written,
                                      self.s.state_file_interval, saved)

    def _synced_view(self) -> Optional[View]:
        v = self.view()
        return v if v.cursor else None

    def _file_written(self, err: Optional[BaseException]) -> None:
        with self.lock:
            self.file_error = err

    def loaded_event(self) -> Optional[Event]:
        """The "loaded" event a view loaded from the state file starts with."""
        with self.lock:
            if not self.loaded:
                return None
            return Event(LOADED, str(self.replica.cursor))

    # Reads.

    def view(self) -> View:
        with self.lock:
            v = self._view
            if v is None:
                r = self.replica
                v = self._view = View._adopt(dict(r.entries), r.cursor, r.digest.to_bytes())
            return v

    def get(self, key: str) -> Optional[Entry]:
        with self.lock:
            return self.replica.entries.get(key)

    def cursor(self) -> str:
        """The view's cursor (text form), without publishing a View."""
        with self.lock:
            c = self.replica.cursor
        return "" if c is None else str(c)

    def digest(self) -> bytes:
        with self.lock:
            return self.replica.digest.to_bytes()

    def __len__(self) -> int:
        with self.lock:
            return len(self.replica.entries)

    def status(self) -> Status:
        with self.lock:
            return Status(
                connected=self.connected,
                addr=self.addr,
                stale=not self.connected or not self.synced or self.gateway_stale,
                lag_records=self.lag,
                reconnects=self.reconnects,
                resets=self.resets,
                last_error=self.last_error,
                from_file=self.loaded and not self.synced,
                state_file_error=self.file_error,
            )

    # The stream loop.

    def begin_attempt(self, i: int) -> Tuple[str, bool]:
        """The address of attempt i, and whether it resumes from the
        view's cursor."""
        addr = self.s.addrs[i % len(self.s.addrs)]
        with self.lock:
            self.addr = addr
            if i > 0:
                self.reconnects += 1
            return addr, self.replica.synced and not self.replica.fresh

    def subscribe_request(self, resumed: bool) -> pb.SubscribeRequest:
        req = pb.SubscribeRequest(selector=pb.Selector(prefixes=self.s.prefixes), client=self.client_info())
        if resumed:
            with self.lock:
                assert self.replica.cursor is not None
                req.resume_cursor = self.replica.cursor.encode()
        return req

    def client_info(self) -> pb.ClientInfo:
        return pb.ClientInfo(client_id=self.s.client_id, service=self.s.service, labels=self.s.labels)

    def first_message(self, addr: str, resumed: bool) -> None:
        with self.lock:
            self.connected = True
        log.info("connected to gateway %s (resumed: %s)", addr, resumed)

    def apply(self, sess: Session, m: pb.SubscribeResponse) -> Result:
        """Applies one message (ProtocolViolation: nothing of it was) and
        updates the status."""
        with self.cond:
            res = self.replica.handle(sess, m)
            if res.progress is not None:
                self.lag = res.progress.lag_records
                self.gateway_stale = res.progress.stale
            if res.changed or res.moved:
                self._view = None
            if res.reset:
                self.resets += 1
                log.info("view replaced by a new snapshot at %s (%d entries)",
                         self.replica.cursor, len(self.replica.entries))
            if res.first:
                self.synced = True
                self.cond.notify_all()
        if (res.changed or res.moved) and self.writer is not None:
            self.writer.notify()
        return res

    @staticmethod
    def wants_report(res: Result, first: bool) -> bool:
        """Report at once to a new gateway, and after a snapshot or delta (a
        progress message moves the cursor only: the next tick tells)."""
        return first or res.changed or (res.moved and res.progress is None)

    def disconnected(self) -> None:
        with self.lock:
            self.connected = False
            self.gateway_stale = False

    def stream_ended(self, addr: str, resumed: bool, err: BaseException) -> bool:
        """Records why a stream ended and decides what follows: True when
        the subscription stops for good (the gateway refused the selector),
        False to back off and reconnect."""
        code = status_code(err)
        if isinstance(err, ProtocolViolation):
            with self.lock:
                self.replica.fresh = self.replica.fresh or err.fresh
            log.warning("dropping gateway stream from %s: %s (resubscribe fresh: %s)", addr, err, err.fresh)
        elif code == grpc.StatusCode.INVALID_ARGUMENT and resumed:
            # Either the cursor or the selector was refused. Retry without
            # the cursor: if the selector was the problem, the next answer
            # is permanent.
            with self.lock:
                self.replica.fresh = True
            log.warning("gateway %s refused the request; resubscribing without a cursor: %s", addr, details(err))
        elif code == grpc.StatusCode.INVALID_ARGUMENT:
            log.error("gateway %s refused the selector; subscription stopped: %s", addr, details(err))
            with self.lock:
                self.last_error = err
                if self.stop_error is None or isinstance(self.stop_error, SubscriptionClosed):
                    self.stop_error = err
            return True
        elif isinstance(err, StreamEnded):
            log.info("gateway %s closed the stream; reconnecting", addr)
        else:
            log.info("gateway %s stream failed; reconnecting: %s", addr, details(err))
        with self.lock:
            self.last_error = err
        return False

    def backoff(self, n: int) -> float:
        """The wait before reconnect attempt n (0-based): a uniform draw in
        [0, min(backoff_max, backoff_min * 2**n)] ("full jitter")."""
        bound = self.s.backoff_min * (2 ** min(n, 62))
        return random.uniform(0, min(bound, self.s.backoff_max))

    def closing(self) -> None:
        """close() was called: wait_synced raises SubscriptionClosed."""
        with self.lock:
            if self.stop_error is None:
                self.stop_error = SubscriptionClosed("subscription closed")

    def failed(self, e: BaseException) -> None:
        """The loop itself failed (a bug): keep the view, say why it stopped."""
        log.error("subscription loop failed", exc_info=e)
        with self.lock:
            self.last_error = e
            self.stop_error = e

    def finish(self) -> None:
        with self.cond:
            self.done = True
            self.connected = False
            self.cond.notify_all()

    def wait_error(self) -> Optional[BaseException]:
        """What wait_synced raises once the loop ended without a sync."""
        with self.lock:
            return self.stop_error or SubscriptionClosed("subscription closed")

    # The fleet view.

    def report_request(self) -> Optional[pb.ReportRequest]:
        """The report of the view as it is now, None before it has a
        cursor; drops the rejections of keys that changed."""
        with self.lock:
            c = self.replica.cursor
            if c is None:
                return None
            return pb.ReportRequest(
                client=self.client_info(),
                selector=pb.Selector(prefixes=self.s.prefixes),
                applied_cursor=c.encode(),
                digest=self.replica.digest.to_bytes(),
                rejections=self.rejections.current(self.replica.entries),
            )

    def reject(self, key: str, reason: str) -> bool:
        """Records a rejection; True when a report should follow."""
        if not valid_key(key) or not selects(self.s.prefixes, key):
            return False
        reason = clean_reason(reason)
        with self.lock:
            self.rejections.reject(key, self.replica.entries.get(key), reason)
        return True

    def accept(self, key: str) -> bool:
        with self.lock:
            return self.rejections.accept(key)


class ReportClock:
    """When the next report is due: at once when asked (ask()) but at least
    interval/5 after the previous one, and interval after the previous one
    otherwise. Not thread-safe: one reporter owns it. A port of the timing
    in View.reporter (client/report.go)."""

    def __init__(self, interval: float, now: float) -> None:
        self.interval = interval
        self.gap = interval / 5
        self.last: Optional[float] = None  # start of the last report
        self.next = now + interval
        self.asked = False

    def ask(self) -> None:
        self.asked = True

    def wait(self, now: float) -> float:
        """Seconds until a report is due; <= 0: now."""
        w = self.next - now
        if self.asked:
            w = min(w, (now if self.last is None else self.last + self.gap) - now)
        return w

    def skipped(self, now: float) -> None:
        """Nothing to report yet (no cursor): the snapshot will ask."""
        self.asked = False
        self.next = now + self.interval

    def started(self, now: float) -> None:
        self.asked = False
        self.last = now
        self.next = now + self.interval

    @property
    def timeout(self) -> float:
        """The deadline of one Report call."""
        return max(self.interval, 1.0)
