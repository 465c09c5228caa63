"use strict";
// The language-neutral conformance vectors of testdata/conformance (see its
// README.md), computed by the Go implementation: cursors, digests, selector
// normalization and replica message sequences. Every vector is one subtest.

const { test, before } = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const path = require("node:path");
const { Cursor } = require("../dist/cursor");
const { Digest, entryHash, ready } = require("../dist/digest");
const { normalizeSelector } = require("../dist/keyspace");
const { Replica, Session, ProtocolViolation } = require("../dist/replica");
const { pb } = require("../dist");

const ROOT = path.resolve(__dirname, "..", "..", "..");
const VECTORS = path.join(ROOT, "testdata", "conformance");
const load = (...p) => JSON.parse(fs.readFileSync(path.join(VECTORS, ...p), "utf8"));

const PHRASES = {
  ...load("phrases.json").phrases,
  ...JSON.parse(fs.readFileSync(path.join(ROOT, "internal", "keyspace", "testdata", "rules.json"), "utf8")).phrases,
};

function assertClass(err, cls, what) {
  assert.ok(cls in PHRASES, `${what}: error class ${cls} is not in phrases.json`);
  assert.ok(err.message.includes(PHRASES[cls]), `${what}: error ${JSON.stringify(err.message)} is not of class ${cls} (phrase ${JSON.stringify(PHRASES[cls])})`);
}

before(() => ready());

// Cursors.

const cursorOf = (v) => new Cursor(Buffer.from(v.topic, "hex"), v.offsets.map(BigInt));
const sameCursor = (a, b) => Buffer.from(a.topic).equals(Buffer.from(b.topic)) && a.offsets.length === b.offsets.length && a.offsets.every((o, i) => o === b.offsets[i]);

const CURSORS = load("cursor.json");

test("cursor: valid encodings", async (t) => {
  for (const v of CURSORS.valid) {
    await t.test(v.name, () => {
      const c = cursorOf(v);
      assert.equal(c.encode().toString("hex"), v.hex);
      assert.equal(c.toString(), v.text);
      assert.ok(sameCursor(Cursor.decode(Buffer.from(v.hex, "hex")), c));
      assert.ok(sameCursor(Cursor.parse(v.text), c));
    });
  }
});

test("cursor: noncanonical encodings", async (t) => {
  for (const v of CURSORS.noncanonical) {
    await t.test(v.name, () => {
      const c = Cursor.decode(Buffer.from(v.hex, "hex"));
      assert.ok(sameCursor(c, cursorOf(v)));
      assert.equal(c.encode().toString("hex"), v.canonical);
    });
  }
});

test("cursor: invalid encodings", async (t) => {
  for (const v of CURSORS.invalid) {
    await t.test(v.name, () => {
      assert.throws(() => Cursor.decode(Buffer.from(v.hex, "hex")), (e) => (assertClass(e, v.error, v.name), true));
    });
  }
});

test("cursor: invalid text", async (t) => {
  for (const v of CURSORS.invalid_text) {
    await t.test(v.name, () => {
      assert.throws(() => Cursor.parse(v.text), (e) => (assertClass(e, v.error, v.name), true));
    });
  }
});

test("cursor: comparisons", async (t) => {
  for (const v of CURSORS.compare) {
    await t.test(v.name, () => {
      const a = cursorOf(v.a);
      const b = cursorOf(v.b);
      assert.equal(a.covers(b), v.a_covers_b);
      assert.equal(b.covers(a), v.b_covers_a);
      assert.equal(a.equals(b), v.equal);
      assert.equal(b.equals(a), v.equal);
    });
  }
});

// Digests.

const valueOf = (e) => (e.value_hex !== undefined ? Buffer.from(e.value_hex, "hex") : Buffer.from(e.value ?? "", "utf8"));
const DIGESTS = load("digest.json");

test("digest: entry hashes", async (t) => {
  for (const v of DIGESTS.entries) {
    await t.test(v.name, () => {
      const [hi, lo] = entryHash(v.key, valueOf(v), v.partition, BigInt(v.offset));
      const b = Buffer.alloc(16);
      b.writeBigUInt64BE(hi, 0);
      b.writeBigUInt64BE(lo, 8);
      assert.equal(b.toString("hex"), v.hash);
    });
  }
});

test("digest: sets", async (t) => {
  for (const v of DIGESTS.sets) {
    await t.test(v.name, () => {
      const d = new Digest();
      for (const e of v.entries) d.add(e.key, valueOf(e), e.partition, BigInt(e.offset));
      assert.equal(d.toBytes().toString("hex"), v.digest);
      for (const e of [...v.entries].reverse()) d.remove(e.key, valueOf(e), e.partition, BigInt(e.offset));
      assert.deepEqual(d.toBytes(), Buffer.alloc(16));
    });
  }
});

// Selectors. The Node client validates and normalizes selectors (the gateway
// matches them), so it runs the normalize vectors; match vectors are for
// implementations that filter keys.

test("selectors: normalization", async (t) => {
  for (const v of load("selectors.json").normalize) {
    await t.test(v.name, () => {
      if (v.error !== undefined) {
        assert.throws(() => normalizeSelector(v.prefixes), (e) => (assertClass(e, v.error, v.name), true));
      } else {
        assert.deepEqual(normalizeSelector(v.prefixes), v.normalized);
      }
    });
  }
});

// Replica message sequences.

const REASONS = {
  "": pb.SnapshotReason.SNAPSHOT_REASON_UNSPECIFIED,
  INITIAL: pb.SnapshotReason.SNAPSHOT_REASON_INITIAL,
  HISTORY_EXPIRED: pb.SnapshotReason.SNAPSHOT_REASON_HISTORY_EXPIRED,
  TOPIC_CHANGED: pb.SnapshotReason.SNAPSHOT_REASON_TOPIC_CHANGED,
  SLOW_SUBSCRIBER: pb.SnapshotReason.SNAPSHOT_REASON_SLOW_SUBSCRIBER,
  STATE_REBUILT: pb.SnapshotReason.SNAPSHOT_REASON_STATE_REBUILT,
};

class Run {
  constructor(f) {
    this.topics = new Map(Object.entries(f.topics).map(([n, h]) => [n, Buffer.from(h, "hex")]));
  }

  cursorBytes(c) {
    if (c === null || c === undefined) return Buffer.alloc(0);
    if (c.hex !== undefined) return Buffer.from(c.hex, "hex");
    return new Cursor(this.topics.get(c.topic), (c.offsets ?? []).map(BigInt)).encode();
  }

  cursorJSON(c) {
    if (c === undefined) return null;
    for (const [n, t] of this.topics) {
      if (t.equals(Buffer.from(c.topic))) {
        const out = { topic: n };
        if (c.offsets.length > 0) out.offsets = c.offsets.map(Number);
        return out;
      }
    }
    return { hex: c.encode().toString("hex") };
  }

  static version(v) {
    return v === undefined ? undefined : { partition: v[0], offset: BigInt(v[1]) };
  }

  entry(e) {
    return pb.Entry.fromPartial({
      key: e.key ?? "",
      value: valueOf(e),
      version: Run.version(e.version),
      contentType: e.content_type ?? "",
      headers: e.content_type ? [{ key: "content-type", value: Buffer.from(e.content_type) }] : [],
    });
  }

  message(m) {
    if (m.snapshot_chunk) {
      return { message: { $case: "snapshotChunk", snapshotChunk: { entries: m.snapshot_chunk.entries.map((e) => this.entry(e)) } } };
    }
    if (m.snapshot_end) {
      const e = m.snapshot_end;
      return {
        message: {
          $case: "snapshotEnd",
          snapshotEnd: {
            cursor: this.cursorBytes(e.cursor),
            reason: REASONS[e.reason ?? ""],
            reset: e.reset ?? false,
            entryCount: BigInt(e.entry_count),
            digest: Buffer.from(e.digest ?? "", "hex"),
          },
        },
      };
    }
    if (m.delta) {
      const changes = m.delta.changes.map((c) => {
        if (c.put) return { change: { $case: "put", put: this.entry(c.put) } };
        if (c.delete) return { change: { $case: "delete", delete: { key: c.delete.key ?? "", version: Run.version(c.delete.version) } } };
        return { change: undefined };
      });
      return { message: { $case: "delta", delta: { changes, cursor: this.cursorBytes(m.delta.cursor), coalesced: m.delta.coalesced ?? false } } };
    }
    if (m.progress) {
      const p = m.progress;
      return { message: { $case: "progress", progress: { cursor: this.cursorBytes(p.cursor), lagRecords: BigInt(p.lag_records ?? 0), stale: p.stale ?? false } } };
    }
    return { message: undefined }; // a message kind this client does not know
  }

  state(r) {
    const view = {};
    for (const [k, e] of r.entries) {
      const v = {};
      const text = e.value.toString("utf8");
      if (Buffer.from(text, "utf8").equals(e.value)) {
        if (text !== "") v.value = text;
      } else {
        v.value_hex = e.value.toString("hex");
      }
      v.version = [e.partition, Number(e.offset)];
      if (e.contentType) v.content_type = e.contentType;
      view[k] = v;
    }
    return { view, cursor: this.cursorJSON(r.cursor), digest: r.digest.toBytes().toString("hex") };
  }
}

const replicaDir = path.join(VECTORS, "replica");
const replicaFiles = fs.readdirSync(replicaDir).filter((n) => n.endsWith(".json")).sort();

test("replica message sequences", async (t) => {
  assert.ok(replicaFiles.length > 0);
  for (const name of replicaFiles) {
    await t.test(name, () => {
      const f = load("replica", name);
      const run = new Run(f);
      const r = new Replica();
      let s = new Session(false);
      f.steps.forEach((st, i) => {
        const what = `step ${i} (${st.name})`;
        if (st.stream) {
          s = new Session(st.stream.resumed);
          return;
        }
        const want = st.expect;
        const before = run.state(r);
        let err;
        let events = [];
        try {
          const res = r.handle(s, run.message(st.msg));
          events = res.events.map((e) => (e.key ? { kind: e.kind, key: e.key } : { kind: e.kind }));
        } catch (e) {
          if (!(e instanceof ProtocolViolation)) throw e;
          err = e;
        }
        const after = run.state(r);
        if (want.accepted) {
          assert.equal(err, undefined, `${what}: rejected (${err?.message}), want accepted`);
        } else {
          assert.ok(err, `${what}: accepted, want rejected (${want.error})`);
          assertClass(err, want.error, what);
          assert.equal(err.fresh, want.fresh ?? false, `${what}: fresh`);
          assert.deepEqual(after, before, `${what}: rejected, yet the view changed`);
        }
        assert.deepEqual(events, want.events ?? [], `${what}: events`);
        assert.deepEqual(after.view, want.view, `${what}: view`);
        assert.deepEqual(after.cursor, want.cursor, `${what}: cursor`);
        assert.equal(after.digest, want.digest, `${what}: digest`);
      });
    });
  }
});

test("every vector file is run", () => {
  const names = fs.readdirSync(VECTORS).filter((n) => n.endsWith(".json")).sort();
  assert.deepEqual(names, ["cursor.json", "digest.json", "phrases.json", "selectors.json"]);
});
