// Cursors: a gateway's applied position (Kafka topic ID plus the next offset
// of every partition).
//
// Cursors are opaque to applications, but a client must compare them to never
// go backwards, so it decodes them. The wire form (internal/cursor in the Go
// module) is: a format byte (1), the 16-byte topic ID, the partition count as
// an unsigned varint, then one unsigned varint per partition. The text form is
// URL-safe base64 without padding, as the CLI prints and accepts.

const FORMAT_V1 = 1;
const MAX_PARTITIONS = 1 << 16;
const MAX_OFFSET = 1n << 62n;

/** Appends n as an unsigned varint (Go's binary.AppendUvarint). */
export function appendUvarint(out: number[], n: bigint | number): void {
  let v = BigInt(n);
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
}

function readUvarint(b: Uint8Array, i: number): [bigint, number] {
  let n = 0n;
  let shift = 0n;
  for (;;) {
    if (i >= b.length) throw new Error("truncated varint");
    const c = b[i++];
    if (shift === 63n && c > 1) throw new Error("varint overflows 64 bits");
    n |= BigInt(c & 0x7f) << shift;
    if (c < 0x80) return [n, i];
    shift += 7n;
    if (shift > 63n) throw new Error("varint overflows 64 bits");
  }
}

/**
 * An applied position. offsets[p] is the next offset to apply in partition
 * p; a partition past the end of offsets is at offset 0.
 */
export class Cursor {
  constructor(
    readonly topic: Uint8Array,
    readonly offsets: readonly bigint[],
  ) {}

  offset(partition: number): bigint {
    return partition >= 0 && partition < this.offsets.length ? this.offsets[partition] : 0n;
  }

  /** True when this is at or past other in every partition; cursors of
   * different topics never cover each other. */
  covers(other: Cursor): boolean {
    if (!sameTopic(this, other)) return false;
    return other.offsets.every((off, p) => this.offset(p) >= off);
  }

  equals(other: Cursor): boolean {
    return this.covers(other) && other.covers(this);
  }

  encode(): Buffer {
    const out: number[] = [FORMAT_V1, ...this.topic];
    appendUvarint(out, this.offsets.length);
    for (const o of this.offsets) appendUvarint(out, o);
    return Buffer.from(out);
  }

  /** The text form: URL-safe base64 without padding. */
  toString(): string {
    return this.encode().toString("base64url");
  }

  /** The text form, so that JSON.stringify gives what toString does (the
   * offsets are bigints, which JSON.stringify refuses). */
  toJSON(): string {
    return this.toString();
  }

  /** Parses the wire form; throws an Error saying what is wrong. */
  static decode(b: Uint8Array): Cursor {
    if (b.length === 0) throw new Error("cursor is empty");
    if (b[0] !== FORMAT_V1) throw new Error(`cursor has unknown format ${b[0]} (want ${FORMAT_V1})`);
    if (b.length < 17) throw new Error("cursor is truncated: topic ID incomplete");
    const topic = Uint8Array.from(b.subarray(1, 17));
    let n: bigint;
    let i: number;
    try {
      [n, i] = readUvarint(b, 17);
    } catch {
      throw new Error("cursor is truncated: partition count missing");
    }
    if (n > BigInt(MAX_PARTITIONS)) throw new Error(`cursor names ${n} partitions, more than the limit ${MAX_PARTITIONS}`);
    const offsets: bigint[] = [];
    for (let p = 0; p < Number(n); p++) {
      let o: bigint;
      try {
        [o, i] = readUvarint(b, i);
      } catch {
        throw new Error(`cursor is truncated: offset of partition ${p} missing`);
      }
      if (o > MAX_OFFSET) throw new Error(`cursor offset of partition ${p} is out of range`);
      offsets.push(o);
    }
    if (i !== b.length) throw new Error(`cursor has ${b.length - i} trailing bytes`);
    return new Cursor(topic, offsets);
  }

  /** Parses the text form. */
  static parse(s: string): Cursor {
    return Cursor.decode(fromText(s));
  }
}

// Node's base64url decoder skips characters outside the alphabet and accepts
// '+', '/' and padding; Go's RawURLEncoding (the CLI, the gateways) refuses
// them, so the text is checked first.
const NOT_TEXT = /[^A-Za-z0-9_-]/;

/** Decodes the text form (URL-safe base64 without padding) to wire bytes. */
export function fromText(s: string): Buffer {
  const bad = NOT_TEXT.exec(s);
  if (bad) throw new Error(`cursor is not URL-safe base64: illegal character ${JSON.stringify(bad[0])} at ${bad.index}`);
  if (s.length % 4 === 1) {
    throw new Error(`cursor is not URL-safe base64: ${s.length} characters cannot be base64 without padding`);
  }
  return Buffer.from(s, "base64url");
}

/** The topic ID in the form Kafka's tools print (URL-safe base64, no padding). */
export function topicText(c: Cursor): string {
  return Buffer.from(c.topic).toString("base64url");
}

function sameTopic(a: Cursor, b: Cursor): boolean {
  return Buffer.compare(Buffer.from(a.topic), Buffer.from(b.topic)) === 0;
}

export function sameTopicOf(a: Cursor, b: Cursor): boolean {
  return sameTopic(a, b);
}

/** A cursor in any form the API takes: text, wire bytes or a Cursor. */
export type CursorLike = string | Uint8Array | Cursor | undefined | null;

/** The wire bytes to send a gateway, unchecked: the gateway validates them. */
export function cursorBytes(c: CursorLike): Buffer {
  if (c === undefined || c === null) return Buffer.alloc(0);
  if (c instanceof Cursor) return c.encode();
  if (typeof c === "string") return fromText(c);
  return Buffer.from(c);
}
