// confgate client for Node.js.
//
//   const { Subscription } = require("@confgate/client");
//   const sub = new Subscription({ addrs: ["127.0.0.1:50051"], prefixes: ["payments/"] });
//   await sub.waitSynced(10_000);
//   console.log(sub.get("payments/db/timeout")?.value.toString());
//
// Subscription keeps a live, resumable local view of a selector; Client makes
// one-shot calls (get, put, delete, snapshot). The generated messages and the
// @grpc/grpc-js service client are exported as `pb`.

export { Client, type ClientOptions, type PutOptions } from "./client";
export { Cursor, type CursorLike } from "./cursor";
export { Digest, entryHash, ready as digestReady } from "./digest";
export { normalizeSelector } from "./keyspace";
export { ProtocolViolation } from "./replica";
export {
  type Logger,
  StreamEnded,
  Subscription,
  SubscriptionClosed,
  type SubscriptionOptions,
  subscribe,
} from "./subscription";
export type { Entry, Event, EventKind, Header, Snapshot, Status, WriteResult } from "./types";
export * as pb from "./gen/confgate/v1/config";
