"""Key and selector rules, the same as the gateways' (internal/keyspace in
the Go module): validate keys and normalize prefixes so a bad key or
selector fails at once, locally, with a clear message. The gateway remains
the authority; internal/keyspace/testdata/rules.json is the shared reference
the tests check this copy against."""

from __future__ import annotations

import bisect
import unicodedata
from typing import Iterable, List, Tuple

MAX_KEY_LEN = 1024
MAX_PREFIXES = 64

# Code points a key must not contain: control characters (Cc), line and
# paragraph separators, and invisible or formatting characters (Cf, which
# holds the bidirectional and join controls, variation selectors and the
# other default-ignorable code points). Inclusive ranges, copied from
# internal/keyspace/testdata/rules.json (Go's Unicode tables); the tests
# fail when they differ.
REJECTED_RANGES: Tuple[Tuple[int, int], ...] = (
    (0x0000, 0x001F),
    (0x007F, 0x009F),
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x2028, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)
_STARTS = [lo for lo, _ in REJECTED_RANGES]

_BIDI_CONTROLS = {0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)}
_VARIATION_SELECTORS = {*range(0x180B, 0x180E), 0x180F, *range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0)}


def hidden(cp: int) -> bool:
    """Whether code point cp may not appear in keys (see REJECTED_RANGES)."""
    i = bisect.bisect_right(_STARTS, cp) - 1
    return i >= 0 and cp <= REJECTED_RANGES[i][1]


def _is_control(cp: int) -> bool:
    return cp <= 0x1F or 0x7F <= cp <= 0x9F or cp in (0x2028, 0x2029)


def _quote(s: str) -> str:
    """s in double quotes with hidden and unprintable characters escaped."""
    out = []
    for ch in s:
        cp = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif hidden(cp) or not ch.isprintable() or 0xD800 <= cp <= 0xDFFF:
            out.append(f"\\u{cp:04x}" if cp <= 0xFFFF else f"\\U{cp:08x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _clip(s: str) -> str:
    return _quote(s[:64]) + ("..." if len(s) > 64 else "")


def _validate_text(what: str, s: str) -> None:
    b = s.encode("utf-8", errors="surrogatepass")
    if len(b) > MAX_KEY_LEN:
        raise ValueError(f"{what} {_clip(s)} is {len(b)} bytes, longer than the limit {MAX_KEY_LEN}: shorten it")
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in s):
        raise ValueError(f"{what} {_clip(s)} is not valid UTF-8: keys are UTF-8 text")
    at = 0
    for ch in s:
        cp = ord(ch)
        if hidden(cp):
            if _is_control(cp):
                raise ValueError(f"{what} {_clip(s)} has control character U+{cp:04X} at byte {at}: "
                                 "remove it (keys are one line of visible text)")
            note = ""
            if cp in _BIDI_CONTROLS:
                note = " (a bidirectional control: text can display in another order than it is stored)"
            elif cp in _VARIATION_SELECTORS:
                note = " (a variation selector)"
            raise ValueError(f"{what} {_clip(s)} has invisible or formatting character U+{cp:04X}{note} "
                             f"at byte {at}: remove it (keys must look like what they are)")
        at += len(ch.encode("utf-8"))
    if not unicodedata.is_normalized("NFC", s):
        raise ValueError(f"{what} {_clip(s)} is not in Unicode normalization form C: normalize to NFC "
                         f"({_clip(unicodedata.normalize('NFC', s))}), so that keys that look the same are the same")


def _dot_segment(what: str, s: str, seg: str) -> ValueError:
    return ValueError(f"{what} {_clip(s)} has a '.' or '..' segment ({seg!r}): keys are names, not relative "
                      "paths; remove the segment or rename it")


def validate_key(key: str) -> None:
    """Raises ValueError saying what to fix when key is not a valid key: a
    non-empty UTF-8 path of at most MAX_KEY_LEN bytes in NFC, without
    control, invisible or formatting characters, leading or trailing '/',
    empty segments, or '.' and '..' segments."""
    if key == "":
        raise ValueError("key is empty: give a path such as payments/db/timeout")
    _validate_text("key", key)
    if key.startswith("/"):
        raise ValueError(f"key {_clip(key)} starts with '/': write paths without a leading slash, like payments/db/timeout")
    if key.endswith("/"):
        raise ValueError(f"key {_clip(key)} ends with '/': a key names an entry, not a folder; remove the trailing slash")
    if "//" in key:
        raise ValueError(f"key {_clip(key)} has an empty path segment ('//'): use a single '/' between segments")
    for seg in key.split("/"):
        if seg in (".", ".."):
            raise _dot_segment("key", key, seg)


def validate_prefix(p: str) -> None:
    """Raises ValueError saying what to fix when p is not a valid selector
    prefix: a leading part of a valid key ("" selects everything). It may
    end with '/' or in the middle of a segment ("a/." leads to "a/.x"), and
    must be NFC on its own."""
    if p == "":
        return
    _validate_text("selector prefix", p)
    if p.startswith("/"):
        raise ValueError(f"selector prefix {_clip(p)} starts with '/': keys have no leading slash; remove it")
    if "//" in p:
        raise ValueError(f"selector prefix {_clip(p)} has an empty path segment ('//'): use a single '/' between segments")
    for seg in p.split("/")[:-1]:  # the last segment may still grow
        if seg in (".", ".."):
            raise _dot_segment("selector prefix", p, seg)


def normalize_selector(prefixes: Iterable[str]) -> List[str]:
    """Validates prefixes and returns them sorted, without duplicates and
    without prefixes another one covers. [] selects every key."""
    ps = list(prefixes)
    if isinstance(prefixes, str):
        raise TypeError("prefixes must be a list of strings, not one string")
    if len(ps) > MAX_PREFIXES:
        raise ValueError(f"selector has {len(ps)} prefixes, more than the limit {MAX_PREFIXES}")
    for p in ps:  # all of them, also after a "": validity does not depend on order
        validate_prefix(p)
    if "" in ps:
        return []
    out: List[str] = []
    # Compare as UTF-8 bytes, the gateways' (Go's) string order.
    for p in sorted(ps, key=lambda s: s.encode("utf-8")):
        if out and p.startswith(out[-1]):
            continue
        out.append(p)
    return out
