"""Channel construction shared by Subscription and Client."""

from __future__ import annotations

import collections
import ipaddress
import logging
import os
import threading
import time
from typing import Any, Callable, List, Optional, Sequence, Tuple

import grpc

# The largest message the client accepts, as the Go client: gateways keep
# snapshot chunks and deltas near 1 MiB, so this only has to fit the largest
# single entry plus framing. gRPC's own default is 4 MiB.
DEFAULT_MAX_RECEIVE = 16 << 20


# Keepalive pings, as the Go client: a connection silent for 20 s is pinged,
# and closed when the ping is not answered within 10 s, so a gateway that
# vanished without closing the connection (host lost, network partition) is
# left for another instead of waited on until TCP gives up. Gateways refuse
# pings more often than every 5 s.
DEFAULT_KEEPALIVE = (
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
)


def build_options(max_receive: Optional[int], extra: Sequence[Tuple[str, Any]]) -> List[Tuple[str, Any]]:
    """The channel options: defaults, then extra, which overrides them."""
    given = {k for k, _ in extra}
    opts: List[Tuple[str, Any]] = [kv for kv in DEFAULT_KEEPALIVE if kv[0] not in given]
    if max_receive is not None and "grpc.max_receive_message_length" not in given:
        opts.append(("grpc.max_receive_message_length", max_receive))
    opts.extend(extra)
    return opts


def open_channel(addr: str, credentials: Optional[grpc.ChannelCredentials],
                 options: Sequence[Tuple[str, Any]], token: Optional["TokenSource"] = None) -> grpc.Channel:
    if credentials is None:
        ch = grpc.insecure_channel(addr, options=list(options))
    else:
        ch = grpc.secure_channel(addr, credentials, options=list(options))
    return with_token(ch, token)


def check_addrs(addrs: Sequence[str]) -> List[str]:
    if isinstance(addrs, str):
        raise TypeError("addrs must be a list of addresses, not one string")
    out = list(addrs)
    if not out:
        raise ValueError("addrs is empty: name at least one gateway address")
    for i, a in enumerate(out):
        if not a:
            raise ValueError(f"addrs[{i}] is empty")
    return out


# Bearer tokens (token=, token_file=). A token travels as "authorization:
# Bearer <token>" metadata on every call, added by a client interceptor on
# the channel (plaintext channels cannot carry grpc call credentials, and
# loopback gateways are often plaintext). By default a token is only sent
# over a secure channel (credentials given), or to loopback addresses;
# insecure_token=True lifts that, for networks trusted as much as the token.

TOKEN_FILE_CHECK = 1.0  # seconds between two checks of a token file
_MAX_TOKEN_FILE = 64 << 10

_log = logging.getLogger("confgate")


def check_token(tok: str) -> None:
    """Raises ValueError saying what makes tok unfit for an authorization
    header, without quoting it: one word of visible ASCII."""
    if not tok:
        raise ValueError("the token is empty")
    if tok.lower().startswith("bearer "):
        raise ValueError('the token starts with "Bearer ": give the token alone, the prefix is added')
    for i, c in enumerate(tok):
        if not ("!" <= c <= "~"):
            raise ValueError(f"the token has a space, control or non-ASCII character at offset {i}: "
                             "a bearer token is one word of visible ASCII")


class TokenSource:
    """A fixed token, or one kept in a file and re-read when the file
    changes (its identity, size or modification time; checked at most once
    per TOKEN_FILE_CHECK seconds). A file that becomes unreadable or invalid
    leaves the last good token in use (logged): a rotation in progress is
    the likely cause. Thread-safe."""

    def __init__(self, token: Optional[str] = None, token_file: Optional[str] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if token and token_file:
            raise ValueError("token and token_file exclude each other: give one")
        if not token and not token_file:
            raise ValueError("no token and no token_file given")
        self._lock = threading.Lock()
        self._clock = clock
        self._file = token_file
        self._stamp: Optional[Tuple[int, int, int, int]] = None
        self._checked = 0.0
        self._error: Optional[str] = None
        if token:
            check_token(token)
            self._token = token
        else:
            self._token = ""
            self._token, self._stamp = self._read()  # raises: no good token yet
            self._checked = clock()

    def _read(self) -> Tuple[str, Tuple[int, int, int, int]]:
        assert self._file is not None
        st = os.stat(self._file)
        stamp = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if stamp == self._stamp and self._token:
            return self._token, stamp
        if st.st_size > _MAX_TOKEN_FILE:
            raise ValueError(f"token file {self._file} is {st.st_size} bytes, more than a token file may hold")
        with open(self._file, "r", encoding="ascii", errors="replace") as f:
            tok = f.read(_MAX_TOKEN_FILE + 1).strip()
        try:
            check_token(tok)
        except ValueError as e:
            raise ValueError(f"token file {self._file}: {e}") from None
        return tok, stamp

    def token(self) -> str:
        if self._file is None:
            return self._token
        with self._lock:
            now = self._clock()
            if now - self._checked < TOKEN_FILE_CHECK:
                return self._token
            self._checked = now
            try:
                self._token, self._stamp = self._read()
                if self._error is not None:
                    _log.info("token file %s readable again, its token is in use", self._file)
                self._error = None
            except (OSError, ValueError) as e:
                if str(e) != self._error:
                    _log.warning("token file unusable, still sending the token read from it before: %s", e)
                self._error = str(e)
            return self._token


class _CallDetails(
    collections.namedtuple("_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")),
    grpc.ClientCallDetails,
):
    pass


class _TokenInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    def __init__(self, source: TokenSource) -> None:
        self._source = source

    def _details(self, d: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        md = [(k, v) for k, v in (d.metadata or ()) if k != "authorization"]
        md.append(("authorization", "Bearer " + self._source.token()))
        return _CallDetails(d.method, d.timeout, md, d.credentials,
                            getattr(d, "wait_for_ready", None), getattr(d, "compression", None))

    def intercept_unary_unary(self, continuation: Callable[[grpc.ClientCallDetails, Any], Any],
                              client_call_details: grpc.ClientCallDetails, request: Any) -> Any:
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(self, continuation: Callable[[grpc.ClientCallDetails, Any], Any],
                               client_call_details: grpc.ClientCallDetails, request: Any) -> Any:
        return continuation(self._details(client_call_details), request)


def loopback_target(target: str) -> bool:
    """Whether a gRPC target is on this host: 127.0.0.0/8, ::1, "localhost"
    or a Unix socket. Names are not resolved."""
    if target.startswith(("unix:", "unix-abstract:")):
        return True
    if ":///" in target:
        target = target.split(":///", 1)[1]
    host = target
    if target.startswith("["):
        host = target[1:].split("]", 1)[0]
    elif target.count(":") == 1:
        host = target.rsplit(":", 1)[0]
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def token_source(addrs: Sequence[str], credentials: Optional[grpc.ChannelCredentials],
                 token: Optional[str], token_file: Optional[str], insecure_token: bool) -> Optional[TokenSource]:
    """The token to send, or None; refuses plaintext to a gateway that is not
    on this host unless insecure_token."""
    if not token and not token_file:
        return None
    if credentials is None and not insecure_token:
        for a in addrs:
            if not loopback_target(a):
                raise ValueError(
                    f"refusing to send the token in plaintext to {a}: pass credentials "
                    "(grpc.ssl_channel_credentials(...)), or insecure_token=True on a network you trust")
    return TokenSource(token, token_file)


def with_token(channel: grpc.Channel, source: Optional[TokenSource]) -> grpc.Channel:
    if source is None:
        return channel
    return grpc.intercept_channel(channel, _TokenInterceptor(source))
