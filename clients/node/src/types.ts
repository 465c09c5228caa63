import type { Entry as PbEntry } from "./gen/confgate/v1/config";

/** A Kafka record header carried with an entry. */
export interface Header {
  key: string;
  value: Buffer;
}

/**
 * A 64-bit integer (a Kafka offset, a lag in records) as a decimal string,
 * as protobuf's JSON mapping writes int64: exact at any size, and it
 * survives JSON.stringify (a bigint throws there, a number loses precision
 * past 2^53). Compare or compute with BigInt(x), never with < on the
 * strings ("10" < "9").
 */
export type Int64String = string;

/**
 * One configuration key with its value, version and metadata. (partition,
 * offset) is the entry's version: the Kafka position of the record that set
 * it. Versions of one key only grow. Entries are frozen.
 */
export interface Entry {
  readonly key: string;
  readonly value: Buffer;
  readonly partition: number;
  /** The record's offset in its partition, as a decimal string. */
  readonly offset: Int64String;
  /** The "content-type" record header, when the producer set one. */
  readonly contentType: string;
  /** All record headers, in record order. */
  readonly headers: readonly Header[];
}

export function entryFromProto(e: PbEntry): Entry {
  if (!e.key) throw new Error("entry has no key");
  if (!e.version) throw new Error(`entry ${JSON.stringify(e.key)} has no version`);
  checkVersion(e.key, e.version.partition, e.version.offset);
  return Object.freeze({
    key: e.key,
    value: Buffer.from(e.value),
    partition: e.version.partition,
    offset: e.version.offset.toString(),
    contentType: e.contentType,
    headers: Object.freeze(e.headers.map((h) => Object.freeze({ key: h.key, value: Buffer.from(h.value) }))),
  });
}

/** The generated message of an entry (the state file stores entries as a
 * gateway sends them). */
export function entryToProto(e: Entry): PbEntry {
  return {
    key: e.key,
    value: e.value,
    version: { partition: e.partition, offset: BigInt(e.offset) },
    contentType: e.contentType,
    headers: e.headers.map((h) => ({ key: h.key, value: h.value })),
  };
}

/**
 * Refuses a version that is no Kafka position: a negative partition or offset
 * would lie "before" any cursor (an unknown partition is at 0) and, as another
 * partition, would replace or delete any entry regardless of its version.
 */
export function checkVersion(key: string, partition: number, offset: bigint): void {
  if (partition < 0 || offset < 0n) {
    throw new Error(`entry ${JSON.stringify(key)} has version partition ${partition} offset ${offset}, not a Kafka position`);
  }
}

/**
 * "put": key was set to entry. "delete": key was deleted. "snapshot": the
 * first snapshot was applied, the view is synced. "reset": a later snapshot
 * replaced the whole view, or replaced a view loaded from the state file
 * (keys may have appeared, changed or disappeared without individual
 * events); an events() iterator also yields one in place of the events it
 * dropped when its consumer fell too far behind. "loaded": the view was
 * loaded from the state file (the first event, before any gateway
 * answered; there is no "snapshot" event in the life of a loaded view).
 */
export type EventKind = "put" | "delete" | "snapshot" | "reset" | "loaded";

/** One change to a Subscription's view. */
export interface Event {
  kind: EventKind;
  /** The changed key (put, delete); "" otherwise. */
  key: string;
  /** The new entry (put); undefined otherwise. */
  entry?: Entry;
  /** The view's cursor (text form) once the message carrying the change was applied. */
  cursor: string;
}

/**
 * The state of a Subscription. Plain data: every field is a boolean, a
 * number below 2^53, a string or undefined, so JSON.stringify and
 * JSON.parse give it back unchanged (int64s are decimal strings, errors
 * their messages).
 */
export interface Status {
  /** A stream to a gateway delivers messages. */
  connected: boolean;
  /** The gateway of the current stream, or of the last attempt. */
  addr: string;
  /** The view may be behind the topic: not synced yet (or only loaded from
   * the state file), disconnected (it serves the last-known-good state), or
   * the gateway said it has not heard from Kafka recently. */
  stale: boolean;
  /** The view holds what was loaded from the state file and no gateway has
   * answered yet. stale is true meanwhile. */
  fromFile: boolean;
  /** The view's cursor (text form), "" before the first snapshot. */
  cursor: string;
  /** The gateway's lag behind the topic in records, from the last progress
   * message, as a decimal string. */
  lagRecords: Int64String;
  /** Stream attempts after the first one. */
  reconnects: number;
  /** Snapshots that replaced an existing view. */
  resets: number;
  /** The message of what ended the most recent failed stream (kept after a
   * successful reconnect), or of the permanent error that stopped the
   * subscription; the Error itself is Subscription.lastError. */
  lastError?: string;
  /** Why the state file was ignored at start or why its last write failed;
   * unset once a write succeeded. The view is not affected, only what a
   * restart would boot from. */
  stateFileError?: string;
}

/** A record's version, as writes and precondition failures report it. */
export interface Version {
  partition: number;
  /** Decimal string, see Int64String. */
  offset: Int64String;
}

/** The outcome of a put or delete: the record's version and a cursor that
 * includes the write (pass it as minCursor to read it back from any gateway).
 * duplicate: the request ID had already landed, so nothing was written and
 * the version is the original write's. requestId: the ID the write was sent
 * with (given or generated). Plain data, like Status. */
export interface WriteResult extends Version {
  cursor: string;
  duplicate: boolean;
  requestId: string;
}

/** The outcome of Client.apply: the version of each operation's record, in
 * request order (empty with validateOnly), a cursor that includes the whole
 * change set, duplicate (the request ID had already landed: the versions are
 * the original ones) and the request ID it was sent with. Plain data, like
 * Status. */
export interface ApplyResult {
  versions: Version[];
  cursor: string;
  duplicate: boolean;
  requestId: string;
}

/** A consistent state of a selector at one cursor, checked against its entry
 * count and digest. */
export interface Snapshot {
  entries: Entry[];
  cursor: string;
  digest: Buffer;
  reason: number;
  reset: boolean;
}
