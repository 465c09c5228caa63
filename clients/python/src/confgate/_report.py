"""Client identity and reports for the fleet view: a port of client/report.go
(the Go client). Validation of the ClientInfo a Subscription sends, and the
rejections an application records with Subscription.reject."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from ._types import Entry
from .v1 import config_pb2 as pb

# Report every this many seconds by default (Go: DefaultReportInterval).
DEFAULT_REPORT_INTERVAL = 5.0

# Bounds of client_id, service and labels (those of ClientInfo in the
# proto), and of rejections (Go: client/config.go).
MAX_CLIENT_ID_BYTES = 128
MAX_SERVICE_BYTES = 128
MAX_LABELS = 16
MAX_LABEL_BYTES = 128  # a label's key, and its value
MAX_REJECTIONS = 100
MAX_REJECTION_REASON = 1024


def _utf8(what: str, s: str) -> bytes:
    if not isinstance(s, str):
        raise TypeError(f"{what} must be a str, not {type(s).__name__}")
    try:
        return s.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} {s!r} is not valid UTF-8") from None


def client_identity(client_id: Optional[str], service: str,
                    labels: Optional[Mapping[str, str]]) -> Tuple[str, str, Dict[str, str]]:
    """Validates the identity a Subscription sends, generating the client ID
    (16 random bytes, hex) when none is given. Raises ValueError."""
    cid = client_id or os.urandom(16).hex()
    if not isinstance(cid, str):
        raise TypeError(f"client_id must be a str, not {type(cid).__name__}")
    if len(cid.encode("utf-8", "surrogatepass")) > MAX_CLIENT_ID_BYTES:
        raise ValueError(f"client_id is {len(cid.encode('utf-8', 'surrogatepass'))} bytes, "
                         f"more than {MAX_CLIENT_ID_BYTES}")
    for i, c in enumerate(cid):
        if not ("!" <= c <= "~"):
            raise ValueError(f"client_id has {c!r} at {i}: use printable ASCII without spaces")
    service = service or ""
    sb = _utf8("service", service)
    if len(sb) > MAX_SERVICE_BYTES:
        raise ValueError(f"service is {len(sb)} bytes, more than {MAX_SERVICE_BYTES}")
    out: Dict[str, str] = {}
    ls = dict(labels or {})
    if len(ls) > MAX_LABELS:
        raise ValueError(f"labels has {len(ls)} labels, more than {MAX_LABELS}")
    for k, v in ls.items():
        if k == "":
            raise ValueError("labels has an empty key")
        kb = _utf8("labels key", k)
        if len(kb) > MAX_LABEL_BYTES:
            raise ValueError(f"labels key {k!r} is {len(kb)} bytes, more than {MAX_LABEL_BYTES}")
        vb = _utf8(f"labels[{k!r}]", v)
        if len(vb) > MAX_LABEL_BYTES:
            raise ValueError(f"labels[{k!r}] is {len(vb)} bytes, more than {MAX_LABEL_BYTES}")
        out[k] = v
    return cid, service, out


def report_interval(seconds: Optional[float]) -> float:
    """The report interval: None or 0 is the default, negative turns
    reporting off (returned as is)."""
    if seconds is None or seconds == 0:
        return DEFAULT_REPORT_INTERVAL
    return float(seconds)


def clean_reason(reason: str) -> str:
    """Invalid UTF-8 (lone surrogates) replaced by U+FFFD, then cut to
    MAX_REJECTION_REASON bytes at a character boundary."""
    b = "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in str(reason))
    raw = b.encode("utf-8")
    if len(raw) <= MAX_REJECTION_REASON:
        return b
    return raw[:MAX_REJECTION_REASON].decode("utf-8", "ignore")


def valid_key(key: str) -> bool:
    if not isinstance(key, str) or key == "":
        return False
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def selects(prefixes: Sequence[str], key: str) -> bool:
    return not prefixes or any(key.startswith(p) for p in prefixes)


@dataclass
class Rejection:
    """A value the application refused (Subscription.reject): the key's
    version when it was rejected, None when the view did not hold it."""

    version: Optional[Tuple[int, int]]
    reason: str
    seq: int  # order of the reject calls, to drop the oldest


class Rejections:
    """The rejections of a view, latest per key, at most MAX_REJECTIONS.
    Not thread-safe: the caller holds the view's lock."""

    def __init__(self) -> None:
        self._by_key: Dict[str, Rejection] = {}
        self._seq = 0

    def __len__(self) -> int:
        return len(self._by_key)

    def reject(self, key: str, current: Optional[Entry], reason: str) -> None:
        self._seq += 1
        v = None if current is None else (current.partition, current.offset)
        self._by_key[key] = Rejection(v, reason, self._seq)
        if len(self._by_key) > MAX_REJECTIONS:
            oldest = min(self._by_key, key=lambda k: self._by_key[k].seq)
            del self._by_key[oldest]

    def accept(self, key: str) -> bool:
        return self._by_key.pop(key, None) is not None

    def current(self, entries: Mapping[str, Entry]) -> List["pb.Rejection"]:
        """The rejections still standing against entries, sorted by key
        (UTF-8 bytes); those of keys that changed since are dropped."""
        out = []
        for k in list(self._by_key):
            r = self._by_key[k]
            e = entries.get(k)
            v = None if e is None else (e.partition, e.offset)
            if v != r.version:
                del self._by_key[k]  # the key changed: the rejection is over
                continue
            rj = pb.Rejection(key=k, reason=r.reason)
            if v is not None:
                rj.version.partition, rj.version.offset = v
            out.append(rj)
        out.sort(key=lambda r: r.key.encode("utf-8"))
        return out
