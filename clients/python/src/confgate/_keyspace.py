"""Selector rules, the same as the gateways' (internal/keyspace in the Go
module): validate and normalize prefixes so a bad selector fails at once,
locally, with a clear message."""

from __future__ import annotations

import unicodedata
from typing import Iterable, List

MAX_KEY_LEN = 1024
MAX_PREFIXES = 64


def _validate_text(s: str) -> None:
    b = s.encode("utf-8", errors="strict")
    if len(b) > MAX_KEY_LEN:
        raise ValueError(f"is {len(b)} bytes, longer than the limit {MAX_KEY_LEN}")
    for i, ch in enumerate(s):
        if unicodedata.category(ch) == "Cc":
            raise ValueError(f"has control character U+{ord(ch):04X} at character {i}")


def validate_prefix(p: str) -> None:
    if p == "":
        return
    try:
        _validate_text(p)
    except (ValueError, UnicodeEncodeError) as e:
        raise ValueError(f"selector prefix {p[:64]!r}: {e}") from None
    if p.startswith("/"):
        raise ValueError(f"selector prefix {p[:64]!r} starts with '/': keys have no leading slash")
    if "//" in p:
        raise ValueError(f"selector prefix {p[:64]!r} has an empty path segment ('//')")


def normalize_selector(prefixes: Iterable[str]) -> List[str]:
    """Validates prefixes and returns them sorted, without duplicates and
    without prefixes another one covers. [] selects every key."""
    ps = list(prefixes)
    if isinstance(prefixes, str):
        raise TypeError("prefixes must be a list of strings, not one string")
    if len(ps) > MAX_PREFIXES:
        raise ValueError(f"selector has {len(ps)} prefixes, more than the limit {MAX_PREFIXES}")
    for p in ps:
        validate_prefix(p)
        if p == "":
            return []
    out: List[str] = []
    # Compare as UTF-8 bytes, the gateways' (Go's) string order.
    for p in sorted(ps, key=lambda s: s.encode("utf-8")):
        if out and p.startswith(out[-1]):
            continue
        out.append(p)
    return out
