import { type ChannelCredentials, type ChannelOptions, credentials as grpcCredentials } from "@grpc/grpc-js";

/** The largest message the client accepts, as the Go client: gateways keep
 * snapshot chunks and deltas near 1 MiB, so this only has to fit the largest
 * single entry plus framing. gRPC's own default is 4 MiB. */
export const DEFAULT_MAX_RECEIVE = 16 << 20;

export interface ConnectionOptions {
  /** Channel credentials; default plaintext (loopback and trusted networks). */
  credentials?: ChannelCredentials;
  /** Bytes; default 16 MiB like the Go client. null: gRPC's default (4 MiB),
   * which gateways' chunking fits. */
  maxReceiveMessageLength?: number | null;
  /** Extra @grpc/grpc-js channel options. */
  channelOptions?: ChannelOptions;
}

/** Keepalive pings, as the Go client: a connection silent for 20 s is pinged,
 * and closed when the ping is not answered within 10 s, so a gateway that
 * vanished without closing the connection (host lost, network partition) is
 * left for another instead of waited on until TCP gives up. Gateways refuse
 * pings more often than every 5 s. channelOptions override these. */
export const DEFAULT_KEEPALIVE: ChannelOptions = {
  "grpc.keepalive_time_ms": 20_000,
  "grpc.keepalive_timeout_ms": 10_000,
};

export function channelArgs(o: ConnectionOptions): [ChannelCredentials, ChannelOptions] {
  const opts: ChannelOptions = { ...DEFAULT_KEEPALIVE };
  const max = o.maxReceiveMessageLength === undefined ? DEFAULT_MAX_RECEIVE : o.maxReceiveMessageLength;
  if (max !== null) opts["grpc.max_receive_message_length"] = max;
  return [o.credentials ?? grpcCredentials.createInsecure(), { ...opts, ...o.channelOptions }];
}

export function checkAddrs(addrs: readonly string[]): string[] {
  if (typeof addrs === "string") throw new TypeError("addrs must be an array of addresses, not one string");
  if (!addrs || addrs.length === 0) throw new Error("addrs is empty: name at least one gateway address");
  addrs.forEach((a, i) => {
    if (!a) throw new Error(`addrs[${i}] is empty`);
  });
  return [...addrs];
}

/** The gRPC status code of an error, if it carries one. */
export function grpcCode(err: unknown): number | undefined {
  const c = (err as { code?: unknown } | undefined)?.code;
  return typeof c === "number" ? c : undefined;
}
