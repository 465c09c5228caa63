"""What the threaded front ends (confgate.Subscription, confgate.Client) and
the asyncio ones (confgate.aio) share above _core.Core: their constructors,
which validate the same arguments the same way, the subscription's reads of
the view, reject and accept, none of which waits, and the schedule of its
streams (Reconnects), so they are the same whether a thread or an event
loop drives the stream. A front end adds only how it drives the network
(_setup, _kick_report, its run loop's waits and its own calls).
"""

from __future__ import annotations

import abc
import time
from typing import Any, Callable, List, Mapping, Optional, Sequence, Tuple

import grpc

from ._channel import DEFAULT_MAX_RECEIVE, build_options, check_addrs, token_source
from ._core import DEFAULT_BACKOFF_MAX, DEFAULT_BACKOFF_MIN, Core, PathLike, settings
from ._report import DEFAULT_REPORT_INTERVAL
from ._types import Entry, Event, Status
from ._view import View


class SubscriptionBase(abc.ABC):
    """A subscription's settings, its Core, and the reads of its view. The
    arguments are confgate.Subscription's (documented there)."""

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
        state_file: Optional[PathLike] = None,
        state_file_interval: Optional[float] = None,
    ) -> None:
        self._s = settings(
            addrs, prefixes, on_change=on_change, credentials=credentials, backoff_min=backoff_min,
            backoff_max=backoff_max, max_receive_message_length=max_receive_message_length,
            channel_options=channel_options, shuffle=shuffle, token=token, token_file=token_file,
            insecure_token=insecure_token, client_id=client_id, service=service, labels=labels,
            report_interval=report_interval, state_file=state_file, state_file_interval=state_file_interval)
        self._core = Core(self._s)
        self._setup()

    @abc.abstractmethod
    def _setup(self) -> None:
        """The front end's own state, set up at the end of __init__ (the
        threaded subscription loads its state file and starts here)."""

    @abc.abstractmethod
    def _kick_report(self) -> None:
        """Asks the reporter of the current stream for a report soon
        (report_interval/5 after the last one at the latest)."""

    # Reading the view: never waits, safe from any thread.

    def view(self) -> View:
        """The view as it is now: an immutable Mapping[str, Entry] of one
        consistent version, with its cursor and digest. Cheap to call: the
        same View is returned until the subscription applies a change."""
        return self._core.view()

    def get(self, key: str) -> Optional[Entry]:
        """The entry for key, or None."""
        return self._core.get(key)

    def __getitem__(self, key: str) -> Entry:
        e = self._core.get(key)
        if e is None:
            raise KeyError(key)
        return e

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._core.get(key) is not None

    def __len__(self) -> int:
        return len(self._core)

    @property
    def cursor(self) -> str:
        """The last applied cursor in its text form (the one the CLI prints
        and accepts), or "" before the first snapshot. A view loaded from
        the state file starts at the file's cursor."""
        return self._core.cursor()

    @property
    def digest(self) -> bytes:
        """The state digest of the view's entries (16 bytes): the value a
        gateway computes for this selector at the view's cursor."""
        return self._core.digest()

    @property
    def prefixes(self) -> List[str]:
        """The normalized selector."""
        return list(self._s.prefixes)

    @property
    def client_id(self) -> str:
        """The client ID sent to the gateways: the one given, or the one
        generated for this Subscription."""
        return self._s.client_id

    def status(self) -> Status:
        return self._core.status()

    @property
    def running(self) -> bool:
        """False once the subscription stopped (close(), or a permanent error)."""
        with self._core.lock:
            return not self._core.done

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
        if self._core.reject(key, reason):
            self._kick_report()

    def accept(self, key: str) -> None:
        """Clears a rejection of key made with reject(). A key without a
        rejection is ignored."""
        if self._core.accept(key):
            self._kick_report()


class Reconnects:
    """The schedule of a subscription's streams, kept by its run loop (the
    thread's or the task's), which does the connecting and the waiting:

        r = Reconnects(core)
        while True:
            addr, resumed = r.begin()
            delivered, err = <run one stream to addr>
            core.disconnected()
            wait = r.ended(delivered, err)
            if wait is None:
                return  # stopped for good
            <sleep wait seconds, or return when closed>

    Attempt i goes to address i modulo their number. The backoff exponent
    counts the attempts since the last stream that applied a message and
    stayed up for backoff_max: a gateway that answers and then drops the
    stream at once still gets a growing backoff."""

    def __init__(self, core: Core) -> None:
        self._core = core
        self._i = 0  # attempt number: picks the address
        self._n = 0  # backoff exponent
        self._addr = ""
        self._resumed = False
        self._start = 0.0

    def begin(self) -> Tuple[str, bool]:
        """The next stream's address, and whether it resumes from the view's
        cursor."""
        self._addr, self._resumed = self._core.begin_attempt(self._i)
        self._start = time.monotonic()
        return self._addr, self._resumed

    def ended(self, delivered: bool, err: BaseException) -> Optional[float]:
        """The stream begun last ended with err, having applied a message or
        not: None when the subscription stops for good (the gateway refused
        the selector), else the seconds to wait before the next attempt."""
        if delivered and time.monotonic() - self._start >= self._core.s.backoff_max:
            self._n = 0
        if self._core.stream_ended(self._addr, self._resumed, err):
            return None
        wait = self._core.backoff(self._n)
        self._n += 1
        self._i += 1
        return wait


class ClientBase(abc.ABC):
    """A client's validated settings; the arguments are confgate.Client's
    (documented there). The front end opens its channels in _setup or on
    the first call."""

    def __init__(
        self,
        addrs: Sequence[str],
        *,
        credentials: Optional[grpc.ChannelCredentials] = None,
        timeout: float = 10.0,
        max_receive_message_length: Optional[int] = DEFAULT_MAX_RECEIVE,
        channel_options: Sequence[Tuple[str, Any]] = (),
        token: Optional[str] = None,
        token_file: Optional[str] = None,
        insecure_token: bool = False,
    ) -> None:
        self._addrs = check_addrs(addrs)
        self._timeout = timeout
        self._credentials = credentials
        self._options = build_options(max_receive_message_length, channel_options)
        self._token = token_source(self._addrs, credentials, token, token_file, insecure_token)
        self._setup()

    @abc.abstractmethod
    def _setup(self) -> None:
        """The front end's channels (or the state to open them later), set
        up at the end of __init__."""
