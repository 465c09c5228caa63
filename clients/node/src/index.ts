// confgate client for Node.js.
//
//   import { Subscription } from "@confgate/client"; // or require("@confgate/client")
//   const sub = new Subscription({ addrs: ["127.0.0.1:50051"], prefixes: ["payments/"] });
//   await sub.waitSynced(10_000);
//   console.log(sub.get("payments/db/timeout")?.value.toString());
//   for await (const ev of sub) console.log(ev.kind, ev.key, ev.cursor);
//
// Subscription keeps a live, resumable local view of a selector; Client makes
// one-shot calls (get, put, delete, apply, snapshot). The generated messages and the
// @grpc/grpc-js service client are exported as `pb`.

export {
  type ApplyOptions,
  Client,
  type ClientOptions,
  type DeleteOptions,
  type Operation,
  type Precondition,
  type PutOptions,
  type VersionLike,
  type WriteOptions,
} from "./client";
export { Cursor, type CursorLike } from "./cursor";
export { Digest, entryHash, ready as digestReady } from "./digest";
export { type KeyVersion, PreconditionFailedError, type Version } from "./errors";
export { normalizeSelector } from "./keyspace";
export { ProtocolViolation } from "./replica";
export { DEFAULT_REPORT_INTERVAL_MS } from "./report";
export { DEFAULT_STATE_FILE_INTERVAL_MS, StateFileError } from "./statefile";
export {
  DEFAULT_MAX_BUFFERED_EVENTS,
  type EventsOptions,
  type Logger,
  StreamEnded,
  Subscription,
  SubscriptionClosed,
  type SubscriptionEvents,
  type SubscriptionOptions,
  subscribe,
} from "./subscription";
export type { ApplyResult, Entry, Event, EventKind, Header, Int64String, Snapshot, Status, WriteResult } from "./types";
export * as pb from "./gen/confgate/v1/config";
