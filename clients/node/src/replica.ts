// The protocol rules of a subscription, without any networking: snapshot
// buffering, checks, never going backwards. A port of client/replica.go.

import { Cursor, sameTopicOf, topicText } from "./cursor";
import { Digest } from "./digest";
import {
  type Deletion,
  type Delta,
  type Progress,
  type SnapshotEnd,
  type SubscribeResponse,
  SnapshotReason,
  type Entry as PbEntry,
} from "./gen/confgate/v1/config";
import { type Entry, type Event, checkVersion, entryFromProto } from "./types";

/**
 * A gateway message the client refused to apply. The stream is dropped;
 * nothing of the offending message was applied. fresh asks to resubscribe
 * without a cursor: the gateway's view and ours may disagree.
 */
export class ProtocolViolation extends Error {
  constructor(
    message: string,
    readonly fresh: boolean,
  ) {
    super("gateway protocol violation: " + message);
    this.name = "ProtocolViolation";
  }
}

class Builder {
  entries = new Map<string, Entry>();
  digest = new Digest();
  // Per partition, one past the highest offset received: every entry must
  // lie before the snapshot's cursor.
  next = new Map<number, bigint>();
}

/** Per-stream state. */
export class Session {
  building?: Builder;
  constructor(readonly resumed: boolean) {}
}

export interface Result {
  changed: boolean;
  moved: boolean;
  events: Event[];
  reset: boolean;
  /** The message carried a cursor the view now stands at (a snapshot end, a
   * delta, a progress cursor that passed the checks). */
  vouched: boolean;
  /** The first message that vouched for this view: it is synced. */
  first: boolean;
  progress?: Progress;
}

function result(r: Partial<Result> = {}): Result {
  return { changed: false, moved: false, events: [], reset: false, vouched: false, first: false, ...r };
}

/** Whether version (partition, offset) may replace old. In the same partition
 * the offset must grow; another partition is accepted, as the gateway decides
 * which partition owns a key. */
function newer(partition: number, offset: bigint, old: Entry): boolean {
  return partition !== old.partition || offset > BigInt(old.offset);
}

/**
 * The working copy of a view. handle() either applies a whole message or
 * throws ProtocolViolation having applied nothing.
 */
export class Replica {
  entries = new Map<string, Entry>();
  digest = new Digest();
  /** Set once synced (a snapshot applied, or loaded from the state file). */
  cursor?: Cursor;
  /** Ask the next stream to start without a resume cursor; set after the
   * gateway refused the cursor or a snapshot failed its checks, cleared once
   * a snapshot is applied. */
  fresh = false;
  /** A gateway vouched for the view: it applied a snapshot, or a delta or
   * progress cursor that covers the view's. A view loaded from the state
   * file is synced (its cursor is meaningful and is resumed from) but not
   * live until then. */
  live = false;

  get synced(): boolean {
    return this.cursor !== undefined;
  }

  handle(s: Session, m: SubscribeResponse): Result {
    let res: Result;
    switch (m.message?.$case) {
      case "snapshotChunk":
        this.chunk(s, m.message.snapshotChunk.entries);
        return result();
      case "snapshotEnd":
        res = this.snapshotEnd(s, m.message.snapshotEnd);
        break;
      case "delta":
        res = this.delta(s, m.message.delta);
        break;
      case "progress":
        res = this.progress(s, m.message.progress);
        break;
      default:
        return result(); // an unknown message kind from a newer gateway
    }
    if (res.vouched && !this.live) {
      this.live = true;
      res.first = true;
    }
    return res;
  }

  private chunk(s: Session, entries: PbEntry[]): void {
    const b = (s.building ??= new Builder());
    for (const pe of entries) {
      let e: Entry;
      try {
        e = entryFromProto(pe);
      } catch (err) {
        throw new ProtocolViolation(`snapshot chunk: ${(err as Error).message}`, true);
      }
      const old = b.entries.get(e.key);
      if (old) b.digest.remove(old.key, old.value, old.partition, BigInt(old.offset));
      b.entries.set(e.key, e);
      const off = BigInt(e.offset);
      b.digest.add(e.key, e.value, e.partition, off);
      if (off + 1n > (b.next.get(e.partition) ?? 0n)) b.next.set(e.partition, off + 1n);
    }
  }

  private snapshotEnd(s: Session, end: SnapshotEnd): Result {
    const b = s.building ?? new Builder();
    s.building = undefined;
    let next: Cursor;
    try {
      next = Cursor.decode(end.cursor);
    } catch (err) {
      throw new ProtocolViolation(`snapshot end: ${(err as Error).message}`, true);
    }
    if (BigInt(b.entries.size) !== BigInt(end.entryCount)) {
      throw new ProtocolViolation(`snapshot has ${b.entries.size} entries, its end says ${end.entryCount}`, true);
    }
    // A gateway always sends the digest; an empty one (a third-party gateway
    // that does not compute it) is not checked.
    const got = b.digest.toBytes();
    if (end.digest.length > 0 && !got.equals(end.digest)) {
      throw new ProtocolViolation(
        `snapshot digest ${Buffer.from(end.digest).toString("hex")} does not match the received entries (${got.toString("hex")})`,
        true,
      );
    }
    for (const [p, n] of b.next) {
      if (n > next.offset(p)) {
        throw new ProtocolViolation(
          `snapshot holds an entry at partition ${p} offset ${n - 1n}, at or past its cursor ${next.offset(p)}`,
          true,
        );
      }
    }
    if (this.cursor && !snapshotMayReplace(this.cursor, next, end, s.resumed)) {
      throw new ProtocolViolation(
        `snapshot cursor ${next} (reason ${end.reason}, reset ${end.reset}) is behind the view's cursor ${this.cursor}`,
        false,
      );
    }
    const reset = this.synced;
    this.entries = b.entries;
    this.digest = b.digest;
    this.cursor = next;
    this.fresh = false;
    return result({
      changed: true,
      reset,
      vouched: true,
      events: [{ kind: reset ? "reset" : "snapshot", key: "", cursor: next.toString() }],
    });
  }

  private delta(s: Session, d: Delta): Result {
    if (s.building) throw new ProtocolViolation("delta in the middle of a snapshot", true);
    if (!this.cursor) throw new ProtocolViolation("delta before any snapshot", true);
    const next = this.advance(d.cursor, "delta");
    const ops: { put?: Entry; del?: Deletion }[] = [];
    d.changes.forEach((c, i) => {
      let p: number;
      let off: bigint;
      switch (c.change?.$case) {
        case "put": {
          let e: Entry;
          try {
            e = entryFromProto(c.change.put);
          } catch (err) {
            throw new ProtocolViolation(`delta change ${i}: ${(err as Error).message}`, false);
          }
          ops.push({ put: e });
          [p, off] = [e.partition, BigInt(e.offset)];
          break;
        }
        case "delete": {
          const del = c.change.delete;
          if (!del.key || !del.version) {
            throw new ProtocolViolation(`delta change ${i}: deletion without key or version`, false);
          }
          try {
            checkVersion(del.key, del.version.partition, del.version.offset);
          } catch (err) {
            throw new ProtocolViolation(`delta change ${i}: ${(err as Error).message}`, false);
          }
          ops.push({ del });
          [p, off] = [del.version.partition, del.version.offset];
          break;
        }
        default:
          throw new ProtocolViolation(`delta change ${i} is empty`, false);
      }
      if (off >= next.offset(p)) {
        throw new ProtocolViolation(
          `delta change ${i} at partition ${p} offset ${off} is at or past the delta's cursor ${next.offset(p)}`,
          false,
        );
      }
    });
    const res = result({ moved: true, vouched: true });
    const cs = next.toString();
    for (const o of ops) {
      // A change below the view's cursor in its partition was applied
      // already or superseded: ignored (applied to a key deleted since, it
      // would bring the key back).
      const [p, off] = o.put ? [o.put.partition, BigInt(o.put.offset)] : [o.del!.version!.partition, o.del!.version!.offset];
      if (off < this.cursor!.offset(p)) continue;
      if (o.put) {
        const e = o.put;
        const old = this.entries.get(e.key);
        if (old && !newer(e.partition, off, old)) continue;
        if (old) this.digest.remove(old.key, old.value, old.partition, BigInt(old.offset));
        this.entries.set(e.key, e);
        this.digest.add(e.key, e.value, e.partition, off);
        res.events.push({ kind: "put", key: e.key, entry: e, cursor: cs });
        continue;
      }
      const del = o.del!;
      const old = this.entries.get(del.key);
      if (!old || !newer(del.version!.partition, del.version!.offset, old)) continue;
      this.entries.delete(del.key);
      this.digest.remove(old.key, old.value, old.partition, BigInt(old.offset));
      res.events.push({ kind: "delete", key: old.key, cursor: cs });
    }
    res.changed = res.events.length > 0;
    this.cursor = next;
    return res;
  }

  private progress(s: Session, p: Progress): Result {
    const res = result({ progress: p });
    // A cursor means something only against a view; during a snapshot the
    // view is about to be replaced and the end carries the cursor.
    if (!this.cursor || s.building || p.cursor.length === 0) return res;
    const next = this.advance(p.cursor, "progress");
    res.moved = !next.equals(this.cursor);
    res.vouched = true;
    this.cursor = next;
    return res;
  }

  /** Decodes a delta or progress cursor and checks that it does not move the
   * view backwards. */
  private advance(b: Uint8Array, what: string): Cursor {
    const cur = this.cursor!;
    let next: Cursor;
    try {
      next = Cursor.decode(b);
    } catch (err) {
      throw new ProtocolViolation(`${what}: ${(err as Error).message}`, false);
    }
    if (!sameTopicOf(next, cur)) {
      throw new ProtocolViolation(
        `${what} cursor ${next} is of topic ${topicText(next)}, the view's cursor ${cur} of topic ${topicText(cur)}`,
        false,
      );
    }
    if (!next.covers(cur)) throw new ProtocolViolation(`${what} cursor ${next} is behind the view's cursor ${cur}`, false);
    return next;
  }
}

/**
 * Never backwards: a snapshot must cover the view's cursor, unless the gateway
 * flagged a reset that legitimately moves versions (another topic, or state
 * rebuilt after a truncation). A snapshot of another topic on a stream without
 * a resume cursor is accepted too: the gateway had nothing to flag it against,
 * and cursors of two topics cannot be compared.
 */
function snapshotMayReplace(cur: Cursor, next: Cursor, end: SnapshotEnd, resumed: boolean): boolean {
  if (next.covers(cur)) return true;
  const otherTopic = !sameTopicOf(next, cur);
  if (
    end.reset &&
    (otherTopic ||
      end.reason === SnapshotReason.SNAPSHOT_REASON_TOPIC_CHANGED ||
      end.reason === SnapshotReason.SNAPSHOT_REASON_STATE_REBUILT)
  ) {
    return true;
  }
  return otherTopic && !resumed;
}
