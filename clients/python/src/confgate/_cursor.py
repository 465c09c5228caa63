"""Cursors: a gateway's applied position (Kafka topic ID plus the next offset
of every partition).

Cursors are opaque to applications, but a client must compare them to never
go backwards, so it decodes them. The wire form (internal/cursor in the Go
module) is: a format byte (1), the 16-byte topic ID, the partition count as
an unsigned varint, then one unsigned varint per partition. The text form is
URL-safe base64 without padding, as the CLI prints and accepts.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Tuple

_FORMAT_V1 = 1
_MAX_PARTITIONS = 1 << 16
_MAX_OFFSET = 1 << 62
# The text form's alphabet. Python's base64 decoders skip characters outside
# it and accept '+', '/' and padding; Go's RawURLEncoding (the CLI, the
# gateways) refuses all of them, so the text is checked first.
_NOT_TEXT = re.compile(r"[^A-Za-z0-9_-]")


def _append_uvarint(out: bytearray, n: int) -> None:
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def uvarint(n: int) -> bytes:
    """Encodes n as an unsigned varint (Go's binary.AppendUvarint)."""
    out = bytearray()
    _append_uvarint(out, n)
    return bytes(out)


def _read_uvarint(b: bytes, i: int) -> Tuple[int, int]:
    """Returns (value, next index); raises ValueError when truncated or too long."""
    n = 0
    shift = 0
    while True:
        if i >= len(b):
            raise ValueError("truncated varint")
        c = b[i]
        i += 1
        if shift == 63 and c > 1:
            raise ValueError("varint overflows 64 bits")
        n |= (c & 0x7F) << shift
        if c < 0x80:
            return n, i
        shift += 7
        if shift > 63:
            raise ValueError("varint overflows 64 bits")


@dataclass(frozen=True)
class Cursor:
    """An applied position. offsets[p] is the next offset to apply in
    partition p; a partition past the end of offsets is at offset 0."""

    topic: bytes
    offsets: Tuple[int, ...]

    def offset(self, partition: int) -> int:
        if partition < 0 or partition >= len(self.offsets):
            return 0
        return self.offsets[partition]

    def covers(self, other: "Cursor") -> bool:
        """True when self is at or past other in every partition. Cursors of
        different topics never cover each other."""
        if self.topic != other.topic:
            return False
        return all(self.offset(p) >= off for p, off in enumerate(other.offsets))

    def equals(self, other: "Cursor") -> bool:
        """True when both name the same position: same topic, same offsets,
        a partition missing from one being at 0 (unlike ==, which compares
        the offset lists as they are)."""
        return self.covers(other) and other.covers(self)

    def encode(self) -> bytes:
        out = bytearray([_FORMAT_V1])
        out += self.topic
        _append_uvarint(out, len(self.offsets))
        for o in self.offsets:
            _append_uvarint(out, o)
        return bytes(out)

    def __str__(self) -> str:
        return to_text(self.encode())

    @classmethod
    def decode(cls, b: bytes) -> "Cursor":
        """Parses the wire form; raises ValueError saying what is wrong."""
        if not b:
            raise ValueError("cursor is empty")
        if b[0] != _FORMAT_V1:
            raise ValueError(f"cursor has unknown format {b[0]} (want {_FORMAT_V1})")
        if len(b) < 17:
            raise ValueError("cursor is truncated: topic ID incomplete")
        topic = bytes(b[1:17])
        try:
            n, i = _read_uvarint(b, 17)
        except ValueError:
            raise ValueError("cursor is truncated: partition count missing") from None
        if n > _MAX_PARTITIONS:
            raise ValueError(f"cursor names {n} partitions, more than the limit {_MAX_PARTITIONS}")
        offsets = []
        for p in range(n):
            try:
                o, i = _read_uvarint(b, i)
            except ValueError:
                raise ValueError(f"cursor is truncated: offset of partition {p} missing") from None
            if o > _MAX_OFFSET:
                raise ValueError(f"cursor offset of partition {p} is out of range")
            offsets.append(o)
        if i != len(b):
            raise ValueError(f"cursor has {len(b) - i} trailing bytes")
        return cls(topic, tuple(offsets))

    @classmethod
    def parse(cls, s: str) -> "Cursor":
        """Parses the text form."""
        return cls.decode(from_text(s))


def to_text(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode("ascii")


def from_text(s: str) -> bytes:
    bad = _NOT_TEXT.search(s)
    if bad:
        raise ValueError(f"cursor is not URL-safe base64: illegal character {bad.group()!r} at {bad.start()}")
    if len(s) % 4 == 1:
        raise ValueError(f"cursor is not URL-safe base64: {len(s)} characters cannot be base64 without padding")
    try:
        return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
    except (ValueError, TypeError) as e:
        raise ValueError(f"cursor is not URL-safe base64: {e}") from None


def cursor_bytes(c: "str | bytes | Cursor | None") -> bytes:
    """Accepts a cursor in any form an API takes (text, wire bytes, Cursor)
    and returns the wire bytes sent to a gateway, unchecked: the gateway
    validates it."""
    if c is None:
        return b""
    if isinstance(c, Cursor):
        return c.encode()
    if isinstance(c, (bytes, bytearray, memoryview)):
        return bytes(c)
    return from_text(c)
