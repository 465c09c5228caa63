// Client: one-shot calls (get, put, delete, apply, snapshot) against any of
// several interchangeable gateways.

import { randomUUID } from "node:crypto";
import { type CallOptions, type ClientUnaryCall, Metadata, type ServiceError, status as Code } from "@grpc/grpc-js";
import { Cursor, type CursorLike, cursorBytes } from "./cursor";
import { Digest, ready as digestReady } from "./digest";
import { type Version, convertWriteError } from "./errors";
import {
  ApplyRequest,
  type ApplyResponse,
  ConfigServiceClient,
  DeleteRequest,
  GetRequest,
  type DeleteResponse,
  type GetResponse,
  GetSnapshotRequest,
  type GetSnapshotResponse,
  type Operation as PbOperation,
  type Precondition as PbPrecondition,
  PutRequest,
  type PutResponse,
} from "./gen/confgate/v1/config";
import { type ConnectionOptions, channelArgs, checkAddrs, grpcCode } from "./grpc";
import { normalizeSelector } from "./keyspace";
import { ProtocolViolation } from "./replica";
import { type ApplyResult, type Entry, type Snapshot, type WriteResult, entryFromProto } from "./types";

export interface ClientOptions extends ConnectionOptions {
  /** Gateway addresses ("host:port" or any gRPC target). */
  addrs: string[];
  /** Bound on each call (per address), ms. Default 10 s. */
  timeoutMs?: number;
}

/** A version given to ifVersion: an Entry, a WriteResult or a Version
 * fits. The offset may be a decimal string (as this client returns it), a
 * bigint, or a number up to Number.MAX_SAFE_INTEGER. */
export interface VersionLike {
  partition: number;
  offset: string | bigint | number;
}

/** An optional precondition of a write: ifAbsent (the key is absent: never
 * written, or deleted) or ifVersion (the key is live at exactly this
 * version), not both. When it does not hold nothing is written and the call
 * rejects with PreconditionFailedError. */
export interface Precondition {
  ifAbsent?: boolean;
  ifVersion?: VersionLike;
}

/** Makes a write retry-safe: up to 128 printable ASCII characters. When
 * none is given the client generates one per call (crypto.randomUUID), and
 * a retry of the call sends the same one: a write whose ID already landed
 * is answered with the original result and duplicate: true. */
export interface WriteOptions {
  requestId?: string;
  /** Also wait until this gateway applied the write. */
  waitApplied?: boolean;
}

export interface PutOptions extends Precondition, WriteOptions {
  /** Stored as the record's "content-type" header. */
  contentType?: string;
  /** Extra record headers. */
  headers?: { key: string; value: string | Uint8Array }[];
}

export interface DeleteOptions extends Precondition, WriteOptions {}

/** One put (value set) or delete (delete: true) of a change set. */
export interface Operation extends Precondition {
  key: string;
  /** Delete the key; value, contentType and headers must then be unset. */
  delete?: boolean;
  value?: string | Uint8Array;
  contentType?: string;
  headers?: { key: string; value: string | Uint8Array }[];
}

export interface ApplyOptions extends WriteOptions {
  /** Check every rule, schema and precondition against the gateway's
   * current state and answer as apply would, without writing. */
  validateOnly?: boolean;
}

type UnaryMethod<Req, Resp> = (
  req: Req,
  md: Metadata,
  opts: Partial<CallOptions>,
  cb: (err: ServiceError | null, resp: Resp) => void,
) => ClientUnaryCall;

const toBuf = (v: string | Uint8Array): Buffer => (typeof v === "string" ? Buffer.from(v, "utf8") : Buffer.from(v));
const text = (c: Uint8Array): string => Buffer.from(c).toString("base64url");
const version = (v: { partition: number; offset: bigint } | undefined): Version => ({
  partition: v?.partition ?? 0,
  offset: (v?.offset ?? 0n).toString(),
});

/** offset as a bigint, or undefined when it is no non-negative integer
 * (a number past 2^53 is refused: it may not be the offset meant). */
function offsetOf(offset: unknown): bigint | undefined {
  let o: bigint;
  if (typeof offset === "bigint") o = offset;
  else if (typeof offset === "number" && Number.isSafeInteger(offset)) o = BigInt(offset);
  else if (typeof offset === "string" && /^[0-9]{1,19}$/.test(offset)) o = BigInt(offset);
  else return undefined;
  return o >= 0n && o < 1n << 63n ? o : undefined;
}

function precondition(p: Precondition, what: string): PbPrecondition | undefined {
  if (p.ifAbsent && p.ifVersion) throw new Error(`${what}: ifAbsent and ifVersion exclude each other, give one`);
  if (p.ifAbsent) return { condition: { $case: "absent", absent: true } };
  if (!p.ifVersion) return undefined;
  const { partition } = p.ifVersion;
  const offset = offsetOf(p.ifVersion.offset);
  if (!Number.isInteger(partition) || partition < 0 || partition > 0x7fffffff || offset === undefined) {
    throw new Error(`${what}: ifVersion ${partition}:${p.ifVersion.offset} is no version (non-negative 32-bit partition, 64-bit offset)`);
  }
  return { condition: { $case: "version", version: { partition, offset } } };
}

function requestId(id: string | undefined): string {
  if (id === undefined) return randomUUID();
  if (typeof id !== "string") throw new TypeError("requestId must be a string");
  return id;
}

function operation(o: Operation, i: number): PbOperation {
  if (!o || typeof o.key !== "string") throw new TypeError(`operations[${i}] has no key`);
  return {
    key: o.key,
    delete: o.delete ?? false,
    value: o.value === undefined ? Buffer.alloc(0) : toBuf(o.value),
    contentType: o.contentType ?? "",
    headers: (o.headers ?? []).map((h) => ({ key: h.key, value: toBuf(h.value) })),
    precondition: precondition(o, `operations[${i}] (${JSON.stringify(o.key)})`),
  };
}

/**
 * Unary calls to confgate gateways. A call goes to the first address; when
 * that gateway is UNAVAILABLE (down, not caught up, draining) it is retried
 * on the next one. Writes (put, delete, apply) carry a request ID, given or
 * generated per call and the same on every retry, so a write retried that
 * way lands once: when the first attempt had landed, the gateway answers
 * with its result and duplicate: true.
 */
export class Client {
  private readonly clients: ConfigServiceClient[];
  private readonly timeoutMs: number;

  constructor(opts: ClientOptions) {
    const addrs = checkAddrs(opts.addrs);
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    const args = channelArgs(opts, addrs);
    this.clients = addrs.map((a) => new ConfigServiceClient(a, ...args));
  }

  close(): void {
    for (const c of this.clients) c.close();
  }

  private deadline(): Date {
    return new Date(Date.now() + this.timeoutMs);
  }

  private async call<T>(fn: (c: ConfigServiceClient) => Promise<T>): Promise<T> {
    let last: unknown;
    for (const c of this.clients) {
      try {
        return await fn(c);
      } catch (e) {
        if (grpcCode(e) !== Code.UNAVAILABLE) throw e;
        last = e;
      }
    }
    throw last;
  }

  private unary<Req, Resp>(fn: UnaryMethod<Req, Resp>, req: Req): Promise<Resp> {
    return new Promise((resolve, reject) => {
      fn(req, new Metadata(), { deadline: this.deadline() }, (err, resp) => (err ? reject(err) : resolve(resp)));
    });
  }

  /** The entry for key, or undefined when it does not exist. With minCursor
   * (e.g. a put's cursor) the gateway first waits, bounded, until it has
   * applied it: read-your-writes from any gateway. */
  async get(key: string, opts: { minCursor?: CursorLike } = {}): Promise<Entry | undefined> {
    const req = GetRequest.fromPartial({ key, minCursor: cursorBytes(opts.minCursor) });
    try {
      const resp = await this.call((c) => this.unary<GetRequest, GetResponse>(c.get.bind(c), req));
      return entryFromProto(resp.entry!);
    } catch (e) {
      if (grpcCode(e) === Code.NOT_FOUND) return undefined;
      throw e;
    }
  }

  private async write<T>(fn: (c: ConfigServiceClient) => Promise<T>, conditional: boolean): Promise<T> {
    try {
      return await this.call(fn);
    } catch (e) {
      throw convertWriteError(e, conditional);
    }
  }

  /** Writes value to key; resolves once Kafka acknowledged the record
   * (acks=all). With ifAbsent or ifVersion, only if the key's current state
   * matches: otherwise nothing is written and it rejects with
   * PreconditionFailedError, naming the key's current version. */
  async put(key: string, value: string | Uint8Array, opts: PutOptions = {}): Promise<WriteResult> {
    const req = PutRequest.fromPartial({
      key,
      value: toBuf(value),
      contentType: opts.contentType ?? "",
      headers: (opts.headers ?? []).map((h) => ({ key: h.key, value: toBuf(h.value) })),
      waitApplied: opts.waitApplied ?? false,
      precondition: precondition(opts, "put"),
      requestId: requestId(opts.requestId),
    });
    const resp = await this.write((c) => this.unary<PutRequest, PutResponse>(c.put.bind(c), req), !!req.precondition);
    return { ...version(resp.version), cursor: text(resp.cursor), duplicate: resp.duplicate, requestId: req.requestId };
  }

  /** Writes a tombstone for key; ifAbsent, ifVersion and requestId as for
   * put. */
  async delete(key: string, opts: DeleteOptions = {}): Promise<WriteResult> {
    const req = DeleteRequest.fromPartial({
      key,
      waitApplied: opts.waitApplied ?? false,
      precondition: precondition(opts, "delete"),
      requestId: requestId(opts.requestId),
    });
    const resp = await this.write((c) => this.unary<DeleteRequest, DeleteResponse>(c.delete.bind(c), req), !!req.precondition);
    return { ...version(resp.version), cursor: text(resp.cursor), duplicate: resp.duplicate, requestId: req.requestId };
  }

  /**
   * Writes a change set, all or nothing: puts and deletes of several keys
   * (each at most once), each with an optional precondition. No subscriber
   * or snapshot ever sees part of it. When a precondition fails nothing is
   * written and it rejects with PreconditionFailedError, listing every key
   * whose precondition failed with its current version.
   *
   *   await client.apply([
   *     { key: "app/a", value: "1", ifAbsent: true },
   *     { key: "app/b", value: "2", ifVersion: entry },
   *     { key: "app/c", delete: true },
   *   ]);
   */
  async apply(ops: Operation[], opts: ApplyOptions = {}): Promise<ApplyResult> {
    if (!Array.isArray(ops)) throw new TypeError("apply takes an array of operations");
    const req = ApplyRequest.fromPartial({
      operations: ops.map(operation),
      requestId: requestId(opts.requestId),
      waitApplied: opts.waitApplied ?? false,
      validateOnly: opts.validateOnly ?? false,
    });
    const conditional = req.operations.some((o) => o.precondition);
    const resp = await this.write((c) => this.unary<ApplyRequest, ApplyResponse>(c.apply.bind(c), req), conditional);
    return { versions: resp.versions.map(version), cursor: text(resp.cursor), duplicate: resp.duplicate, requestId: req.requestId };
  }

  /** The consistent state of a selector at one cursor, in key order. Its
   * entry count and digest are checked (ProtocolViolation when they do not
   * match what arrived). */
  async snapshot(prefixes: string[] = [], opts: { minCursor?: CursorLike } = {}): Promise<Snapshot> {
    await digestReady();
    const req = GetSnapshotRequest.fromPartial({
      selector: { prefixes: normalizeSelector(prefixes) },
      minCursor: cursorBytes(opts.minCursor),
    });
    return this.call(async (c) => {
      const entries: Entry[] = [];
      const d = new Digest();
      const stream = c.getSnapshot(req, { deadline: this.deadline() });
      try {
        for await (const m of stream as AsyncIterable<GetSnapshotResponse>) {
          switch (m.message?.$case) {
            case "chunk":
              for (const pe of m.message.chunk.entries) {
                const e = entryFromProto(pe);
                entries.push(e);
                d.add(e.key, e.value, e.partition, BigInt(e.offset));
              }
              break;
            case "end": {
              const end = m.message.end;
              if (BigInt(end.entryCount) !== BigInt(entries.length)) {
                throw new ProtocolViolation(`snapshot has ${entries.length} entries, its end says ${end.entryCount}`, true);
              }
              if (end.digest.length > 0 && !d.toBytes().equals(end.digest)) {
                throw new ProtocolViolation(
                  `snapshot digest ${Buffer.from(end.digest).toString("hex")} does not match the received entries (${d.toBytes().toString("hex")})`,
                  true,
                );
              }
              Cursor.decode(end.cursor);
              return { entries, cursor: text(end.cursor), digest: Buffer.from(end.digest), reason: end.reason, reset: end.reset };
            }
          }
        }
      } finally {
        stream.cancel();
      }
      throw new ProtocolViolation("snapshot stream ended without its end", true);
    });
  }
}
