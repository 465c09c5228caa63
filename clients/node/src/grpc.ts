import { statSync, readFileSync } from "node:fs";
import { isIP } from "node:net";
import {
  type ChannelCredentials,
  type ChannelOptions,
  type ClientOptions,
  InterceptingCall,
  type Interceptor,
  credentials as grpcCredentials,
} from "@grpc/grpc-js";

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
  /** A bearer token sent on every call as "authorization: Bearer <token>"
   * metadata, for gateways run with --auth-tokens or --auth-jwks (`confgate
   * token new` makes static ones). Not together with tokenFile. */
  token?: string;
  /** A file holding the token instead, re-read when it changes (checked at
   * most once a second), so rotated Kubernetes or SPIFFE tokens are used
   * without a restart: a stream keeps the token it was opened with, its
   * reconnects send the new one. Missing or invalid at construction throws;
   * later the last good token stays in use. */
  tokenFile?: string;
  /** Send the token over plaintext to gateways that are not on this host.
   * By default a token needs TLS credentials, except to loopback addresses
   * (127.0.0.0/8, ::1, localhost); the constructor throws otherwise. */
  insecureToken?: boolean;
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

/** The credentials and client options of every connection to addrs: build
 * once per Client or Subscription (a token file's state lives in them). */
export function channelArgs(o: ConnectionOptions, addrs: readonly string[] = []): [ChannelCredentials, ClientOptions] {
  const opts: ChannelOptions = { ...DEFAULT_KEEPALIVE };
  const max = o.maxReceiveMessageLength === undefined ? DEFAULT_MAX_RECEIVE : o.maxReceiveMessageLength;
  if (max !== null) opts["grpc.max_receive_message_length"] = max;
  const client: ClientOptions = { ...opts, ...o.channelOptions };
  const src = tokenSource(o, addrs);
  if (src) client.interceptors = [tokenInterceptor(src)];
  return [o.credentials ?? grpcCredentials.createInsecure(), client];
}

// Bearer tokens. The token travels as "authorization: Bearer <token>"
// metadata added by a client interceptor: grpc-js refuses call credentials
// on plaintext channels, and loopback gateways are often plaintext.

/** Least ms between two checks of a token file. */
export const TOKEN_FILE_CHECK_MS = 1000;
const MAX_TOKEN_FILE = 64 << 10;

/** Throws saying what makes tok unfit for an authorization header, without
 * quoting it: one word of visible ASCII. */
export function checkToken(tok: string): void {
  if (!tok) throw new Error("the token is empty");
  if (/^bearer /i.test(tok)) throw new Error('the token starts with "Bearer ": give the token alone, the prefix is added');
  for (let i = 0; i < tok.length; i++) {
    const c = tok.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f) {
      throw new Error(`the token has a space, control or non-ASCII character at offset ${i}: a bearer token is one word of visible ASCII`);
    }
  }
}

/** A fixed token, or one kept in a file and re-read when the file changes
 * (identity, size or modification time). A file that becomes unreadable or
 * invalid leaves the last good token in use, reported once to onError. */
export class TokenSource {
  private tok = "";
  private stamp = "";
  private checked = 0;
  private lastError = "";

  constructor(
    token: string | undefined,
    private readonly file: string | undefined,
    private readonly now: () => number = Date.now,
    private readonly onError: (msg: string) => void = (m) => console.warn(`confgate: ${m}`),
  ) {
    if (token && file) throw new Error("token and tokenFile exclude each other: give one");
    if (!token && !file) throw new Error("no token and no tokenFile given");
    if (token) {
      checkToken(token);
      this.tok = token;
    } else {
      [this.tok, this.stamp] = this.read(); // throws: no good token yet
      this.checked = now();
    }
  }

  private read(): [string, string] {
    const path = this.file as string;
    const st = statSync(path, { bigint: true });
    const stamp = `${st.dev}/${st.ino}/${st.size}/${st.mtimeNs}`;
    if (stamp === this.stamp && this.tok) return [this.tok, stamp];
    if (st.size > BigInt(MAX_TOKEN_FILE)) throw new Error(`token file ${path} is ${st.size} bytes, more than a token file may hold`);
    const tok = readFileSync(path, "latin1").trim();
    try {
      checkToken(tok);
    } catch (e) {
      throw new Error(`token file ${path}: ${(e as Error).message}`);
    }
    return [tok, stamp];
  }

  token(): string {
    if (!this.file) return this.tok;
    const now = this.now();
    if (now - this.checked < TOKEN_FILE_CHECK_MS && now >= this.checked) return this.tok;
    this.checked = now;
    try {
      [this.tok, this.stamp] = this.read();
      this.lastError = "";
    } catch (e) {
      const msg = (e as Error).message;
      if (msg !== this.lastError) this.onError(`token file unusable, still sending the token read from it before: ${msg}`);
      this.lastError = msg;
    }
    return this.tok;
  }
}

function tokenInterceptor(src: TokenSource): Interceptor {
  return (options, nextCall) =>
    new InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.set("authorization", `Bearer ${src.token()}`);
        next(metadata, listener);
      },
    });
}

/** Whether a gRPC target is on this host: 127.0.0.0/8, ::1, localhost or a
 * Unix socket. Names are not resolved. */
export function loopbackTarget(target: string): boolean {
  if (target.startsWith("unix:") || target.startsWith("unix-abstract:")) return true;
  const i = target.indexOf(":///");
  if (i >= 0) target = target.slice(i + 4);
  let host = target;
  if (target.startsWith("[")) host = target.slice(1, target.indexOf("]") >>> 0);
  else if (target.split(":").length === 2) host = target.slice(0, target.lastIndexOf(":"));
  if (host.toLowerCase() === "localhost") return true;
  if (isIP(host) === 4) return host.startsWith("127.");
  return isIP(host) === 6 && (host === "::1" || host === "0:0:0:0:0:0:0:1");
}

/** The token to send, or undefined; throws on plaintext to a gateway that
 * is not on this host unless insecureToken. */
export function tokenSource(o: ConnectionOptions, addrs: readonly string[]): TokenSource | undefined {
  if (!o.token && !o.tokenFile) return undefined;
  if (!o.credentials?._isSecure() && !o.insecureToken) {
    for (const a of addrs) {
      if (!loopbackTarget(a)) {
        throw new Error(
          `refusing to send the token in plaintext to ${a}: pass TLS credentials (grpc.credentials.createSsl(...)), or insecureToken: true on a network you trust`,
        );
      }
    }
  }
  return new TokenSource(o.token, o.tokenFile);
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
