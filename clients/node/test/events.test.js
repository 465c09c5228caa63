"use strict";
// The ways a Subscription tells about changes: onChange, the EventEmitter
// events and events() iterators, all fed by one source; and its status as
// plain data that survives JSON.

const { test, before } = require("node:test");
const assert = require("node:assert/strict");
const grpc = require("@grpc/grpc-js");
const h = require("./helpers");
const { confgate, cur, ent, snapshot, delta, put, del, progress, INITIAL } = h;
const { startGateway, feedGateway, send } = require("./fakegateway");

before(() => confgate.digestReady());

function open(t, addrs, opts = {}) {
  const sub = new confgate.Subscription({
    addrs,
    backoffMinMs: 1,
    backoffMaxMs: 20,
    shuffle: false,
    reportIntervalMs: -1,
    logger: { info() {}, warn() {} },
    ...opts,
  });
  t.after(() => sub.close());
  return sub;
}

const summary = (e) => `${e.kind} ${e.key} ${e.cursor}`;

test("onChange, 'change' listeners and iterators see the same events in the same order", async (t) => {
  const g = await feedGateway(t, () => snapshot(cur([2]), INITIAL, ent("a", "1", 0, 0), ent("b", "2", 0, 1)));
  const fromOption = [];
  const order = [];
  const sub = open(t, [g.addr], {
    onChange: (e) => {
      fromOption.push(summary(e));
      order.push("onChange");
    },
  });
  const fromListener = [];
  sub.on("ready", () => order.push("ready"));
  sub.on("change", (e) => {
    fromListener.push(summary(e));
    order.push("change");
  });
  const fromIterator = [];
  const iterated = (async () => {
    for await (const e of sub) fromIterator.push(summary(e));
    return "done";
  })();
  const fromEvents = [];
  const second = (async () => {
    for await (const e of sub.events()) {
      fromEvents.push(summary(e));
      if (fromEvents.length === 3) break; // detaches this iterator only
    }
  })();
  await sub.waitSynced(5000);
  const call = await g.stream(0);
  send(call, [delta(cur([3]), put(ent("a", "1b", 0, 2))), delta(cur([4]), del("b", 0, 3)), delta(cur([5]), put(ent("c", "3", 0, 4)))]);
  await h.eventually("the deltas", () => fromIterator.length === 4, 5000);
  await second;
  assert.equal(sub.queues.size, 1, "a loop left early detaches its iterator");
  const want = [
    `snapshot  ${cur([2])}`,
    `put a ${cur([3])}`,
    `delete b ${cur([4])}`,
    `put c ${cur([5])}`,
  ];
  assert.deepEqual(fromOption, want);
  assert.deepEqual(fromListener, want);
  assert.deepEqual(fromIterator, want);
  assert.deepEqual(fromEvents, want.slice(0, 3));
  assert.deepEqual(order.slice(0, 3), ["ready", "onChange", "change"], "ready comes before the snapshot's change");
  assert.equal(order.filter((o) => o === "ready").length, 1);
  await sub.close();
  assert.equal(await iterated, "done", "the iterator ends when the subscription is closed");
  assert.equal(sub.queues.size, 0);
  // An iterator made after the end is done at once.
  assert.deepEqual(await sub.events().next(), { value: undefined, done: true });
});

test("listeners that throw or reject are logged and do not stop the view or the other listeners", async (t) => {
  const g = await feedGateway(t, () => snapshot(cur([1]), INITIAL, ent("a", "1", 0, 0)));
  const warned = [];
  const sub = open(t, [g.addr], { logger: { info() {}, warn: (m) => warned.push(m) } });
  const unhandled = [];
  const onUnhandled = (e) => unhandled.push(e);
  process.on("unhandledRejection", onUnhandled);
  t.after(() => process.off("unhandledRejection", onUnhandled));
  const seen = [];
  sub.on("change", () => {
    throw new Error("listener bug");
  });
  sub.on("change", async () => {
    throw new Error("async listener bug");
  });
  sub.once("change", (e) => seen.push(`once ${e.kind}`));
  sub.on("change", (e) => seen.push(e.kind));
  sub.on("ready", () => {
    throw new Error("ready listener bug");
  });
  await sub.waitSynced(5000);
  send(await g.stream(0), [delta(cur([2]), put(ent("a", "2", 0, 1)))]);
  await h.eventually("the delta", () => seen.length === 3, 5000);
  assert.deepEqual(seen, ["once snapshot", "snapshot", "put"]);
  assert.equal(sub.get("a").value.toString(), "2");
  assert.ok(sub.isRunning);
  await h.eventually("the rejected promises to be logged", () => warned.filter((m) => /async listener bug/.test(m)).length === 2, 5000);
  assert.equal(warned.filter((m) => /"change" listener threw; continuing: Error: listener bug/.test(m)).length, 2);
  assert.equal(warned.filter((m) => /"ready" listener threw/.test(m)).length, 1);
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(unhandled, []);
});

test("a permanent error: 'error' then 'close', iterators throw it, waitSynced rejects", async (t) => {
  const refused = () => ({ code: grpc.status.INVALID_ARGUMENT, details: "selector: prefix not allowed" });
  const g = await startGateway(t, refused);
  const sub = open(t, [g.addr]);
  const order = [];
  sub.on("error", (e) => order.push(`error ${e.code}`));
  sub.on("close", () => order.push("close"));
  const it = sub.events();
  await assert.rejects(it.next(), (e) => e.code === grpc.status.INVALID_ARGUMENT);
  assert.deepEqual(await it.next(), { value: undefined, done: true }, "thrown once, then done");
  await assert.rejects(sub.waitSynced(1000), (e) => e.code === grpc.status.INVALID_ARGUMENT);
  await h.eventually("close", () => order.includes("close"), 5000);
  assert.deepEqual(order, [`error ${grpc.status.INVALID_ARGUMENT}`, "close"]);
  await assert.rejects(sub.events().next(), (e) => e.code === grpc.status.INVALID_ARGUMENT, "an iterator made after the stop throws too");
  assert.match(sub.status().lastError, /prefix not allowed/);

  // Without an "error" listener nothing is emitted, so nothing crashes.
  const g2 = await startGateway(t, refused);
  const quiet = open(t, [g2.addr]);
  let closed = false;
  quiet.on("close", () => (closed = true));
  await assert.rejects(quiet.waitSynced(5000), (e) => e.code === grpc.status.INVALID_ARGUMENT);
  await h.eventually("close", () => closed, 5000);
  assert.equal(quiet.lastError.code, grpc.status.INVALID_ARGUMENT);
});

test("a slow iterator gets one reset in place of what it missed; others are not held up", async (t) => {
  const g = await feedGateway(t, () => snapshot(cur([1]), INITIAL, ent("k", "0", 0, 0)));
  const warned = [];
  const sub = open(t, [g.addr], { logger: { info() {}, warn: (m) => warned.push(m) } });
  const slow = sub.events({ maxBuffered: 5 });
  const fast = [];
  const fastDone = (async () => {
    for await (const e of sub.events({ maxBuffered: 5 })) fast.push(e);
  })();
  await sub.waitSynced(5000);
  const call = await g.stream(0);
  // 20 deltas, without the slow consumer taking any.
  for (let i = 1; i <= 20; i++) send(call, [delta(cur([i + 1]), put(ent("k", String(i), 0, i)))]);
  await h.eventually("the deltas", () => sub.cursor === cur([21]).toString(), 5000);
  // 21 events (snapshot and 20 puts) into a buffer of 5: at the sixth it
  // collapsed into a reset, which stood for the later ones too.
  assert.equal(summary((await slow.next()).value), `reset  ${cur([21])}`);
  const pending = slow.next();
  const none = await Promise.race([pending, new Promise((res) => setTimeout(() => res("nothing more"), 100))]);
  assert.equal(none, "nothing more");
  assert.equal(warned.filter((m) => /fell 6 events behind/.test(m)).length, 1, warned.join("\n"));
  // Once the reset is taken, events queue again.
  send(call, [delta(cur([22]), put(ent("k", "21", 0, 21)))]);
  assert.equal(summary((await pending).value), `put k ${cur([22])}`);
  await h.eventually("the fast consumer", () => fast.length === 22, 5000);
  assert.equal(fast.length, 22, "a consumer that keeps up gets every event");
  assert.equal(sub.get("k").value.toString(), "21", "the view has every change");
  await sub.close();
  await fastDone;
  assert.deepEqual(await slow.next(), { value: undefined, done: true });
  assert.throws(() => sub.events({ maxBuffered: 0 }), /positive integer/);
});

test("status is plain data that survives JSON, and 'status' tells when it changes", async (t) => {
  const g = await feedGateway(t, (n) => (n === 0 ? [] : snapshot(cur([1n << 60n]), INITIAL, ent("a", "1", 0, 0))));
  const sub = open(t, [g.addr]);
  const statuses = [];
  sub.on("status", (s) => statuses.push(s));
  (await g.stream(0)).emit("error", { code: grpc.status.UNAVAILABLE, details: "going away" });
  await sub.waitSynced(5000);
  send(await g.stream(1), [progress(cur([(1n << 60n) + 1n]))]);
  await h.eventually("the progress", () => sub.status().lagRecords === "3", 5000);
  const st = sub.status();
  assert.deepEqual(JSON.parse(JSON.stringify(st)), st);
  for (const [k, v] of Object.entries(st)) {
    assert.ok(["string", "boolean", "number"].includes(typeof v), `${k} is ${typeof v}`);
    if (typeof v === "number") assert.ok(Number.isSafeInteger(v), k);
  }
  assert.deepEqual(
    { ...st, addr: undefined },
    {
      connected: true,
      addr: undefined,
      stale: true, // the progress message said so
      fromFile: false,
      cursor: cur([(1n << 60n) + 1n]).toString(),
      lagRecords: "3",
      reconnects: 1,
      resets: 0,
      lastError: "14 UNAVAILABLE: going away",
    },
  );
  assert.equal(sub.lastError.code, grpc.status.UNAVAILABLE);
  assert.equal(JSON.stringify(confgate.Cursor.parse(st.cursor)), JSON.stringify(st.cursor), "a Cursor stringifies to its text");
  const e = sub.get("a");
  assert.equal(e.offset, "0");
  assert.ok(Object.isFrozen(e));
  // What a listener saw, in order: every change of the connection, none
  // for the cursor alone.
  const seen = statuses.map((s) => [s.connected, s.stale, s.reconnects, s.lastError !== undefined]);
  assert.deepEqual(seen, [
    [false, true, 0, false], // the first attempt
    [false, true, 0, true], // it failed
    [false, true, 1, true], // reconnecting
    [true, true, 1, true], // connected: the snapshot's first chunk
    [true, false, 1, true], // synced
    [true, true, 1, true], // the gateway says it is stale
  ]);
  await sub.close();
  assert.deepEqual(statuses.at(-1).connected, false);
});
