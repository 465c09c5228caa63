import type { Entry as PbEntry } from "./gen/confgate/v1/config";

/** A Kafka record header carried with an entry. */
export interface Header {
  key: string;
  value: Buffer;
}

/**
 * One configuration key with its value, version and metadata. (partition,
 * offset) is the entry's version: the Kafka position of the record that set
 * it. Versions of one key only grow. Treat entries as read-only.
 */
export interface Entry {
  readonly key: string;
  readonly value: Buffer;
  readonly partition: number;
  readonly offset: bigint;
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
    offset: e.version.offset,
    contentType: e.contentType,
    headers: Object.freeze(e.headers.map((h) => Object.freeze({ key: h.key, value: Buffer.from(h.value) }))),
  });
}

/**
 * "put": key was set to entry. "delete": key was deleted. "snapshot": the
 * first snapshot was applied, the view is synced. "reset": a later snapshot
 * replaced the whole view (keys may have appeared, changed or disappeared
 * without individual events).
 */
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

export type EventKind = "put" | "delete" | "snapshot" | "reset";

/** One change to a Subscription's view, passed to onChange. */
export interface Event {
  kind: EventKind;
  /** The changed key (put, delete); "" otherwise. */
  key: string;
  /** The new entry (put); undefined otherwise. */
  entry?: Entry;
  /** The view's cursor (text form) once the message carrying the change was applied. */
  cursor: string;
}

/** The connection state of a Subscription. */
export interface Status {
  /** A stream to a gateway delivers messages. */
  connected: boolean;
  /** The gateway of the current stream, or of the last attempt. */
  addr: string;
  /** The view may be behind the topic: not synced yet, disconnected (it
   * serves the last-known-good state), or the gateway said it has not heard
   * from Kafka recently. */
  stale: boolean;
  /** The gateway's lag behind the topic, from the last progress message. */
  lagRecords: bigint;
  /** Stream attempts after the first one. */
  reconnects: number;
  /** Snapshots that replaced an existing view. */
  resets: number;
  /** What ended the most recent failed stream (kept after a successful
   * reconnect), or the permanent error that stopped the subscription. */
  lastError?: Error;
}

/** The outcome of a put or delete: the record's version and a cursor that
 * includes the write (pass it as minCursor to read it back from any gateway).
 * duplicate: the request ID had already landed, so nothing was written and
 * the version is the original write's. requestId: the ID the write was sent
 * with (given or generated). */
export interface WriteResult {
  partition: number;
  offset: bigint;
  cursor: string;
  duplicate: boolean;
  requestId: string;
}

/** The outcome of Client.apply: the version of each operation's record, in
 * request order (empty with validateOnly), a cursor that includes the whole
 * change set, duplicate (the request ID had already landed: the versions are
 * the original ones) and the request ID it was sent with. */
export interface ApplyResult {
  versions: { partition: number; offset: bigint }[];
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
