// Subscription: a resumable subscription to a selector that keeps a local,
// always-readable view of the selected entries. A port of the Go client
// (client/ in the Go module), with the same semantics:
//
// - one Subscribe stream to one gateway at a time builds the view from
//   snapshots, applies deltas and follows progress;
// - on any failure it backs off (exponential, full jitter) and resumes on the
//   next address with the last applied cursor;
// - it never goes backwards: a change not newer than the view's version of
//   its key is ignored, and a gateway that sends a cursor behind the view's
//   (same topic, not a flagged reset) is dropped, never applied;
// - it never shows a half-applied state: a snapshot replaces the view only at
//   its SnapshotEnd, once its entry count and digest check out; a delta is
//   applied whole (Node runs it in one tick);
// - it keeps the last-known-good state while no gateway answers;
// - it tells the gateways what it holds, for the fleet view: every Subscribe
//   carries the client's identity, and the view reports its cursor and
//   digest through the gateway of its stream (client/report.go).

import { type ClientReadableStream, type ClientUnaryCall, Metadata, status as Code } from "@grpc/grpc-js";
import { ready as digestReady } from "./digest";
import {
  type ClientInfo,
  ConfigServiceClient,
  ReportRequest,
  SubscribeRequest,
  type SubscribeResponse,
} from "./gen/confgate/v1/config";
import { type ConnectionOptions, channelArgs, checkAddrs, grpcCode } from "./grpc";
import type { ChannelCredentials, ClientOptions } from "@grpc/grpc-js";
import { compareKeys, normalizeSelector } from "./keyspace";
import { ProtocolViolation, Replica, type Result, Session } from "./replica";
import { Rejections, cleanReason, clientIdentity, reportInterval, selects, wellFormed } from "./report";
import type { Entry, Event, Status } from "./types";

export const DEFAULT_BACKOFF_MIN_MS = 100;
export const DEFAULT_BACKOFF_MAX_MS = 10_000;

export interface SubscriptionOptions extends ConnectionOptions {
  /** Gateway addresses ("host:port" or any gRPC target). Gateways are
   * interchangeable: the client starts at a random one (unless shuffle is
   * false) and moves to the next after every lost stream. */
  addrs: string[];
  /** The selector. Empty, or "" among them, selects every key. Validated and
   * normalized by the gateways' rules. */
  prefixes?: string[];
  /** Called with each change, in order, after the view was updated. While it
   * runs no further messages are applied, so it should return quickly. An
   * exception it throws is logged and ignored. */
  onChange?: (e: Event) => void;
  /** The wait before reconnecting is a uniform draw in
   * [0, min(backoffMaxMs, backoffMinMs * 2^n)] ("full jitter"). The exponent
   * resets once a stream delivered messages and stayed up for backoffMaxMs.
   * Defaults 100 ms and 10 s. */
  backoffMinMs?: number;
  backoffMaxMs?: number;
  /** Default true. */
  shuffle?: boolean;
  /** Receives connection changes and protocol violations. Default: nothing
   * below warn, console.warn for warnings. */
  logger?: Logger;
  /** Identifies this process in the fleet view (confgate fleet, GetFleet),
   * sent with every Subscribe and every report. Up to 128 printable ASCII
   * characters without spaces. Default: one generated per Subscription (16
   * random bytes, hex), kept across reconnects (see the clientId getter). */
  clientId?: string;
  /** The service this process belongs to, e.g. "payments"; up to 128 bytes
   * of UTF-8. */
  service?: string;
  /** Free labels (version, zone, host): at most 16, keys not empty, keys and
   * values up to 128 bytes of UTF-8. Copied. */
  labels?: Record<string, string>;
  /** Ms between two reports of the view's cursor and digest (the Report
   * call) to the gateway of its stream. The view also reports at once after
   * a snapshot or delta, a reconnect, reject() or accept(), but at most
   * every reportIntervalMs/5. One report at a time; a gateway that answers
   * UNIMPLEMENTED (no fleet view) gets no more reports until the next
   * reconnect. Default (undefined or 0): 5000; negative: no reports
   * (Subscribe still carries the identity). */
  reportIntervalMs?: number;
}

export interface Logger {
  info(msg: string): void;
  warn(msg: string): void;
  /** Optional: failed reports, a gateway that takes none. */
  debug?(msg: string): void;
}

const defaultLogger: Logger = { info: () => {}, warn: (m) => console.warn(`confgate: ${m}`) };

/** waitSynced was interrupted because the subscription was closed. */
export class SubscriptionClosed extends Error {
  constructor() {
    super("confgate: subscription closed");
    this.name = "SubscriptionClosed";
  }
}

/** The gateway ended the stream without an error. */
export class StreamEnded extends Error {
  constructor(addr: string) {
    super(`gateway ${addr} closed the stream`);
    this.name = "StreamEnded";
  }
}

/**
 * A live view of the entries whose keys start with one of the prefixes.
 * Starts at once; await waitSynced() for the first snapshot. Reads never
 * wait for the network and see the last applied state.
 */
export class Subscription {
  private readonly addrs: string[];
  private readonly selector: string[];
  private readonly backoffMin: number;
  private readonly backoffMax: number;
  private readonly log: Logger;
  private readonly replica = new Replica();
  private st = {
    connected: false,
    addr: "",
    gatewayStale: false,
    lag: 0n,
    reconnects: 0,
    resets: 0,
    lastError: undefined as Error | undefined,
  };
  private synced = false;
  private stopError?: Error;
  private closing = false;
  private call?: ClientReadableStream<SubscribeResponse>;
  private wake?: () => void;
  private waiters = new Set<() => void>();
  private readonly done: Promise<void>;
  private running = true;

  private readonly channel: [ChannelCredentials, ClientOptions];
  private readonly client: ClientInfo;
  private readonly reportInterval: number;
  private readonly rejections = new Rejections();
  // A report is asked for; kept across streams, like the Go client's kick
  // channel. kickWaiter wakes the reporter of the current stream.
  private kicked = false;
  private kickWaiter?: () => void;

  constructor(private readonly opts: SubscriptionOptions) {
    this.addrs = checkAddrs(opts.addrs);
    this.channel = channelArgs(opts, this.addrs);
    this.selector = normalizeSelector(opts.prefixes ?? []);
    this.client = clientIdentity(opts.clientId, opts.service, opts.labels);
    this.reportInterval = reportInterval(opts.reportIntervalMs);
    let min = opts.backoffMinMs ?? 0;
    let max = opts.backoffMaxMs ?? 0;
    if (min < 0 || max < 0) throw new Error("backoffMinMs and backoffMaxMs must not be negative");
    if (min === 0) min = DEFAULT_BACKOFF_MIN_MS;
    if (max === 0) max = Math.max(DEFAULT_BACKOFF_MAX_MS, min);
    if (min > max) throw new Error(`backoffMinMs (${min}) is greater than backoffMaxMs (${max})`);
    this.backoffMin = min;
    this.backoffMax = max;
    this.log = opts.logger ?? defaultLogger;
    if (opts.shuffle ?? true) {
      for (let i = this.addrs.length - 1; i > 0; i--) {
        const j = Math.floor(Math.random() * (i + 1));
        [this.addrs[i], this.addrs[j]] = [this.addrs[j], this.addrs[i]];
      }
    }
    this.done = this.run().finally(() => {
      this.running = false;
      this.st.connected = false;
      this.notify();
    });
  }

  // Reading the view.

  /** The entry for key, or undefined. */
  get(key: string): Entry | undefined {
    return this.replica.entries.get(key);
  }

  has(key: string): boolean {
    return this.replica.entries.has(key);
  }

  /** The number of entries in the view. */
  get size(): number {
    return this.replica.entries.size;
  }

  /** The entries whose keys start with prefix, in key order (by UTF-8 bytes,
   * like the gateways). */
  entries(prefix = ""): Entry[] {
    const out: Entry[] = [];
    for (const [k, e] of this.replica.entries) if (k.startsWith(prefix)) out.push(e);
    return out.sort((a, b) => compareKeys(a.key, b.key));
  }

  /** The last applied cursor in its text form (the one the CLI prints and
   * accepts), or "" before the first snapshot. */
  get cursor(): string {
    return this.replica.cursor?.toString() ?? "";
  }

  /** The state digest of the view's entries (16 bytes): the value a gateway
   * computes for this selector at the view's cursor. */
  get digest(): Buffer {
    return this.replica.digest.toBytes();
  }

  /** The normalized selector. */
  get prefixes(): string[] {
    return [...this.selector];
  }

  /** The client ID sent to the gateways: the one given, or the one
   * generated for this Subscription. */
  get clientId(): string {
    return this.client.clientId;
  }

  /**
   * Records that the application refuses the current value of key, like an
   * xDS NACK: the version the view holds now, or the key's absence, with a
   * reason for operators. It is sent with every report (one soon after the
   * call) and shows in the fleet view until the key changes in the view (a
   * newer version, a deletion, or a snapshot that replaced it) or
   * accept(key) clears it. A second reject of a key replaces the first; the
   * 100 most recently rejected keys are kept. A reason over 1 KiB is cut. A
   * key outside the selector is ignored. The view still serves the rejected
   * value.
   */
  reject(key: string, reason: string): void {
    if (typeof key !== "string" || key === "" || !wellFormed(key) || !selects(this.selector, key)) return;
    this.rejections.reject(key, this.replica.entries.get(key), cleanReason(reason));
    this.kickReport();
  }

  /** Clears a rejection of key made with reject(). A key without a
   * rejection is ignored. */
  accept(key: string): void {
    if (this.rejections.accept(key)) this.kickReport();
  }

  /** False once the subscription stopped (close(), or a permanent error). */
  get isRunning(): boolean {
    return this.running;
  }

  status(): Status {
    const s = this.st;
    return {
      connected: s.connected,
      addr: s.addr,
      stale: !s.connected || !this.synced || s.gatewayStale,
      lagRecords: s.lag,
      reconnects: s.reconnects,
      resets: s.resets,
      lastError: s.lastError,
    };
  }

  // Lifecycle.

  /**
   * Resolves once the first snapshot was applied. Rejects after timeoutMs,
   * with the permanent error that stopped the subscription (a gRPC error,
   * INVALID_ARGUMENT for a refused selector), or with SubscriptionClosed.
   */
  waitSynced(timeoutMs?: number): Promise<void> {
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const check = (): boolean => {
        if (this.synced) {
          resolve();
        } else if (!this.running) {
          reject(this.stopError ?? new SubscriptionClosed());
        } else {
          return false;
        }
        if (timer) clearTimeout(timer);
        this.waiters.delete(check);
        return true;
      };
      if (check()) return;
      this.waiters.add(check);
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          this.waiters.delete(check);
          reject(new Error(`confgate: no snapshot within ${timeoutMs} ms`));
        }, timeoutMs);
      }
    });
  }

  /** Stops the subscription. The view stays readable with its last state.
   * Idempotent. */
  async close(): Promise<void> {
    if (!this.closing) {
      this.closing = true;
      this.stopError ??= new SubscriptionClosed();
      this.call?.cancel();
      this.wake?.();
    }
    await this.done;
  }

  private notify(): void {
    for (const w of [...this.waiters]) w();
  }

  // The connection loop.

  private async run(): Promise<void> {
    try {
      await digestReady();
      let attempt = 0; // backoff exponent
      for (let i = 0; ; i++) {
        if (this.closing) return;
        const addr = this.addrs[i % this.addrs.length];
        this.st.addr = addr;
        if (i > 0) this.st.reconnects++;
        const resumed = this.replica.synced && !this.replica.fresh;
        const start = Date.now();
        const { delivered, err } = await this.stream(addr, resumed);
        this.st.connected = false;
        this.st.gatewayStale = false;
        if (this.closing) return;
        if (delivered && Date.now() - start >= this.backoffMax) attempt = 0;
        const code = grpcCode(err);
        if (err instanceof ProtocolViolation) {
          this.replica.fresh ||= err.fresh;
          this.log.warn(`dropping gateway stream from ${addr}: ${err.message} (resubscribe fresh: ${err.fresh})`);
        } else if (code === Code.INVALID_ARGUMENT && resumed) {
          // Either the cursor or the selector was refused. Retry without the
          // cursor: if the selector was the problem, the next answer is
          // permanent.
          this.replica.fresh = true;
          this.log.warn(`gateway ${addr} refused the request; resubscribing without a cursor: ${err.message}`);
        } else if (code === Code.INVALID_ARGUMENT) {
          this.log.warn(`gateway ${addr} refused the selector; subscription stopped: ${err.message}`);
          this.st.lastError = err;
          this.stopError = err;
          return;
        } else {
          this.log.info(`gateway ${addr} stream ended; reconnecting: ${err.message}`);
        }
        this.st.lastError = err;
        const wait = this.backoff(attempt++);
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, wait);
          this.wake = () => {
            clearTimeout(t);
            resolve();
          };
        });
        this.wake = undefined;
      }
    } catch (e) {
      // A bug: keep the view, say why it stopped.
      const err = e instanceof Error ? e : new Error(String(e));
      this.log.warn(`subscription stopped: ${err.stack ?? err.message}`);
      this.st.lastError = err;
      this.stopError = err;
    }
  }

  private backoff(n: number): number {
    const bound = Math.min(this.backoffMax, this.backoffMin * 2 ** Math.min(n, 60));
    return Math.random() * bound;
  }

  /** Runs one Subscribe stream until it fails. */
  private stream(addr: string, resumed: boolean): Promise<{ delivered: boolean; err: Error }> {
    let client: ConfigServiceClient;
    try {
      client = new ConfigServiceClient(addr, ...this.channel);
    } catch (e) {
      return Promise.resolve({ delivered: false, err: e as Error });
    }
    const req = SubscribeRequest.fromPartial({
      selector: { prefixes: this.selector },
      resumeCursor: resumed ? this.replica.cursor!.encode() : Buffer.alloc(0),
      client: this.clientInfo(),
    });
    const call = client.subscribe(req);
    this.call = call;
    const sess = new Session(resumed);
    let delivered = false;
    // Reports go over this stream's channel, so the gateway that serves the
    // client is the one that hears from it. The reporter stops before the
    // channel closes.
    const reporter = this.reportInterval > 0 ? new Reporter(this, client, addr) : undefined;
    return new Promise((resolve) => {
      let finished = false;
      const finish = (err: Error) => {
        if (finished) return;
        finished = true;
        this.call = undefined;
        reporter?.stop();
        call.cancel();
        client.close();
        resolve({ delivered, err });
      };
      call.on("data", (m: SubscribeResponse) => {
        if (finished) return;
        const first = !delivered;
        if (first) {
          delivered = true;
          this.st.connected = true;
          this.log.info(`connected to gateway ${addr} (resumed: ${resumed})`);
        }
        let res: Result;
        try {
          res = this.replica.handle(sess, m);
        } catch (e) {
          finish(e as Error);
          return;
        }
        this.applied(res);
        // Report at once to a new gateway, and after a snapshot or delta (a
        // progress message moves the cursor only: the next tick tells).
        if (first || res.changed || (res.moved && !res.progress)) this.kickReport();
        if (this.closing) finish(new SubscriptionClosed());
      });
      call.on("error", (e: Error) => finish(e));
      call.on("end", () => finish(new StreamEnded(addr)));
    });
  }

  private clientInfo(): ClientInfo {
    return { ...this.client, labels: { ...this.client.labels } };
  }

  /** Asks the reporter of the current stream for a report soon
   * (reportIntervalMs/5 after the last one at the latest). */
  private kickReport(): void {
    if (this.reportInterval <= 0) return;
    this.kicked = true;
    this.kickWaiter?.();
  }

  /** @internal Whether a report was asked for since the last call; clears
   * the request. */
  consumeKick(): boolean {
    const k = this.kicked;
    this.kicked = false;
    return k;
  }

  /** @internal f is called at the next kick (the reporter waiting). */
  onKick(f?: () => void): void {
    this.kickWaiter = f;
  }

  /** @internal The report of the view as it is now, undefined before the
   * first snapshot; drops the rejections of keys that changed. */
  buildReport(): ReportRequest | undefined {
    const c = this.replica.cursor;
    if (!c) return undefined;
    return ReportRequest.fromPartial({
      client: this.clientInfo(),
      selector: { prefixes: [...this.selector] },
      appliedCursor: c.encode(),
      digest: this.replica.digest.toBytes(),
      rejections: this.rejections.current(this.replica.entries),
    });
  }

  /** @internal */
  get reportEvery(): number {
    return this.reportInterval;
  }

  /** @internal */
  get logger(): Logger {
    return this.log;
  }

  private applied(res: Result): void {
    if (res.progress) {
      this.st.lag = res.progress.lagRecords;
      this.st.gatewayStale = res.progress.stale;
    }
    if (res.reset) {
      this.st.resets++;
      this.log.info(`view replaced by a new snapshot at ${this.cursor} (${this.size} entries)`);
    }
    if (res.first) {
      this.synced = true;
      this.notify();
    }
    const cb = this.opts.onChange;
    if (!cb) return;
    for (const ev of res.events) {
      if (this.closing) return;
      try {
        cb(ev);
      } catch (e) {
        this.log.warn(`onChange threw; continuing: ${(e as Error)?.stack ?? e}`);
      }
    }
  }
}

/**
 * Sends a Subscription's reports through one stream's client until the stream
 * ends or the gateway answers UNIMPLEMENTED, one at a time: at once when
 * asked (kickReport) but at least reportIntervalMs/5 after the previous
 * one, and reportIntervalMs after the previous one otherwise. Nothing is
 * reported before the view has a cursor. A port of View.reporter in
 * client/report.go.
 */
class Reporter {
  private stopped = false;
  private wake?: () => void;
  private inflight?: ClientUnaryCall;

  constructor(
    private readonly sub: Subscription,
    private readonly client: ConfigServiceClient,
    private readonly addr: string,
  ) {
    void this.run().catch((e) => {
      // A bug: reporting stops, the subscription carries on.
      this.sub.logger.warn(`reporter failed; not reporting until the next reconnect: ${(e as Error)?.stack ?? e}`);
    });
  }

  stop(): void {
    this.stopped = true;
    this.inflight?.cancel();
    this.wake?.();
  }

  /** Resolves "stop", "kick" or "timer", whichever comes first. */
  private wait(ms: number): Promise<"stop" | "kick" | "timer"> {
    if (this.stopped) return Promise.resolve("stop");
    if (this.sub.consumeKick()) return Promise.resolve("kick");
    return new Promise((resolve) => {
      const done = (why: "stop" | "kick" | "timer") => {
        clearTimeout(t);
        this.wake = undefined;
        this.sub.onKick(undefined);
        resolve(why);
      };
      const t = setTimeout(() => done("timer"), ms);
      this.wake = () => done("stop");
      this.sub.onKick(() => {
        this.sub.consumeKick();
        done("kick");
      });
    });
  }

  private send(req: ReportRequest, timeoutMs: number): Promise<Error | null> {
    return new Promise((resolve) => {
      this.inflight = this.client.report(req, new Metadata(), { deadline: Date.now() + timeoutMs }, (err) => {
        this.inflight = undefined;
        resolve(err);
      });
    });
  }

  private async run(): Promise<void> {
    const interval = this.sub.reportEvery;
    const gap = interval / 5;
    const timeout = Math.max(interval, 1000);
    let last: number | undefined; // start of the last report
    let next = Date.now() + interval;
    let asked = false;
    for (;;) {
      const now = Date.now();
      let wait = next - now;
      if (asked) wait = Math.min(wait, (last === undefined ? now : last + gap) - now);
      const why = await this.wait(Math.max(wait, 0));
      if (why === "stop") return;
      if (why === "kick") {
        asked = true;
        continue;
      }
      if (this.stopped) return;
      asked = false;
      const req = this.sub.buildReport();
      if (!req) {
        // No cursor to report yet; the snapshot will ask.
        next = Date.now() + interval;
        continue;
      }
      last = Date.now();
      next = last + interval;
      const err = await this.send(req, timeout);
      if (!err) continue;
      if (this.stopped) return;
      if (grpcCode(err) === Code.UNIMPLEMENTED) {
        this.sub.logger.debug?.(`gateway ${this.addr} does not take reports; not reporting until the next reconnect: ${err.message}`);
        return;
      }
      this.sub.logger.debug?.(`report to ${this.addr} failed; retrying at the next tick (in ${interval} ms): ${err.message}`);
    }
  }
}

/** Starts a subscription; see Subscription. */
export function subscribe(opts: SubscriptionOptions): Subscription {
  return new Subscription(opts);
}
