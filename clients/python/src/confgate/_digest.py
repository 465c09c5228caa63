"""The state digest: the lane-wise sum (mod 2^64 per lane) of the 128-bit
XXH3 hash of every entry. The hashed bytes of one entry are (internal/digest
in the Go module): uvarint(len(key)) key uvarint(len(value)) value
big-endian int32 partition, big-endian int64 offset. The wire form is the
high lane then the low lane, big-endian, 16 bytes."""

from __future__ import annotations

import struct
from typing import Tuple

import xxhash

from ._cursor import uvarint

_MASK = (1 << 64) - 1
_VERSION = struct.Struct(">iq")

SIZE = 16


def entry_hash(key: str, value: bytes, partition: int, offset: int) -> Tuple[int, int]:
    """Returns the (hi, lo) lanes of one entry's hash."""
    kb = key.encode("utf-8")
    h = xxhash.xxh3_128()
    h.update(uvarint(len(kb)))
    h.update(kb)
    h.update(uvarint(len(value)))
    h.update(value)
    h.update(_VERSION.pack(partition, offset))
    d = h.intdigest()
    return d >> 64, d & _MASK


class Digest:
    """An order-independent digest of a set of entries; add and remove are O(1)."""

    __slots__ = ("hi", "lo")

    def __init__(self) -> None:
        self.hi = 0
        self.lo = 0

    def add(self, key: str, value: bytes, partition: int, offset: int) -> None:
        hi, lo = entry_hash(key, value, partition, offset)
        self.hi = (self.hi + hi) & _MASK
        self.lo = (self.lo + lo) & _MASK

    def remove(self, key: str, value: bytes, partition: int, offset: int) -> None:
        hi, lo = entry_hash(key, value, partition, offset)
        self.hi = (self.hi - hi) & _MASK
        self.lo = (self.lo - lo) & _MASK

    def copy(self) -> "Digest":
        d = Digest()
        d.hi, d.lo = self.hi, self.lo
        return d

    def to_bytes(self) -> bytes:
        return self.hi.to_bytes(8, "big") + self.lo.to_bytes(8, "big")
