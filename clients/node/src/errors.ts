// Errors of the client, and the google.rpc.Status details gateways attach to
// failed writes.

import { BinaryReader, BinaryWriter } from "@bufbuild/protobuf/wire";
import { Metadata, type StatusObject, status as Code } from "@grpc/grpc-js";
import { PreconditionFailure } from "./gen/confgate/v1/config";
import { grpcCode } from "./grpc";
import type { Version } from "./types";

export type { Version };

/** The trailing metadata key of a gRPC status with details: a serialized
 * google.rpc.Status. */
export const STATUS_DETAILS_KEY = "grpc-status-details-bin";
const PRECONDITION_FAILURE = "type.googleapis.com/confgate.v1.PreconditionFailure";

/** A key whose precondition failed and its current version (undefined:
 * the key is absent). */
export interface KeyVersion {
  key: string;
  version?: Version;
}

/**
 * A conditional put, delete or apply whose precondition did not hold:
 * nothing was written. keys lists, for each key whose precondition failed,
 * its current version (undefined when it is absent). Like the gRPC error it
 * replaces, it has code (FAILED_PRECONDITION), details and metadata.
 */
export class PreconditionFailedError extends Error {
  readonly code = Code.FAILED_PRECONDITION;
  readonly details: string;
  readonly metadata: Metadata;
  readonly keys: KeyVersion[];

  constructor(details: string, keys: KeyVersion[], metadata: Metadata = new Metadata(), options?: { cause?: unknown }) {
    super(details, options);
    this.name = "PreconditionFailedError";
    this.details = details;
    this.metadata = metadata;
    this.keys = keys;
  }
}

/** google.rpc.Status, decoded by hand (code 1, message 2, details 3 as
 * google.protobuf.Any: type_url 1, value 2): the client does not need the
 * googleapis protos for one message. */
export interface RpcStatus {
  code: number;
  message: string;
  details: { typeUrl: string; value: Uint8Array }[];
}

export function decodeRpcStatus(b: Uint8Array): RpcStatus {
  const r = new BinaryReader(b);
  const st: RpcStatus = { code: 0, message: "", details: [] };
  while (r.pos < r.len) {
    const [field, wire] = r.tag();
    if (field === 1 && wire === 0) st.code = r.int32();
    else if (field === 2 && wire === 2) st.message = r.string();
    else if (field === 3 && wire === 2) {
      const a = new BinaryReader(r.bytes());
      const any: { typeUrl: string; value: Uint8Array } = { typeUrl: "", value: new Uint8Array() };
      while (a.pos < a.len) {
        const [f, w] = a.tag();
        if (f === 1 && w === 2) any.typeUrl = a.string();
        else if (f === 2 && w === 2) any.value = a.bytes();
        else a.skip(w);
      }
      st.details.push(any);
    } else r.skip(wire);
  }
  return st;
}

export function encodeRpcStatus(st: RpcStatus): Uint8Array {
  const w = new BinaryWriter();
  if (st.code) w.uint32(8).int32(st.code);
  if (st.message) w.uint32(18).string(st.message);
  for (const d of st.details) {
    w.uint32(26).fork();
    w.uint32(10).string(d.typeUrl);
    w.uint32(18).bytes(d.value);
    w.join();
  }
  return w.finish();
}

/** A serialized google.rpc.Status carrying a PreconditionFailure (for fake
 * gateways in tests). */
export function preconditionFailureStatus(message: string, keys: KeyVersion[]): Buffer {
  const value = PreconditionFailure.encode({
    keys: keys.map((k) => ({ key: k.key, version: k.version && { partition: k.version.partition, offset: BigInt(k.version.offset) } })),
  }).finish();
  return Buffer.from(encodeRpcStatus({ code: Code.FAILED_PRECONDITION, message, details: [{ typeUrl: PRECONDITION_FAILURE, value }] }));
}

/** The PreconditionFailure detail of a gRPC error, or undefined when it has
 * none (or it does not parse). */
export function preconditionFailure(err: unknown): KeyVersion[] | undefined {
  const md = (err as Partial<StatusObject> | undefined)?.metadata;
  if (!(md instanceof Metadata)) return undefined;
  for (const v of md.get(STATUS_DETAILS_KEY)) {
    if (typeof v === "string") continue;
    try {
      for (const d of decodeRpcStatus(v).details) {
        if (d.typeUrl !== PRECONDITION_FAILURE) continue;
        return PreconditionFailure.decode(d.value).keys.map((k) =>
          k.version ? { key: k.key, version: { partition: k.version.partition, offset: k.version.offset.toString() } } : { key: k.key },
        );
      }
    } catch {
      return undefined;
    }
  }
  return undefined;
}

/** PreconditionFailedError for a FAILED_PRECONDITION answer that carries a
 * PreconditionFailure detail, or to a write that had a precondition (the
 * gateway's message then stands alone); err itself otherwise. */
export function convertWriteError(err: unknown, conditional: boolean): unknown {
  if (grpcCode(err) !== Code.FAILED_PRECONDITION) return err;
  const keys = preconditionFailure(err);
  if (!keys && !conditional) return err;
  const e = err as Partial<StatusObject>;
  return new PreconditionFailedError(e.details || "precondition failed", keys ?? [], e.metadata, { cause: err });
}
