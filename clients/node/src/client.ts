// Client: one-shot calls (get, put, delete, snapshot) against any of several
// interchangeable gateways.

import { type CallOptions, type ClientUnaryCall, Metadata, type ServiceError, status as Code } from "@grpc/grpc-js";
import { Cursor, type CursorLike, cursorBytes } from "./cursor";
import { Digest, ready as digestReady } from "./digest";
import {
  ConfigServiceClient,
  DeleteRequest,
  GetRequest,
  type DeleteResponse,
  type GetResponse,
  GetSnapshotRequest,
  type GetSnapshotResponse,
  PutRequest,
  type PutResponse,
} from "./gen/confgate/v1/config";
import { type ConnectionOptions, channelArgs, checkAddrs, grpcCode } from "./grpc";
import { normalizeSelector } from "./keyspace";
import { ProtocolViolation } from "./replica";
import { type Entry, type Snapshot, type WriteResult, entryFromProto } from "./types";

export interface ClientOptions extends ConnectionOptions {
  /** Gateway addresses ("host:port" or any gRPC target). */
  addrs: string[];
  /** Bound on each call (per address), ms. Default 10 s. */
  timeoutMs?: number;
}

export interface PutOptions {
  /** Stored as the record's "content-type" header. */
  contentType?: string;
  /** Extra record headers. */
  headers?: { key: string; value: string | Uint8Array }[];
  /** Also wait until this gateway applied the write. */
  waitApplied?: boolean;
}

type UnaryMethod<Req, Resp> = (
  req: Req,
  md: Metadata,
  opts: Partial<CallOptions>,
  cb: (err: ServiceError | null, resp: Resp) => void,
) => ClientUnaryCall;

const toBuf = (v: string | Uint8Array): Buffer => (typeof v === "string" ? Buffer.from(v, "utf8") : Buffer.from(v));
const text = (c: Uint8Array): string => Buffer.from(c).toString("base64url");

/**
 * Unary calls to confgate gateways. A call goes to the first address; when
 * that gateway is UNAVAILABLE (down, not caught up, draining) it is retried
 * on the next one. A put or delete retried that way may be written twice;
 * the later record wins and holds the same value.
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

  /** Writes value to key; resolves once Kafka acknowledged the record
   * (acks=all). */
  async put(key: string, value: string | Uint8Array, opts: PutOptions = {}): Promise<WriteResult> {
    const req = PutRequest.fromPartial({
      key,
      value: toBuf(value),
      contentType: opts.contentType ?? "",
      headers: (opts.headers ?? []).map((h) => ({ key: h.key, value: toBuf(h.value) })),
      waitApplied: opts.waitApplied ?? false,
    });
    const resp = await this.call((c) => this.unary<PutRequest, PutResponse>(c.put.bind(c), req));
    return { partition: resp.version!.partition, offset: resp.version!.offset, cursor: text(resp.cursor) };
  }

  /** Writes a tombstone for key. */
  async delete(key: string, opts: { waitApplied?: boolean } = {}): Promise<WriteResult> {
    const req = DeleteRequest.fromPartial({ key, waitApplied: opts.waitApplied ?? false });
    const resp = await this.call((c) => this.unary<DeleteRequest, DeleteResponse>(c.delete.bind(c), req));
    return { partition: resp.version!.partition, offset: resp.version!.offset, cursor: text(resp.cursor) };
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
                d.add(e.key, e.value, e.partition, e.offset);
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
