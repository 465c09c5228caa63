// Client identity and reports for the fleet view: a port of client/report.go
// (the Go client). Validation of the ClientInfo a Subscription sends, and the
// rejections an application records with Subscription.reject.

import { randomBytes } from "node:crypto";
import type { ClientInfo, Rejection as PbRejection } from "./gen/confgate/v1/config";
import { compareKeys } from "./keyspace";
import type { Entry } from "./types";

/** Report every this many ms by default (Go: DefaultReportInterval). */
export const DEFAULT_REPORT_INTERVAL_MS = 5000;

// Bounds of clientId, service and labels (those of ClientInfo in the
// proto), and of rejections (Go: client/config.go).
const MAX_CLIENT_ID_BYTES = 128;
const MAX_SERVICE_BYTES = 128;
const MAX_LABELS = 16;
const MAX_LABEL_BYTES = 128; // a label's key, and its value
export const MAX_REJECTIONS = 100;
export const MAX_REJECTION_REASON = 1024;

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Whether s has no lone surrogate: whether it is valid UTF-8 on the wire. */
export function wellFormed(s: string): boolean {
  return !LONE_SURROGATE.test(s);
}

function utf8Bytes(what: string, s: unknown): number {
  if (typeof s !== "string") throw new TypeError(`confgate: ${what} must be a string`);
  if (!wellFormed(s)) throw new Error(`confgate: ${what} ${JSON.stringify(s)} is not valid UTF-8`);
  return Buffer.byteLength(s, "utf8");
}

/** Validates the identity a Subscription sends, generating the client ID
 * (16 random bytes, hex) when none is given. Throws. */
export function clientIdentity(clientId?: string, service?: string, labels?: Record<string, string>): ClientInfo {
  const id = clientId || randomBytes(16).toString("hex");
  if (typeof id !== "string") throw new TypeError("confgate: clientId must be a string");
  if (Buffer.byteLength(id, "utf8") > MAX_CLIENT_ID_BYTES) {
    throw new Error(`confgate: clientId is ${Buffer.byteLength(id, "utf8")} bytes, more than ${MAX_CLIENT_ID_BYTES}`);
  }
  for (let i = 0; i < id.length; i++) {
    const c = id.charCodeAt(i);
    if (c <= 0x20 || c > 0x7e) {
      throw new Error(`confgate: clientId has ${JSON.stringify(id[i])} at ${i}: use printable ASCII without spaces`);
    }
  }
  const svc = service ?? "";
  const sb = utf8Bytes("service", svc);
  if (sb > MAX_SERVICE_BYTES) throw new Error(`confgate: service is ${sb} bytes, more than ${MAX_SERVICE_BYTES}`);
  const entries = Object.entries(labels ?? {});
  if (entries.length > MAX_LABELS) throw new Error(`confgate: labels has ${entries.length} labels, more than ${MAX_LABELS}`);
  const out: Record<string, string> = {};
  for (const [k, v] of entries) {
    if (k === "") throw new Error("confgate: labels has an empty key");
    const kb = utf8Bytes("labels key", k);
    if (kb > MAX_LABEL_BYTES) throw new Error(`confgate: labels key ${JSON.stringify(k)} is ${kb} bytes, more than ${MAX_LABEL_BYTES}`);
    const vb = utf8Bytes(`labels[${JSON.stringify(k)}]`, v);
    if (vb > MAX_LABEL_BYTES) throw new Error(`confgate: labels[${JSON.stringify(k)}] is ${vb} bytes, more than ${MAX_LABEL_BYTES}`);
    out[k] = v;
  }
  return { clientId: id, service: svc, labels: out };
}

/** The report interval in ms: undefined or 0 is the default, negative turns
 * reporting off (returned as is). */
export function reportInterval(ms?: number): number {
  if (ms === undefined || ms === 0) return DEFAULT_REPORT_INTERVAL_MS;
  if (Number.isNaN(ms)) throw new Error("confgate: reportIntervalMs is NaN");
  return ms;
}

/** Lone surrogates replaced by U+FFFD, then cut to MAX_REJECTION_REASON
 * bytes of UTF-8 at a character boundary. */
export function cleanReason(reason: string): string {
  const s = String(reason).replace(new RegExp(LONE_SURROGATE.source, "g"), "\uFFFD");
  const b = Buffer.from(s, "utf8");
  if (b.length <= MAX_REJECTION_REASON) return s;
  let n = MAX_REJECTION_REASON;
  while (n > 0 && (b[n] & 0xc0) === 0x80) n--; // not a character's first byte
  return b.subarray(0, n).toString("utf8");
}

export function selects(prefixes: readonly string[], key: string): boolean {
  return prefixes.length === 0 || prefixes.some((p) => key.startsWith(p));
}

interface Rejection {
  /** The key's version when it was rejected; undefined: the view did not
   * hold the key. */
  version?: { partition: number; offset: bigint };
  reason: string;
}

/** The rejections of a view, latest per key, at most MAX_REJECTIONS. */
export class Rejections {
  // In the order of the reject calls: the first key is the oldest.
  private readonly byKey = new Map<string, Rejection>();

  get size(): number {
    return this.byKey.size;
  }

  reject(key: string, current: Entry | undefined, reason: string): void {
    const version = current ? { partition: current.partition, offset: BigInt(current.offset) } : undefined;
    this.byKey.delete(key); // to the end: the newest
    this.byKey.set(key, { version, reason });
    if (this.byKey.size > MAX_REJECTIONS) {
      const oldest = this.byKey.keys().next().value as string;
      this.byKey.delete(oldest);
    }
  }

  accept(key: string): boolean {
    return this.byKey.delete(key);
  }

  /** The rejections still standing against entries, sorted by key (UTF-8
   * bytes); those of keys that changed since are dropped. */
  current(entries: ReadonlyMap<string, Entry>): PbRejection[] {
    const out: PbRejection[] = [];
    for (const [k, r] of [...this.byKey]) {
      const e = entries.get(k);
      const same = e === undefined
        ? r.version === undefined
        : r.version !== undefined && r.version.partition === e.partition && r.version.offset === BigInt(e.offset);
      if (!same) {
        this.byKey.delete(k); // the key changed: the rejection is over
        continue;
      }
      out.push({ key: k, reason: r.reason, version: r.version ? { ...r.version } : undefined });
    }
    return out.sort((a, b) => compareKeys(a.key, b.key));
  }
}
