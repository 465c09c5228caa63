"""The state file: the last-known-good view and its cursor on disk, so that a
restarted process serves its configuration before any gateway answers and
then resumes with deltas instead of a full snapshot. A port of
client/statefile.go (the Go client), in the same format: a file written by
one client is read by the other, for the same selector.

Layout, format version 1:

    magic     8 bytes: "CGSTATE" then the format version (0x01)
    header    record: a confgate.v1.Selector, the normalized prefixes of
              the selector the view was made for
    entries   records: confgate.v1.SubscribeResponse with a snapshot_chunk,
              entries in key order, chunks of about STATE_CHUNK_BYTES
    end       record: confgate.v1.SubscribeResponse with a snapshot_end:
              the view's cursor, entry_count and state digest (reason
              unspecified, reset false)
    checksum  4 bytes: CRC-32C (Castagnoli) of every byte before it,
              big-endian; nothing follows it

A record is an unsigned varint length followed by that many bytes of the
message's protobuf encoding. Entries and end are exactly what a gateway
sends for a snapshot, and a file is checked like one (entry count, digest,
no entry at or past the cursor), plus: the checksum, the selector, every key
matching it, nothing after the checksum. A file that fails any check is
ignored as a whole, never partially loaded.
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile
import threading
import time
from typing import BinaryIO, Callable, Optional, Sequence, Tuple

import google_crc32c

from ._channel import DEFAULT_MAX_RECEIVE
from ._cursor import _read_uvarint, from_text, uvarint
from ._digest import SIZE as DIGEST_SIZE
from ._keyspace import normalize_selector
from ._replica import ProtocolViolation, Replica, Session
from ._report import selects
from ._view import View
from .v1 import config_pb2 as pb

log = logging.getLogger("confgate")

STATE_MAGIC = b"CGSTATE"
STATE_VERSION = 1
# The approximate payload of one entries record.
STATE_CHUNK_BYTES = 256 << 10
# Bounds one record on read, so a corrupt length cannot make the reader
# allocate without limit: a chunk holds less than STATE_CHUNK_BYTES plus one
# entry, and an entry arrived in a gRPC message (at most 16 MiB by
# default); twice that leaves room to spare. The Go client's bound.
MAX_STATE_RECORD = STATE_CHUNK_BYTES + 2 * DEFAULT_MAX_RECEIVE
# Temporary files are "<name>.tmp-<random>".
STATE_TEMP_INFIX = ".tmp-"
# Bounds the share of time spent writing: after a write that took d, the
# next waits at least d * STATE_FILE_DUTY. Every write rewrites the whole
# view, and the cursor moves with every change to the topic, selected or
# not; without the bound a large view would be rewritten every interval.
STATE_FILE_DUTY = 20
DEFAULT_STATE_FILE_INTERVAL = 1.0

_BUF = 64 << 10


class StateFileError(ValueError):
    """A state file that failed a check (it is then ignored as a whole)."""


class _Checksummed:
    """Writes to f, keeping the CRC-32C of everything written."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.crc = 0
        self.n = 0

    def write(self, b: bytes) -> None:
        self.f.write(b)
        self.crc = google_crc32c.extend(self.crc, b)
        self.n += len(b)

    def record(self, body: bytes) -> None:
        self.write(uvarint(len(body)))
        self.write(body)


def encode_state(f: BinaryIO, prefixes: Sequence[str], view: View) -> int:
    """Writes view in the state file layout; returns the bytes written."""
    w = _Checksummed(f)
    w.write(STATE_MAGIC + bytes([STATE_VERSION]))
    w.record(pb.Selector(prefixes=list(prefixes)).SerializeToString())
    chunk = pb.SnapshotChunk()
    size = 0
    for e in view.entries():
        pe = chunk.entries.add()
        pe.CopyFrom(e.to_proto())
        size += pe.ByteSize()
        if size >= STATE_CHUNK_BYTES:
            w.record(pb.SubscribeResponse(snapshot_chunk=chunk).SerializeToString())
            chunk, size = pb.SnapshotChunk(), 0
    if len(chunk.entries) > 0:
        w.record(pb.SubscribeResponse(snapshot_chunk=chunk).SerializeToString())
    end = pb.SnapshotEnd(entry_count=len(view), digest=view.digest)
    end.cursor = from_text(view.cursor)
    w.record(pb.SubscribeResponse(snapshot_end=end).SerializeToString())
    f.write(w.crc.to_bytes(4, "big"))
    return w.n + 4


def write_state_file(path: str, prefixes: Sequence[str], view: View) -> int:
    """Replaces path with view atomically: a temporary file in the same
    directory (mode 0600), fsynced, renamed over path, then the directory
    fsynced so that the rename itself survives a power loss. Returns the
    file size."""
    d = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=d, prefix=os.path.basename(path) + STATE_TEMP_INFIX)
    try:
        with os.fdopen(fd, "wb", buffering=_BUF) as f:
            n = encode_state(f, prefixes, view)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    # From here the new file is in place; a failed directory sync only
    # means the rename might not survive a power loss.
    _sync_dir(d)
    return n


def _sync_dir(d: str) -> None:
    if os.name == "nt":
        return  # directories cannot be opened for syncing there
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_state_temps(path: str) -> None:
    """Deletes "<name>.tmp-*" files next to path: what a process that died
    mid-write left behind."""
    d = os.path.dirname(path) or "."
    prefix = os.path.basename(path) + STATE_TEMP_INFIX
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return
    except OSError as e:
        log.warning("cannot list the state file's directory %s: %s", d, e)
        return
    for name in names:
        p = os.path.join(d, name)
        if not name.startswith(prefix) or not os.path.isfile(p) or os.path.islink(p):
            continue
        try:
            os.remove(p)
        except OSError as e:
            log.warning("cannot remove a leftover temporary state file %s: %s", p, e)
            continue
        log.info("removed a leftover temporary state file %s", p)


class _Reader:
    """Reads a state file, checksumming what it reads and bounding records
    by what is left of the file."""

    def __init__(self, f: BinaryIO, size: int) -> None:
        self.f = f
        self.left = size
        self.crc = 0

    def full(self, n: int, raw: bool = False) -> bytes:
        if n > self.left:
            raise StateFileError("file is truncated")
        b = self.f.read(n)
        if len(b) != n:
            raise StateFileError("file is truncated")
        self.left -= n
        if not raw:
            self.crc = google_crc32c.extend(self.crc, b)
        return b

    def uvarint(self) -> int:
        buf = bytearray()
        while True:
            c = self.full(1)
            buf += c
            if c[0] < 0x80 or len(buf) >= 10:
                break
        try:
            n, _ = _read_uvarint(bytes(buf), 0)
        except ValueError as e:
            raise StateFileError(str(e)) from None
        return n

    def record(self) -> bytes:
        try:
            n = self.uvarint()
        except StateFileError as e:
            raise StateFileError(f"record length: {e}") from None
        if n > MAX_STATE_RECORD or n > self.left:
            raise StateFileError(
                f"record of {n} bytes is past the end of the file or over the limit (truncated or corrupt)")
        return self.full(n)


def decode_state(f: BinaryIO, size: int, prefixes: Sequence[str]) -> Replica:
    """Reads size bytes of f in the state file layout, for the normalized
    selector prefixes. The replica is returned only when every check
    passed; StateFileError says which failed."""
    r = _Reader(f, size)
    try:
        magic = r.full(len(STATE_MAGIC) + 1)
    except StateFileError as e:
        raise StateFileError(f"header: {e}") from None
    if magic[:len(STATE_MAGIC)] != STATE_MAGIC:
        raise StateFileError("not a confgate state file (bad magic)")
    if magic[-1] != STATE_VERSION:
        raise StateFileError(
            f"state file format version {magic[-1]} is not supported (this client reads {STATE_VERSION})")
    try:
        hdr = pb.Selector.FromString(r.record())
        file_prefixes = normalize_selector(list(hdr.prefixes))
    except StateFileError as e:
        raise StateFileError(f"header: {e}") from None
    except Exception as e:  # a protobuf decode error, or a refused selector
        raise StateFileError(f"header: {e}") from None
    if file_prefixes != list(prefixes):
        raise StateFileError(f"made for selector {file_prefixes}, this view's is {list(prefixes)}")

    rep = Replica()
    sess = Session(resumed=False)
    while True:
        body = r.record()
        try:
            m = pb.SubscribeResponse.FromString(body)
        except Exception as e:
            raise StateFileError(f"record does not parse: {e}") from None
        kind = m.WhichOneof("message")
        try:
            if kind == "snapshot_chunk":
                for pe in m.snapshot_chunk.entries:
                    if not selects(prefixes, pe.key):
                        raise StateFileError(f"entry {pe.key!r} does not match the selector {list(prefixes)}")
                rep._chunk(sess, m.snapshot_chunk.entries)
            elif kind == "snapshot_end":
                if len(m.snapshot_end.digest) != DIGEST_SIZE:
                    raise StateFileError("end record has no digest")
                rep._snapshot_end(sess, m.snapshot_end)
                break
            else:
                raise StateFileError("unknown record")
        except ProtocolViolation as e:
            # The checks are a gateway's; the words are not.
            raise StateFileError(e.msg) from None
    want = r.crc
    try:
        got = int.from_bytes(r.full(4, raw=True), "big")
    except StateFileError as e:
        raise StateFileError(f"checksum: {e}") from None
    if got != want:
        raise StateFileError(f"checksum mismatch: file says {got:08x}, content has {want:08x}")
    if r.left != 0:
        raise StateFileError(f"{r.left} bytes after the checksum")
    if r.f.read(1):
        raise StateFileError("the file grew while it was read")
    rep.live = False  # loaded, not vouched for by a gateway
    return rep


def read_state_file(path: str, prefixes: Sequence[str]) -> Replica:
    """Loads the state file at path for the normalized selector prefixes.
    Raises FileNotFoundError when there is none, StateFileError or OSError
    when it cannot be used."""
    with open(path, "rb", buffering=_BUF) as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise StateFileError("not a regular file")
        return decode_state(f, st.st_size, prefixes)


class StateFileWriter:
    """Writes the published view to the state file when asked (notify), at
    most once per interval (and no more than 1/STATE_FILE_DUTY of the time),
    and a last time when stopped. Runs on a thread of its own, so neither a
    subscription thread nor an event loop ever waits for the disk; it only
    reads immutable Views.

    current returns the view to write (None while it has no cursor);
    result is called after every write with None or the error."""

    def __init__(self, path: str, prefixes: Sequence[str], current: Callable[[], Optional[View]],
                 result: Callable[[Optional[BaseException]], None], interval: float,
                 saved: Optional[Tuple[str, bytes]] = None) -> None:
        self._path = path
        self._prefixes = list(prefixes)
        self._current = current
        self._result = result
        self._interval = interval
        # What the file holds, to skip writes that would not change it.
        self._saved = saved
        self._dirty = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="confgate-state-file", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def notify(self) -> None:
        """Asks for a write; any number of calls before it stand for one."""
        self._dirty.set()

    def stop(self, timeout: Optional[float] = None) -> None:
        """Writes a last time and waits for the thread (timeout seconds at
        most; None: as long as it takes)."""
        self._stopping.set()
        self._dirty.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            while True:
                self._dirty.wait()
                if self._stopping.is_set():
                    break
                self._dirty.clear()
                took = self._save()
                if self._stopping.wait(max(self._interval, took * STATE_FILE_DUTY)):
                    break
            self._save()
        except Exception:  # a bug: the file stops being written, the view carries on
            log.exception("state file writer failed")

    def _save(self) -> float:
        """Writes the current view unless the file holds it already or the
        view has no cursor; returns how long the write took."""
        v = self._current()
        if v is None or not v.cursor or (v.cursor, v.digest) == self._saved:
            return 0.0
        start = time.monotonic()
        try:
            n = write_state_file(self._path, self._prefixes, v)
        except (OSError, ValueError) as e:
            err = OSError(f"state file {self._path} not written: {e}")
            log.warning("cannot write the state file; it keeps its previous content: %s", err)
            self._result(err)
            return time.monotonic() - start
        self._saved = (v.cursor, v.digest)
        self._result(None)
        took = time.monotonic() - start
        log.debug("state file %s written: %d entries, %d bytes, cursor %s, took %.3fs",
                  self._path, len(v), n, v.cursor, took)
        return took
