// The state file: the last-known-good view and its cursor on disk, so that a
// restarted process serves its configuration before any gateway answers and
// then resumes with deltas instead of a full snapshot. A port of
// client/statefile.go (the Go client), in the same format: a file written by
// one client is read by the others, for the same selector.
//
// Layout, format version 1:
//
//   magic     8 bytes: "CGSTATE" then the format version (0x01)
//   header    record: a confgate.v1.Selector, the normalized prefixes of
//             the selector the view was made for
//   entries   records: confgate.v1.SubscribeResponse with a snapshot_chunk,
//             entries in key order (UTF-8 bytes), chunks of about
//             STATE_CHUNK_BYTES
//   end       record: confgate.v1.SubscribeResponse with a snapshot_end:
//             the view's cursor, entry_count and state digest (reason
//             unspecified, reset false)
//   checksum  4 bytes: CRC-32C (Castagnoli) of every byte before it,
//             big-endian; nothing follows it
//
// A record is an unsigned varint length followed by that many bytes of the
// message's protobuf encoding. Entries and end are exactly what a gateway
// sends for a snapshot, and a file is checked like one (entry count, digest,
// no entry at or past the cursor), plus: the checksum, the selector, every
// key matching it, nothing after the checksum. A file that fails any check
// is ignored as a whole, never partially loaded.

import { randomBytes } from "node:crypto";
import { open, readdir, rename, unlink, type FileHandle } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { createCRC32, type IHasher } from "hash-wasm";
import { Cursor, appendUvarint } from "./cursor";
import { DIGEST_SIZE } from "./digest";
import { Entry as PbEntry, Selector, SubscribeResponse } from "./gen/confgate/v1/config";
import { DEFAULT_MAX_RECEIVE } from "./grpc";
import { ProtocolViolation, Replica, Session } from "./replica";
import { selects } from "./report";
import { type Entry, entryToProto } from "./types";

const MAGIC = Buffer.from("CGSTATE\x01", "latin1");
/** The approximate payload of one entries record. */
export const STATE_CHUNK_BYTES = 256 << 10;
/** Bounds one record on read, so a corrupt length cannot make the reader
 * allocate without limit: a chunk holds less than STATE_CHUNK_BYTES plus one
 * entry, and an entry arrived in a gRPC message (at most 16 MiB by default);
 * twice that leaves room to spare. The Go client's bound. */
export const MAX_STATE_RECORD = STATE_CHUNK_BYTES + 2 * DEFAULT_MAX_RECEIVE;
/** Temporary files are "<name>.tmp-<random>". */
export const STATE_TEMP_INFIX = ".tmp-";
/** Bounds the share of time spent writing: after a write that took d, the
 * next waits at least d * STATE_FILE_DUTY. Every write rewrites the whole
 * view, and the cursor moves with every change to the topic, selected or
 * not; without the bound a large view would be rewritten every interval,
 * for ever. */
export const STATE_FILE_DUTY = 20;
export const DEFAULT_STATE_FILE_INTERVAL_MS = 1000;
/** CRC-32C's reversed polynomial, for hash-wasm's CRC-32. */
const CASTAGNOLI = 0x82f63b78;
const WRITE_BUFFER = 64 << 10;

/** A state file that failed a check; it is then ignored as a whole. */
export class StateFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StateFileError";
  }
}

/** What a state file holds, or what is to be written to one. */
export interface SavedView {
  /** In key order (UTF-8 bytes). */
  entries: Entry[];
  cursor: Cursor;
  digest: Buffer;
}

/** A fresh CRC-32C hasher: one per file, as writes of several files may
 * interleave. */
async function crc32c(): Promise<IHasher> {
  const h = await createCRC32(CASTAGNOLI);
  h.init();
  return h;
}

function uvarint(n: number): Buffer {
  const out: number[] = [];
  appendUvarint(out, n);
  return Buffer.from(out);
}

/** A length-delimited field (wire type 2) with number field. */
function lengthDelimited(field: number, body: Uint8Array): Buffer[] {
  return [Buffer.from([(field << 3) | 2]), uvarint(body.length), Buffer.from(body.buffer, body.byteOffset, body.length)];
}

/** The entries of a view in key order by UTF-8 bytes, as gateways and the
 * Go client order keys. */
export function sortedEntries(entries: Iterable<Entry>): Entry[] {
  const keyed = Array.from(entries, (e) => ({ k: Buffer.from(e.key, "utf8"), e }));
  keyed.sort((a, b) => Buffer.compare(a.k, b.k));
  return keyed.map((x) => x.e);
}

/**
 * Writes a view to path atomically: a temporary file in the same directory
 * (mode 0600), fsynced, renamed over path, then the directory fsynced so the
 * rename itself survives a power loss. It yields to the event loop between
 * chunks, so a large view does not stall the subscription; view must not
 * change meanwhile (entries are frozen, the array is the caller's copy).
 * Returns the file size.
 */
export async function writeStateFile(path: string, selector: readonly string[], view: SavedView): Promise<number> {
  const dir = dirname(path);
  const tmp = join(dir, basename(path) + STATE_TEMP_INFIX + randomBytes(8).toString("hex"));
  const sum = await crc32c();
  const fh = await open(tmp, "wx", 0o600);
  let closed = false;
  try {
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    let size = 0;
    const flush = async () => {
      if (pendingBytes === 0) return;
      const b = Buffer.concat(pending, pendingBytes);
      pending = [];
      pendingBytes = 0;
      await writeAll(fh, b);
    };
    const raw = async (...bs: Buffer[]) => {
      for (const b of bs) {
        sum.update(b);
        pending.push(b);
        pendingBytes += b.length;
        size += b.length;
      }
      if (pendingBytes >= WRITE_BUFFER) await flush();
    };
    const record = (body: Uint8Array) => raw(uvarint(body.length), Buffer.from(body.buffer, body.byteOffset, body.length));

    await raw(MAGIC);
    await record(Selector.encode({ prefixes: [...selector] }).finish());
    // A chunk record is built from each entry's encoding, so its size is
    // known without encoding twice: SubscribeResponse{snapshot_chunk (1):
    // SnapshotChunk{entries (1): Entry...}}, as the Go client writes it.
    let chunk: Buffer[] = [];
    let chunkBytes = 0;
    let payload = 0; // the entries' own sizes, as the Go client counts them
    const flushChunk = async () => {
      const body = Buffer.concat(chunk, chunkBytes);
      chunk = [];
      chunkBytes = 0;
      payload = 0;
      await record(Buffer.concat(lengthDelimited(1, body)));
    };
    for (const e of view.entries) {
      const eb = PbEntry.encode(entryToProto(e)).finish();
      for (const b of lengthDelimited(1, eb)) {
        chunk.push(b);
        chunkBytes += b.length;
      }
      payload += eb.length;
      if (payload >= STATE_CHUNK_BYTES) await flushChunk();
    }
    if (chunk.length > 0) await flushChunk();
    await record(
      SubscribeResponse.encode({
        message: {
          $case: "snapshotEnd",
          snapshotEnd: {
            cursor: view.cursor.encode(),
            entryCount: BigInt(view.entries.length),
            digest: view.digest,
            reason: 0,
            reset: false,
          },
        },
      }).finish(),
    );
    const crc = Buffer.from(sum.digest("binary"));
    pending.push(crc);
    pendingBytes += crc.length;
    size += crc.length;
    await flush();
    await fh.sync();
    closed = true;
    await fh.close();
    await rename(tmp, path);
    // From here the new file is in place; a failed directory sync only
    // means the rename might not survive a power loss.
    await syncDir(dir);
    return size;
  } catch (e) {
    if (!closed) await fh.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    throw e;
  }
}

async function writeAll(fh: FileHandle, b: Buffer): Promise<void> {
  for (let off = 0; off < b.length; ) {
    const { bytesWritten } = await fh.write(b, off, b.length - off);
    off += bytesWritten;
  }
}

/** fsyncs a directory, so that a rename in it is durable; a no-op on
 * Windows, where directories cannot be opened for syncing. */
export async function syncDir(dir: string): Promise<void> {
  if (process.platform === "win32") return;
  const d = await open(dir, "r");
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}

/** Deletes "<name>.tmp-*" files next to path: what a process that died
 * mid-write left behind. Returns the paths removed; failures go to warn. */
export async function removeStateTemps(path: string, warn: (msg: string) => void): Promise<string[]> {
  const dir = dirname(path);
  const prefix = basename(path) + STATE_TEMP_INFIX;
  let names;
  try {
    names = await readdir(dir, { withFileTypes: true });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") warn(`cannot list the state file's directory ${dir}: ${(e as Error).message}`);
    return [];
  }
  const removed: string[] = [];
  for (const de of names) {
    if (!de.isFile() || !de.name.startsWith(prefix)) continue;
    const p = join(dir, de.name);
    try {
      await unlink(p);
      removed.push(p);
    } catch (e) {
      warn(`cannot remove a leftover temporary state file ${p}: ${(e as Error).message}`);
    }
  }
  return removed;
}

/**
 * Reads the state file at path for the (normalized) selector. Resolves to
 * the replica it holds, synced at the file's cursor but not live, or
 * undefined when there is no file; rejects with StateFileError when the
 * file fails a check, or with the error of the file system.
 */
export async function readStateFile(path: string, selector: readonly string[]): Promise<Replica | undefined> {
  let fh: FileHandle;
  try {
    fh = await open(path, "r");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
  let b: Buffer;
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new StateFileError("not a regular file");
    b = await fh.readFile();
    if (b.length !== st.size) throw new StateFileError("the file changed while it was read");
  } finally {
    await fh.close();
  }
  return decodeState(b, selector, await crc32c());
}

/** Parses a whole state file; throws StateFileError saying what is wrong. */
export function decodeState(b: Buffer, selector: readonly string[], sum: IHasher): Replica {
  let pos = 0;
  const take = (n: number, what: string): Buffer => {
    if (n > b.length - pos) throw new StateFileError(`${what}: file is truncated`);
    const out = b.subarray(pos, pos + n);
    pos += n;
    return out;
  };
  const record = (what: string): Buffer => {
    let n = 0n;
    let shift = 0n;
    for (let i = 0; ; i++) {
      if (pos >= b.length) throw new StateFileError(`${what}: record length: file is truncated`);
      if (i === 10) throw new StateFileError(`${what}: record length overflows 64 bits`);
      const c = b[pos++];
      n |= BigInt(c & 0x7f) << shift;
      if (c < 0x80) break;
      shift += 7n;
    }
    if (n > BigInt(MAX_STATE_RECORD) || n > BigInt(b.length - pos)) {
      throw new StateFileError(`${what}: record of ${n} bytes is past the end of the file or over the limit (truncated or corrupt)`);
    }
    return take(Number(n), what);
  };

  const magic = take(MAGIC.length, "header");
  if (!magic.subarray(0, MAGIC.length - 1).equals(MAGIC.subarray(0, MAGIC.length - 1))) {
    throw new StateFileError("not a confgate state file (bad magic)");
  }
  if (magic[MAGIC.length - 1] !== MAGIC[MAGIC.length - 1]) {
    throw new StateFileError(`state file format version ${magic[MAGIC.length - 1]} is not supported (this client reads ${MAGIC[MAGIC.length - 1]})`);
  }
  let fileSel: string[];
  try {
    fileSel = Selector.decode(record("header")).prefixes;
  } catch (e) {
    if (e instanceof StateFileError) throw e;
    throw new StateFileError(`header: ${(e as Error).message}`);
  }
  const same = fileSel.length === selector.length && fileSel.every((p, i) => p === selector[i]);
  if (!same) {
    throw new StateFileError(`made for selector ${JSON.stringify(fileSel)}, this view's is ${JSON.stringify(selector)}`);
  }

  const r = new Replica();
  const s = new Session(false);
  for (let done = false; !done; ) {
    const body = record("entries");
    let m: SubscribeResponse;
    try {
      m = SubscribeResponse.decode(body);
    } catch (e) {
      throw new StateFileError(`record: ${(e as Error).message}`);
    }
    try {
      switch (m.message?.$case) {
        case "snapshotChunk":
          for (const e of m.message.snapshotChunk.entries) {
            if (!selects(selector, e.key)) throw new StateFileError(`entry ${JSON.stringify(e.key)} does not match the selector ${JSON.stringify(selector)}`);
          }
          r.handle(s, m);
          break;
        case "snapshotEnd":
          if (m.message.snapshotEnd.digest.length !== DIGEST_SIZE) throw new StateFileError("end record has no digest");
          r.handle(s, m);
          done = true;
          break;
        default:
          throw new StateFileError("unknown record");
      }
    } catch (e) {
      if (e instanceof StateFileError) throw e;
      // The checks are a gateway's; the words are not.
      const msg = (e as Error).message;
      const prefix = "gateway protocol violation: ";
      throw new StateFileError(e instanceof ProtocolViolation && msg.startsWith(prefix) ? msg.slice(prefix.length) : msg);
    }
  }
  sum.update(b.subarray(0, pos));
  const want = Buffer.from(sum.digest("binary"));
  const got = take(4, "checksum");
  if (!got.equals(want)) {
    throw new StateFileError(`checksum mismatch: file says ${got.toString("hex")}, content has ${want.toString("hex")}`);
  }
  if (pos !== b.length) throw new StateFileError(`${b.length - pos} bytes after the checksum`);
  r.live = false;
  return r;
}
