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
// - it keeps the last-known-good state while no gateway answers, and with
//   stateFile across restarts (statefile.ts);
// - it tells the gateways what it holds, for the fleet view: every Subscribe
//   carries the client's identity, and the view reports its cursor and
//   digest through the gateway of its stream (client/report.go).
//
// Changes reach the application three ways, all fed by one source in one
// order: the onChange option, the "change" event (Subscription is an
// EventEmitter), and events() iterators. None of them can stall the view:
// listeners run synchronously and their exceptions are logged, iterators
// buffer (bounded) and never pause the stream.

import { EventEmitter } from "node:events";
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
import {
  DEFAULT_STATE_FILE_INTERVAL_MS,
  STATE_FILE_DUTY,
  type SavedView,
  readStateFile,
  removeStateTemps,
  sortedEntries,
  writeStateFile,
} from "./statefile";
import type { Entry, Event, Status } from "./types";

export const DEFAULT_BACKOFF_MIN_MS = 100;
export const DEFAULT_BACKOFF_MAX_MS = 10_000;
/** An events() iterator holds at most this many events its consumer has not
 * taken yet, by default. */
export const DEFAULT_MAX_BUFFERED_EVENTS = 10_000;

export interface SubscriptionOptions extends ConnectionOptions {
  /** Gateway addresses ("host:port" or any gRPC target). Gateways are
   * interchangeable: the client starts at a random one (unless shuffle is
   * false) and moves to the next after every lost stream. */
  addrs: string[];
  /** The selector. Empty, or "" among them, selects every key. Validated and
   * normalized by the gateways' rules. */
  prefixes?: string[];
  /** Called with each change, in order, after the view was updated, before
   * the "change" listeners. While it runs no further messages are applied,
   * so it should return quickly. An exception it throws is logged and
   * ignored. */
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
  /**
   * The path of the last-known-good file: the view and its cursor, so that
   * a restarted process serves its configuration while no gateway answers,
   * then resumes with deltas instead of a full snapshot. Default: no file.
   *
   * At start, before the first stream, the file is read (asynchronously:
   * waitLoaded() resolves once it is served): when it is valid and was made
   * for the same selector, reads serve its entries, a "loaded" change event
   * is the first event, status() reports fromFile and stale until a gateway
   * answers, and the first stream resumes from the file's cursor. A missing
   * file is normal (first start); a corrupt, truncated or unreadable file,
   * or one made for another selector, is ignored as a whole with a logged
   * warning (the view then starts empty) and named in
   * status().stateFileError.
   *
   * The file is written atomically (a temporary file in the same directory,
   * mode 0600, fsynced, renamed over the path, then the directory fsynced):
   * at once after the first snapshot, then at most every
   * stateFileIntervalMs while the view or its cursor moves, and a last time
   * when the subscription stops (close() resolves after it). Leftover
   * temporary files ("<name>.tmp-*", from a crash mid-write) are removed at
   * start. One Subscription per file. The format is the Go and Python
   * clients' (statefile.ts): a file written by one is read by the others.
   */
  stateFile?: string;
  /** The least ms between two writes of the state file. Each write rewrites
   * the whole view, so a large view with a moving cursor costs one full
   * write per interval; a longer interval writes less and keeps an older
   * cursor (a restart then replays more deltas, or gets a snapshot). The
   * writer also waits 20 times as long as the last write took, so it spends
   * at most about 5% of the time writing. Default 1000. */
  stateFileIntervalMs?: number;
}

export interface Logger {
  info(msg: string): void;
  warn(msg: string): void;
  /** Optional: failed reports, a gateway that takes none, state file writes. */
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

/** The events a Subscription emits, with their arguments. */
export interface SubscriptionEvents {
  /** A change to the view, after it was applied (the Event kinds). */
  change: [event: Event];
  /** Once: a gateway vouched for the view (waitSynced resolves). Emitted
   * before the "snapshot" (or, for a loaded view, first) change event. */
  ready: [];
  /** The status changed: connected, addr, stale, fromFile, reconnects,
   * resets, lastError or stateFileError (not for the cursor and lag alone,
   * which move with every message). */
  status: [status: Status];
  /** The subscription stopped on a permanent error (the gateway refused the
   * selector, or a bug); "close" follows. Emitted only when there is an
   * "error" listener, so it never crashes the process: without one the
   * error is logged, waitSynced() rejects with it, iterators throw it and
   * status().lastError names it. Transient failures (a lost gateway) are
   * not errors: the subscription reconnects, and "status" tells. */
  error: [err: Error];
  /** Once: the subscription stopped (close(), or a permanent error), after
   * its last state file write; events() iterators have ended. */
  close: [];
}

type Listener<K extends keyof SubscriptionEvents> = (...args: SubscriptionEvents[K]) => void;

// Typed overloads of the EventEmitter methods, merged into the class. The
// second overload takes other event names only, so a listener of a known
// event with the wrong arguments does not type-check.
type OtherEvent<E> = Exclude<E, keyof SubscriptionEvents>;
export interface Subscription {
  on<K extends keyof SubscriptionEvents>(event: K, listener: Listener<K>): this;
  on<E extends string | symbol>(event: OtherEvent<E>, listener: (...args: any[]) => void): this;
  once<K extends keyof SubscriptionEvents>(event: K, listener: Listener<K>): this;
  once<E extends string | symbol>(event: OtherEvent<E>, listener: (...args: any[]) => void): this;
  off<K extends keyof SubscriptionEvents>(event: K, listener: Listener<K>): this;
  off<E extends string | symbol>(event: OtherEvent<E>, listener: (...args: any[]) => void): this;
  addListener<K extends keyof SubscriptionEvents>(event: K, listener: Listener<K>): this;
  addListener<E extends string | symbol>(event: OtherEvent<E>, listener: (...args: any[]) => void): this;
  removeListener<K extends keyof SubscriptionEvents>(event: K, listener: Listener<K>): this;
  removeListener<E extends string | symbol>(event: OtherEvent<E>, listener: (...args: any[]) => void): this;
  prependListener<K extends keyof SubscriptionEvents>(event: K, listener: Listener<K>): this;
  prependListener<E extends string | symbol>(event: OtherEvent<E>, listener: (...args: any[]) => void): this;
  prependOnceListener<K extends keyof SubscriptionEvents>(event: K, listener: Listener<K>): this;
  prependOnceListener<E extends string | symbol>(event: OtherEvent<E>, listener: (...args: any[]) => void): this;
}

export interface EventsOptions {
  /** The most events the iterator buffers for a consumer that has not taken
   * them yet. Past it, the buffered events are dropped and replaced by one
   * "reset" event, which also stands for the events after it until the
   * consumer takes it (read the view then: it holds every change). So a
   * slow consumer costs bounded memory and never stalls the view. Default
   * DEFAULT_MAX_BUFFERED_EVENTS (10000). */
  maxBuffered?: number;
}

/**
 * A live view of the entries whose keys start with one of the prefixes.
 * Starts at once; await waitSynced() for the first snapshot (or
 * waitLoaded() to accept the state file's content). Reads never wait for
 * the network and see the last applied state.
 *
 * Changes: the onChange option, the EventEmitter events of
 * SubscriptionEvents ("change", "ready", "status", "error", "close"), and
 * async iteration (`for await (const ev of sub)`, or sub.events()).
 */
export class Subscription extends EventEmitter {
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
    fileError: undefined as string | undefined,
  };
  private synced = false;
  /** The view was loaded from the state file. */
  private loaded = false;
  private stopError?: Error;
  private closing = false;
  private call?: ClientReadableStream<SubscribeResponse>;
  private wake?: () => void;
  private waiters = new Set<() => void>();
  private readonly queues = new Set<EventQueue>();
  private readonly done: Promise<void>;
  private running = true;
  private lastStatus = "";

  private readonly channel: [ChannelCredentials, ClientOptions];
  private readonly client: ClientInfo;
  private readonly reportInterval: number;
  private readonly rejections = new Rejections();
  // A report is asked for; kept across streams, like the Go client's kick
  // channel. kickWaiter wakes the reporter of the current stream.
  private kicked = false;
  private kickWaiter?: () => void;
  private readonly stateFile?: string;
  private readonly stateFileInterval: number;
  private writer?: StateWriter;

  constructor(private readonly opts: SubscriptionOptions) {
    super();
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
    if (opts.stateFile !== undefined && (typeof opts.stateFile !== "string" || opts.stateFile === "")) {
      throw new TypeError("stateFile must be a path (a non-empty string)");
    }
    this.stateFile = opts.stateFile;
    const iv = opts.stateFileIntervalMs ?? 0;
    if (!(iv >= 0)) throw new Error("stateFileIntervalMs must not be negative");
    this.stateFileInterval = iv === 0 ? DEFAULT_STATE_FILE_INTERVAL_MS : iv;
    this.log = opts.logger ?? defaultLogger;
    if (opts.shuffle ?? true) {
      for (let i = this.addrs.length - 1; i > 0; i--) {
        const j = Math.floor(Math.random() * (i + 1));
        [this.addrs[i], this.addrs[j]] = [this.addrs[j], this.addrs[i]];
      }
    }
    this.done = this.run().then(
      () => this.finish(),
      () => this.finish(),
    );
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
   * accepts), or "" before the first snapshot. A view loaded from the state
   * file has the file's cursor. */
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

  /** The state of the subscription, as plain data that survives
   * JSON.stringify (see Status). */
  status(): Status {
    const s = this.st;
    const out: Status = {
      connected: s.connected,
      addr: s.addr,
      stale: !s.connected || !this.synced || s.gatewayStale,
      fromFile: this.loaded && !this.synced,
      cursor: this.cursor,
      lagRecords: s.lag.toString(),
      reconnects: s.reconnects,
      resets: s.resets,
    };
    if (s.lastError) out.lastError = s.lastError.message;
    if (s.fileError !== undefined) out.stateFileError = s.fileError;
    return out;
  }

  /** What ended the most recent failed stream, or the permanent error that
   * stopped the subscription (status().lastError is its message). */
  get lastError(): Error | undefined {
    return this.st.lastError;
  }

  // Lifecycle.

  /**
   * Resolves once a gateway vouched for the view: the first snapshot was
   * applied or, for a view loaded from the state file, the resumed stream's
   * first delta, progress or snapshot. Rejects after timeoutMs, with the
   * permanent error that stopped the subscription (a gRPC error,
   * INVALID_ARGUMENT for a refused selector), or with SubscriptionClosed.
   */
  waitSynced(timeoutMs?: number): Promise<void> {
    return this.wait(() => this.synced, "no snapshot", timeoutMs);
  }

  /**
   * waitSynced(), except that it resolves as soon as the view was loaded
   * from the state file: it waits until the view has a state to serve,
   * fresh or last-known-good. A service that should start even while every
   * gateway is down waits with waitLoaded() and watches status().stale.
   */
  waitLoaded(timeoutMs?: number): Promise<void> {
    return this.wait(() => this.synced || this.loaded, "no state file and no snapshot", timeoutMs);
  }

  private wait(ok: () => boolean, what: string, timeoutMs?: number): Promise<void> {
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const check = (): boolean => {
        if (ok()) {
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
          reject(new Error(`confgate: ${what} within ${timeoutMs} ms`));
        }, timeoutMs);
      }
    });
  }

  /**
   * An async iterator of the view's changes from now on, in order: the
   * events of onChange and "change". It ends when the subscription stops:
   * done after close(), or it throws the permanent error that stopped it.
   * Leaving a for-await loop (break, return, throw) detaches the iterator;
   * the subscription keeps running (close() stops it). Each iterator has
   * its own bounded buffer (see EventsOptions): a consumer slower than the
   * changes gets a "reset" event in place of the ones it missed, and never
   * slows the view or the other consumers down.
   */
  events(opts: EventsOptions = {}): AsyncIterableIterator<Event> {
    const max = opts.maxBuffered ?? DEFAULT_MAX_BUFFERED_EVENTS;
    if (!Number.isInteger(max) || max < 1) throw new Error("maxBuffered must be a positive integer");
    const q = new EventQueue(max, (it) => this.queues.delete(it), this.log);
    if (this.running) this.queues.add(q);
    else q.end(this.permanentError());
    return q;
  }

  /** `for await (const ev of sub)`: sub.events() with the default buffer. */
  [Symbol.asyncIterator](): AsyncIterableIterator<Event> {
    return this.events();
  }

  /** Stops the subscription. The view stays readable with its last state.
   * Resolves after the last state file write and the "close" event.
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

  private permanentError(): Error | undefined {
    return this.stopError instanceof SubscriptionClosed ? undefined : this.stopError;
  }

  /** Calls the listeners of an event one by one: one that throws, or whose
   * promise rejects, is logged and does not keep the others from running,
   * nor reaches the connection loop (where it would stop the view). */
  private safeEmit<K extends keyof SubscriptionEvents>(name: K, ...args: SubscriptionEvents[K]): void {
    for (const l of this.rawListeners(name)) {
      try {
        const r: unknown = (l as (...a: unknown[]) => unknown).apply(this, args);
        if (r && typeof (r as PromiseLike<unknown>).then === "function") {
          (r as PromiseLike<unknown>).then(undefined, (e: unknown) =>
            this.log.warn(`a "${name}" listener's promise rejected; continuing: ${(e as Error)?.stack ?? e}`),
          );
        }
      } catch (e) {
        this.log.warn(`a "${name}" listener threw; continuing: ${(e as Error)?.stack ?? e}`);
      }
    }
  }

  /** Emits "status" when a field other than the cursor and the lag changed. */
  private statusChanged(): void {
    const s = this.status();
    const key = JSON.stringify([s.connected, s.addr, s.stale, s.fromFile, s.reconnects, s.resets, s.lastError, s.stateFileError]);
    if (key === this.lastStatus) return;
    this.lastStatus = key;
    if (this.listenerCount("status") > 0) this.safeEmit("status", s);
  }

  /** One change, to everyone who listens, in order. */
  private deliver(ev: Event): void {
    const cb = this.opts.onChange;
    if (cb) {
      try {
        cb(ev);
      } catch (e) {
        this.log.warn(`onChange threw; continuing: ${(e as Error)?.stack ?? e}`);
      }
    }
    this.safeEmit("change", ev);
    for (const q of this.queues) q.push(ev);
  }

  // The connection loop.

  private async run(): Promise<void> {
    try {
      await digestReady();
      if (this.stateFile !== undefined) {
        await this.loadStateFile(this.stateFile);
        this.writer = new StateWriter(this.stateFile, this.selector, this.stateFileInterval, this.log, {
          view: () => this.savedView(),
          key: () => this.savedKey(),
          result: (err) => {
            this.st.fileError = err;
            this.statusChanged();
          },
        });
        if (this.loaded) this.writer.saved = this.savedKey();
      }
      let attempt = 0; // backoff exponent
      for (let i = 0; ; i++) {
        if (this.closing) return;
        const addr = this.addrs[i % this.addrs.length];
        this.st.addr = addr;
        if (i > 0) this.st.reconnects++;
        this.statusChanged();
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
        this.statusChanged();
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

  /** After run: the last state file write, then everyone is told. */
  private async finish(): Promise<void> {
    await this.writer?.stop();
    this.running = false;
    this.st.connected = false;
    this.notify();
    const err = this.permanentError();
    for (const q of this.queues) q.end(err);
    this.queues.clear();
    if (err && this.listenerCount("error") > 0) this.safeEmit("error", err);
    this.statusChanged();
    this.safeEmit("close");
  }

  /** Loads the state file into the replica, when it is there and valid. */
  private async loadStateFile(path: string): Promise<void> {
    const warn = (m: string) => this.log.warn(m);
    for (const p of await removeStateTemps(path, warn)) this.log.info(`removed a leftover temporary state file ${p}`);
    let r: Replica | undefined;
    try {
      r = await readStateFile(path, this.selector);
    } catch (e) {
      const msg = `state file ${path} ignored: ${(e as Error).message}`;
      this.log.warn(`ignoring the state file; starting empty: ${msg}`);
      this.st.fileError = msg;
      this.statusChanged();
      return;
    }
    if (!r) {
      this.log.info(`no state file yet at ${path}; starting empty`);
      return;
    }
    if (this.closing) return;
    this.replica.entries = r.entries;
    this.replica.digest = r.digest;
    this.replica.cursor = r.cursor;
    this.loaded = true;
    this.log.info(
      `view loaded from the state file ${path} (${r.entries.size} entries, cursor ${this.cursor}); stale until a gateway answers`,
    );
    this.notify();
    this.statusChanged();
    this.deliver({ kind: "loaded", key: "", cursor: this.cursor });
  }

  private savedKey(): string {
    return `${this.cursor} ${this.digest.toString("hex")}`;
  }

  private savedView(): SavedView | undefined {
    const c = this.replica.cursor;
    if (!c) return undefined;
    return { entries: sortedEntries(this.replica.entries.values()), cursor: c, digest: this.replica.digest.toBytes() };
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
    if (res.changed || res.moved) this.writer?.markDirty();
    if (res.first) {
      this.synced = true;
      this.notify();
    }
    this.statusChanged();
    if (res.first) this.safeEmit("ready");
    for (const ev of res.events) {
      if (this.closing) return;
      this.deliver(ev);
    }
  }
}

/**
 * The buffer of one events() iterator. The subscription pushes without ever
 * waiting; past max buffered events the buffer collapses into one "reset".
 */
class EventQueue implements AsyncIterableIterator<Event> {
  private buf: Event[] = [];
  private head = 0;
  private readonly takers: { resolve: (r: IteratorResult<Event>) => void; reject: (e: Error) => void }[] = [];
  private ended = false;
  private err?: Error;
  /** The reset that replaced the events dropped last, while unread. */
  private overflow?: Event;

  constructor(
    private readonly max: number,
    private readonly detach: (q: EventQueue) => void,
    private readonly log: Logger,
  ) {}

  push(ev: Event): void {
    if (this.ended) return;
    const t = this.takers.shift();
    if (t) {
      t.resolve({ value: ev, done: false });
      return;
    }
    if (this.overflow && this.buf[this.buf.length - 1] === this.overflow) {
      // Still behind: the consumer reads the view when it takes the reset,
      // which then holds this change too.
      this.overflow = { kind: "reset", key: "", cursor: ev.cursor };
      this.buf[this.buf.length - 1] = this.overflow;
      return;
    }
    this.buf.push(ev);
    const n = this.buf.length - this.head;
    if (n > this.max) {
      this.log.warn(`an events() consumer fell ${n} events behind; dropped them for one "reset" event (read the view)`);
      this.overflow = { kind: "reset", key: "", cursor: ev.cursor };
      this.buf = [this.overflow];
      this.head = 0;
    }
  }

  /** No more events: done, or err once the buffer is drained. */
  end(err?: Error): void {
    if (this.ended) return;
    this.ended = true;
    this.err = err;
    if (this.head < this.buf.length) return; // takers are only waiting on an empty buffer
    for (const t of this.takers.splice(0)) this.settle(t);
  }

  private settle(t: { resolve: (r: IteratorResult<Event>) => void; reject: (e: Error) => void }): void {
    if (this.err) {
      const e = this.err;
      this.err = undefined;
      t.reject(e);
    } else {
      t.resolve({ value: undefined, done: true });
    }
  }

  next(): Promise<IteratorResult<Event>> {
    if (this.head < this.buf.length) {
      const value = this.buf[this.head++];
      if (value === this.overflow) this.overflow = undefined;
      if (this.head === this.buf.length) {
        this.buf = [];
        this.head = 0;
      } else if (this.head >= 1024 && this.head * 2 >= this.buf.length) {
        this.buf = this.buf.slice(this.head);
        this.head = 0;
      }
      return Promise.resolve({ value, done: false });
    }
    return new Promise((resolve, reject) => {
      const t = { resolve, reject };
      if (this.ended) this.settle(t);
      else this.takers.push(t);
    });
  }

  /** Detaches the iterator (a for-await loop left early). */
  return(): Promise<IteratorResult<Event>> {
    this.detach(this);
    this.ended = true;
    this.err = undefined;
    this.buf = [];
    this.head = 0;
    for (const t of this.takers.splice(0)) t.resolve({ value: undefined, done: true });
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<Event> {
    return this;
  }
}

/**
 * Writes a Subscription's view to its state file when asked (markDirty), at
 * most once per interval (and no more than 1/STATE_FILE_DUTY of the time),
 * and a last time at stop. It writes a copy taken at the start of each
 * write, so the view keeps moving meanwhile. A port of View.persist in
 * client/statefile.go.
 */
class StateWriter {
  /** savedKey() of what the file holds. */
  saved?: string;
  private dirty = false;
  private stopping = false;
  private wakeDirty?: () => void;
  private wakeStop?: () => void;
  private readonly loop: Promise<void>;

  constructor(
    private readonly path: string,
    private readonly selector: readonly string[],
    private readonly interval: number,
    private readonly log: Logger,
    private readonly sub: {
      view: () => SavedView | undefined;
      key: () => string;
      result: (err: string | undefined) => void;
    },
  ) {
    this.loop = this.run();
  }

  markDirty(): void {
    this.dirty = true;
    this.wakeDirty?.();
  }

  /** The last write, then resolves; never rejects. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.wakeDirty?.();
    this.wakeStop?.();
    await this.loop;
  }

  private async run(): Promise<void> {
    for (;;) {
      if (!this.dirty && !this.stopping) await new Promise<void>((r) => (this.wakeDirty = r));
      this.wakeDirty = undefined;
      if (this.stopping) {
        await this.save();
        return;
      }
      this.dirty = false;
      const took = await this.save();
      const pause = Math.max(this.interval, took * STATE_FILE_DUTY);
      await new Promise<void>((r) => {
        const t = setTimeout(r, pause);
        this.wakeStop = () => {
          clearTimeout(t);
          r();
        };
      });
      this.wakeStop = undefined;
    }
  }

  /** Writes the view unless the file holds it already or it has no cursor
   * yet; resolves to how long it took (ms). */
  private async save(): Promise<number> {
    const key = this.sub.key();
    if (key === this.saved) return 0;
    const view = this.sub.view();
    if (!view) return 0;
    const start = Date.now();
    try {
      const n = await writeStateFile(this.path, this.selector, view);
      this.saved = key;
      this.sub.result(undefined);
      this.log.debug?.(`state file ${this.path} written: ${view.entries.length} entries, ${n} bytes, cursor ${view.cursor}, ${Date.now() - start} ms`);
    } catch (e) {
      const msg = `state file ${this.path} not written: ${(e as Error).message}`;
      this.log.warn(`cannot write the state file; it keeps its previous content: ${msg}`);
      this.sub.result(msg);
    }
    return Date.now() - start;
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
