// The state digest: the lane-wise sum (mod 2^64 per lane) of the 128-bit XXH3
// hash of every entry. The hashed bytes of one entry are (internal/digest in
// the Go module): uvarint(len(key)) key uvarint(len(value)) value, big-endian
// int32 partition, big-endian int64 offset. The wire form is the high lane
// then the low lane, big-endian, 16 bytes.
//
// XXH3-128 comes from hash-wasm (WebAssembly, no native build), whose
// hashers are created asynchronously: call ready() once before hashing.

import { createXXHash128, type IHasher } from "hash-wasm";
import { appendUvarint } from "./cursor";

const MASK = (1n << 64n) - 1n;
export const DIGEST_SIZE = 16;

let hasher: IHasher | undefined;
let loading: Promise<void> | undefined;

/** Loads the hash function; resolves at once after the first call. */
export function ready(): Promise<void> {
  if (hasher) return Promise.resolve();
  loading ??= createXXHash128().then((h) => {
    hasher = h;
  });
  return loading;
}

/** The [hi, lo] lanes of one entry's hash. ready() must have resolved. */
export function entryHash(key: string, value: Uint8Array, partition: number, offset: bigint): [bigint, bigint] {
  if (!hasher) throw new Error("confgate: digest not ready: await ready() first");
  const kb = Buffer.from(key, "utf8");
  const pre: number[] = [];
  appendUvarint(pre, kb.length);
  const vpre: number[] = [];
  appendUvarint(vpre, value.length);
  const ver = Buffer.alloc(12);
  ver.writeInt32BE(partition, 0);
  ver.writeBigInt64BE(offset, 4);
  hasher.init();
  hasher.update(Uint8Array.from(pre));
  hasher.update(kb);
  hasher.update(Uint8Array.from(vpre));
  hasher.update(value);
  hasher.update(ver);
  const d = Buffer.from(hasher.digest("binary"));
  return [d.readBigUInt64BE(0), d.readBigUInt64BE(8)];
}

/** An order-independent digest of a set of entries; add and remove are O(1). */
export class Digest {
  hi = 0n;
  lo = 0n;

  add(key: string, value: Uint8Array, partition: number, offset: bigint): void {
    const [hi, lo] = entryHash(key, value, partition, offset);
    this.hi = (this.hi + hi) & MASK;
    this.lo = (this.lo + lo) & MASK;
  }

  remove(key: string, value: Uint8Array, partition: number, offset: bigint): void {
    const [hi, lo] = entryHash(key, value, partition, offset);
    this.hi = (this.hi - hi) & MASK;
    this.lo = (this.lo - lo) & MASK;
  }

  toBytes(): Buffer {
    const b = Buffer.alloc(DIGEST_SIZE);
    b.writeBigUInt64BE(this.hi, 0);
    b.writeBigUInt64BE(this.lo, 8);
    return b;
  }
}
