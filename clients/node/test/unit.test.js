"use strict";
// Unit tests that need no gateway: cursors, the digest (vectors computed by
// the Go implementation, internal/digest), selector rules and the replica's
// protocol rules.

const { test, before } = require("node:test");
const assert = require("node:assert/strict");
const { Replica, Session, ProtocolViolation } = require("../dist/replica");
const h = require("./helpers");
const { confgate, pb, cur, ent, digestOf, chunk, end, snapshot, delta, put, del, progress, TOPIC_B, INITIAL } = h;

before(() => confgate.digestReady());

test("cursor round trip and order", () => {
  const c = cur([0, 300, 2 ** 40]);
  assert.ok(confgate.Cursor.decode(c.encode()).equals(c));
  assert.ok(confgate.Cursor.parse(c.toString()).equals(c));
  assert.doesNotMatch(c.toString(), /[=+/]/);
  assert.ok(cur([5, 5]).covers(cur([5, 4])) && cur([5, 5]).covers(cur([5])) && !cur([5, 4]).covers(cur([5, 5])));
  assert.ok(!cur([9, 9], TOPIC_B).covers(cur([1, 1])));
  assert.equal(cur([3]).offset(7), 0n);
  for (const bad of [
    Buffer.alloc(0),
    Buffer.concat([Buffer.from([2]), Buffer.alloc(17)]),
    Buffer.concat([Buffer.from([1]), Buffer.alloc(10)]),
    Buffer.concat([Buffer.from([1]), Buffer.alloc(16)]),
    Buffer.concat([Buffer.from([1]), Buffer.alloc(16), Buffer.from([2, 1])]),
    Buffer.concat([Buffer.from([1]), Buffer.alloc(16), Buffer.from([0, 0])]),
  ]) {
    assert.throws(() => confgate.Cursor.decode(bad), Error, bad.toString("hex"));
  }
});

test("digest matches the Go implementation", () => {
  const [hi, lo] = confgate.entryHash("payments/db/timeout", Buffer.from("5s"), 3, 42n);
  assert.equal(hi, 0x4485eb8098f5777bn);
  assert.equal(lo, 0x50f283f16879f4e4n);
  const d = new confgate.Digest();
  d.add("payments/db/timeout", Buffer.from("5s"), 3, 42n);
  d.add("a", Buffer.from("1"), 0, 0n);
  d.add("b", Buffer.alloc(0), 5, 1n << 40n);
  assert.equal(d.toBytes().toString("hex"), "288cce57bf6910e8a573dec74376ee71");
  d.remove("a", Buffer.from("1"), 0, 0n);
  d.add("a", Buffer.from("1"), 0, 0n);
  assert.equal(d.toBytes().toString("hex"), "288cce57bf6910e8a573dec74376ee71");
  const big = new confgate.Digest();
  big.add("k/\u00e9", Buffer.from(Array.from({ length: 300 }, (_, i) => i % 256)), 2147483647, 9007199254740993n);
  assert.equal(big.toBytes().toString("hex"), "7f7d308876c15e1b9fa34765e0ab0668");
  assert.deepEqual(new confgate.Digest().toBytes(), Buffer.alloc(16));
});

test("selector normalized like the gateway", () => {
  assert.deepEqual(confgate.normalizeSelector(["db/", "app/", "app/x/", "db/"]), ["app/", "db/"]);
  assert.deepEqual(confgate.normalizeSelector(["app/", ""]), []);
  for (const bad of [["/abs"], ["a//b"], ["a\u0000"], ["x".repeat(1025)], ["\ud800"]]) {
    assert.throws(() => confgate.normalizeSelector(bad), Error, JSON.stringify(bad));
  }
});

function feed(r, s, msgs) {
  const evs = [];
  for (const m of msgs) evs.push(...r.handle(s, m).events);
  return evs;
}

const view = (r) =>
  [...r.entries.values()].map((e) => `${e.key}=${e.value}@${e.partition}:${e.offset}`).sort();

test("snapshot then deltas", () => {
  const r = new Replica();
  const s = new Session(false);
  const [a, b, c, x] = [ent("app/a", "1", 0, 0), ent("app/b", "2", 1, 0), ent("app/c", "3", 0, 1), ent("db/x", "9", 1, 1)];
  assert.deepEqual(feed(r, s, [chunk(a, b), chunk(c)]), []);
  assert.equal(r.entries.size, 0, "nothing visible before the end");
  const evs = feed(r, s, [chunk(x), end(cur([2, 2]), INITIAL, a, b, c, x)]);
  assert.deepEqual(evs.map((e) => e.kind), ["snapshot"]);
  const evs2 = feed(r, s, [
    delta(cur([4, 3]), put(ent("app/b", "2b", 1, 2)), del("app/c", 0, 2), put(ent("app/d", "4", 0, 3))),
    progress(cur([5, 3])),
  ]);
  assert.deepEqual(evs2.map((e) => `${e.kind} ${e.key}`), ["put app/b", "delete app/c", "put app/d"]);
  assert.equal(evs2[0].cursor, cur([4, 3]).toString());
  assert.deepEqual(view(r), ["app/a=1@0:0", "app/b=2b@1:2", "app/d=4@0:3", "db/x=9@1:1"]);
  assert.ok(r.cursor.equals(cur([5, 3])));
  assert.deepEqual(r.digest.toBytes(), digestOf(a, ent("app/b", "2b", 1, 2), ent("app/d", "4", 0, 3), x));
});

test("older versions ignored", () => {
  const r = new Replica();
  const s = new Session(false);
  feed(r, s, snapshot(cur([10]), INITIAL, ent("k", "new", 0, 8), ent("j", "old", 0, 2)));
  const evs = feed(r, s, [
    delta(cur([11]), put(ent("k", "older", 0, 5)), put(ent("j", "newer", 0, 9)), del("k", 0, 7)),
    delta(cur([12]), put(ent("k", "same", 0, 8))),
  ]);
  assert.deepEqual(evs.map((e) => `${e.kind} ${e.key}`), ["put j"]);
  assert.deepEqual(view(r), ["j=newer@0:9", "k=new@0:8"]);
});

test("never backwards", async (t) => {
  const cases = {
    "delta behind": [delta(cur([5, 4]), put(ent("k", "v2", 1, 3)))],
    "delta of another topic": [delta(cur([9, 9], TOPIC_B), put(ent("k", "v2", 1, 8)))],
    "progress behind": [progress(cur([4, 5]))],
    "snapshot behind": snapshot(cur([3, 5]), INITIAL, ent("k", "v0", 0, 1)),
    "reset snapshot behind": snapshot(cur([3, 5]), pb.SnapshotReason.SNAPSHOT_REASON_HISTORY_EXPIRED, ent("k", "v0", 0, 1)),
    "change past its own cursor": [delta(cur([6, 5]), put(ent("k", "v2", 0, 6)))],
  };
  for (const [name, bad] of Object.entries(cases)) {
    await t.test(name, () => {
      const r = new Replica();
      feed(r, new Session(false), snapshot(cur([5, 5]), INITIAL, ent("k", "v1", 0, 4)));
      assert.throws(() => feed(r, new Session(true), bad), (e) => e instanceof ProtocolViolation && !e.fresh);
      assert.ok(r.cursor.equals(cur([5, 5])));
      assert.deepEqual(view(r), ["k=v1@0:4"]);
    });
  }
});

test("resets replace the view", async (t) => {
  const R = pb.SnapshotReason;
  const cases = [
    ["slow subscriber", snapshot(cur([6, 2]), R.SNAPSHOT_REASON_SLOW_SUBSCRIBER, ent("a", "1b", 0, 4)), ["a=1b@0:4"], cur([6, 2])],
    ["state rebuilt behind", snapshot(cur([1]), R.SNAPSHOT_REASON_STATE_REBUILT, ent("a", "0", 0, 0)), ["a=0@0:0"], cur([1])],
    ["topic changed", snapshot(cur([1], TOPIC_B), R.SNAPSHOT_REASON_TOPIC_CHANGED, ent("z", "26", 0, 0)), ["z=26@0:0"], cur([1], TOPIC_B)],
    ["empty", [end(cur([5, 5]), R.SNAPSHOT_REASON_HISTORY_EXPIRED)], [], cur([5, 5])],
  ];
  for (const [name, second, want, c] of cases) {
    await t.test(name, () => {
      const r = new Replica();
      const s = new Session(true);
      feed(r, s, snapshot(cur([3, 1]), INITIAL, ent("a", "1", 0, 0), ent("b", "2", 0, 1)));
      const evs = feed(r, s, second);
      assert.deepEqual(evs.map((e) => [e.kind, e.cursor]), [["reset", c.toString()]]);
      assert.deepEqual(view(r), want);
    });
  }
});

test("snapshot checks", async (t) => {
  for (const bad of ["digest", "entryCount", "entry past its cursor"]) {
    await t.test(bad, () => {
      const r = new Replica();
      const msgs = snapshot(cur([4]), INITIAL, ent("a", "1", 0, bad === "entry past its cursor" ? 4 : 2), ent("b", "2", 0, 1));
      const e = msgs[msgs.length - 1].message.snapshotEnd;
      if (bad === "digest") e.digest = digestOf(ent("a", "1", 0, 0));
      if (bad === "entryCount") e.entryCount = 3n;
      assert.throws(() => feed(r, new Session(false), msgs), (err) => err instanceof ProtocolViolation && err.fresh);
      assert.equal(r.cursor, undefined);
      assert.equal(r.entries.size, 0);
    });
  }
});

test("channel options: keepalive defaults, overridden by channelOptions", () => {
  const { channelArgs } = require("../dist/grpc");
  const [, opts] = channelArgs({});
  assert.deepEqual(opts, {
    "grpc.keepalive_time_ms": 20000,
    "grpc.keepalive_timeout_ms": 10000,
    "grpc.max_receive_message_length": 16 << 20,
  });
  const [, given] = channelArgs({ maxReceiveMessageLength: null, channelOptions: { "grpc.keepalive_time_ms": 60000 } });
  assert.deepEqual(given, { "grpc.keepalive_time_ms": 60000, "grpc.keepalive_timeout_ms": 10000 });
});
