"""View: one consistent, immutable version of a subscription's entries, as a
read-only Mapping."""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from typing import Any, Dict, Iterator, List, Optional

from ._cursor import Cursor
from ._types import Entry


class View(Mapping[str, Entry]):
    """One version of a subscription's view: a read-only
    ``Mapping[str, Entry]`` from key to Entry, with the cursor and digest
    of that version.

    It behaves like a dict that cannot be changed: ``key in view``,
    ``len(view)``, ``view[key]`` (KeyError when absent), ``view.get(key)``,
    iteration, ``keys()``, ``items()`` and ``values()``, and ``==`` with
    any mapping (a dict of the same keys and entries is equal). Values are
    Entry objects (value bytes, version, content type, headers), not bytes:
    ``entry.value`` or ``entry.text()`` for the value. Iteration is in key
    order (by UTF-8 bytes, as the gateways order keys).

    A View never changes: Subscription.view() returns a new one once the
    subscription applied a change, so every read of one View sees the same
    version, whatever happens meanwhile. Entries are frozen dataclasses;
    there is no item assignment or deletion.
    """

    __slots__ = ("_entries", "_cursor", "_digest", "_keys")

    def __init__(self, entries: Optional[Mapping[str, Entry]] = None, cursor: str = "",
                 digest: bytes = b"\x00" * 16) -> None:
        # A private copy: nothing else holds a reference to it, so it never
        # changes under a reader.
        self._entries: Dict[str, Entry] = dict(entries or {})
        self._cursor = cursor
        self._digest = bytes(digest)
        self._keys: Optional[List[str]] = None  # sorted keys, made on first use

    @classmethod
    def _adopt(cls, entries: Dict[str, Entry], cursor: Optional[Cursor], digest: bytes) -> "View":
        """A View that takes ownership of entries (the caller never touches
        the dict again), without another copy."""
        v = cls.__new__(cls)
        v._entries = entries
        v._cursor = "" if cursor is None else str(cursor)
        v._digest = digest
        v._keys = None
        return v

    @property
    def cursor(self) -> str:
        """The cursor of this version, in its text form (as the CLI prints
        it), or "" before the first snapshot."""
        return self._cursor

    @property
    def digest(self) -> bytes:
        """The state digest of this version's entries (16 bytes): what a
        gateway computes for the selector at the cursor."""
        return self._digest

    def _sorted(self) -> List[str]:
        ks = self._keys
        if ks is None:
            # Code point order is UTF-8 byte order for the keys gateways
            # accept (no surrogates). Two threads may both sort: same result.
            ks = self._keys = sorted(self._entries)
        return ks

    def __getitem__(self, key: str) -> Entry:
        return self._entries[key]

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self._sorted())

    def get(self, key: str, default: Any = None) -> Any:
        """The entry for key, or default (None)."""
        return self._entries.get(key, default)

    def entries(self, prefix: str = "") -> List[Entry]:
        """The entries whose keys start with prefix, in key order."""
        ks = self._sorted()
        if not prefix:
            return [self._entries[k] for k in ks]
        i = bisect.bisect_left(ks, prefix)
        out = []
        while i < len(ks) and ks[i].startswith(prefix):
            out.append(self._entries[ks[i]])
            i += 1
        return out

    def __eq__(self, other: object) -> bool:
        if isinstance(other, View):
            return self._entries == other._entries
        if isinstance(other, dict):
            return self._entries == other
        if isinstance(other, Mapping):
            return self._entries == dict(other.items())
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # a mapping: equal to dicts, so not hashable, like dict

    def __repr__(self) -> str:
        return f"View({len(self._entries)} entries, cursor={self._cursor!r})"

    def __reduce__(self) -> Any:
        return (View, (self._entries, self._cursor, self._digest))
