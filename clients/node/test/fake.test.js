"use strict";
// The Subscription's connection logic against scripted fake gateways
// (@grpc/grpc-js servers in this process): resume cursor on reconnect,
// failover, refused selectors and cursors, snapshots that fail their checks.

const { test, before } = require("node:test");
const assert = require("node:assert/strict");
const grpc = require("@grpc/grpc-js");
const h = require("./helpers");
const { confgate, pb, cur, ent, digestOf, snapshot, delta, put, INITIAL } = h;
const { startGateway, feedGateway, send } = require("./fakegateway");

before(() => confgate.digestReady());

function open(t, addrs, opts = {}) {
  const sub = new confgate.Subscription({
    addrs,
    backoffMinMs: 1,
    backoffMaxMs: 20,
    shuffle: false,
    logger: { info() {}, warn() {} },
    ...opts,
  });
  t.after(() => sub.close());
  return sub;
}

test("selector normalized, resume on the next gateway", async (t) => {
  const g1 = await startGateway(t, (n, req, call) => {
    if (n > 0) return "hold";
    send(call, snapshot(cur([2]), INITIAL, ent("a", "1", 0, 0), ent("b", "2", 0, 1)));
    return "end";
  });
  const g2 = await startGateway(t, (n, req, call) => {
    send(call, [delta(cur([3]), put(ent("a", "1b", 0, 2)))]);
    return "hold";
  });
  const sub = open(t, [g1.addr, g2.addr], { prefixes: ["db/", "app/", "app/x/"] });
  await sub.waitSynced(5000);
  assert.deepEqual((await g1.request(0)).selector.prefixes, ["app/", "db/"]);
  assert.equal((await g1.request(0)).resumeCursor.length, 0);
  assert.deepEqual((await g2.request(0)).resumeCursor, cur([2]).encode());
  await h.eventually("the delta from the second gateway", () => sub.cursor === cur([3]).toString(), 5000);
  assert.equal(sub.get("a").value.toString(), "1b");
  const st = sub.status();
  assert.equal(st.addr, g2.addr);
  assert.equal(st.reconnects, 1);
});

test("an invalid selector is permanent", async (t) => {
  const g = await startGateway(t, () => ({ code: grpc.status.INVALID_ARGUMENT, details: "selector prefix not allowed" }));
  const sub = open(t, [g.addr]);
  await assert.rejects(sub.waitSynced(5000), (e) => e.code === grpc.status.INVALID_ARGUMENT);
  await h.eventually("the subscription to stop", () => !sub.isRunning, 5000);
  assert.equal(g.requests.length, 1);
  assert.ok(sub.status().stale);
});

test("a refused cursor is dropped", async (t) => {
  const g = await startGateway(t, (n, req, call) => {
    if (n === 0) {
      send(call, snapshot(cur([2]), INITIAL, ent("a", "1", 0, 0), ent("b", "2", 0, 1)));
      return "end";
    }
    if (req.resumeCursor.length > 0) return { code: grpc.status.INVALID_ARGUMENT, details: "resume cursor: unknown format" };
    send(call, snapshot(cur([3]), INITIAL, ent("a", "1b", 0, 2)));
    return "hold";
  });
  const sub = open(t, [g.addr]);
  await sub.waitSynced(5000);
  assert.deepEqual((await g.request(1)).resumeCursor, cur([2]).encode());
  assert.equal((await g.request(2)).resumeCursor.length, 0);
  await h.eventually("the fresh snapshot", () => sub.cursor === cur([3]).toString(), 5000);
  assert.deepEqual(sub.entries().map((e) => e.key), ["a"]);
  assert.ok(sub.isRunning);
});

test("a snapshot failing its digest resubscribes fresh", async (t) => {
  const g = await startGateway(t, (n, req, call) => {
    if (n === 0) {
      send(call, snapshot(cur([2]), INITIAL, ent("a", "1", 0, 0), ent("b", "2", 0, 1)));
      const bad = snapshot(cur([4]), pb.SnapshotReason.SNAPSHOT_REASON_HISTORY_EXPIRED, ent("a", "1b", 0, 2), ent("b", "2", 0, 1));
      bad[bad.length - 1].message.snapshotEnd.digest = digestOf(ent("a", "1", 0, 0));
      send(call, bad);
    } else if (n === 1) {
      send(call, snapshot(cur([4]), INITIAL, ent("a", "1b", 0, 2), ent("b", "2", 0, 1)));
    }
    return "hold";
  });
  const sub = open(t, [g.addr]);
  assert.equal((await g.request(1)).resumeCursor.length, 0);
  await h.eventually("the good snapshot", () => sub.cursor === cur([4]).toString(), 5000);
  assert.deepEqual(sub.entries().map((e) => `${e.key}=${e.value}`), ["a=1b", "b=2"]);
  assert.equal(sub.status().resets, 1);
});

test("a cursor behind drops the stream; resume with the view's own cursor", async (t) => {
  const g = await startGateway(t, (n, req, call) => {
    if (n === 0) {
      send(call, snapshot(cur([5, 5]), INITIAL, ent("k", "v1", 0, 4)));
      send(call, [delta(cur([5, 4]), put(ent("k", "v2", 1, 3)))]);
    }
    return "hold";
  });
  const sub = open(t, [g.addr]);
  await sub.waitSynced(5000);
  assert.deepEqual((await g.request(1)).resumeCursor, cur([5, 5]).encode());
  assert.equal(sub.cursor, cur([5, 5]).toString());
  assert.equal(sub.get("k").value.toString(), "v1");
  const st = sub.status();
  assert.equal(st.resets, 0);
  assert.ok(sub.lastError instanceof confgate.ProtocolViolation);
  assert.equal(st.lastError, sub.lastError.message);
});

test("close and waitSynced", async (t) => {
  const g = await startGateway(t, () => "hold");
  const sub = open(t, [g.addr]);
  await assert.rejects(sub.waitSynced(50), /no snapshot within/);
  await g.request(0);
  await sub.close();
  await sub.close();
  await assert.rejects(sub.waitSynced(1000), confgate.SubscriptionClosed);
  assert.equal(sub.size, 0);
  assert.equal(sub.cursor, "");
  assert.ok(!sub.isRunning);
});

// The fleet view: client identity on Subscribe, and Report.

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

test("client info sent; the generated ID is stable across reconnects", async (t) => {
  const g = await feedGateway(t, (n) => (n === 0 ? [] : snapshot(cur([1]), INITIAL, ent("a", "1", 0, 0))));
  const sub = open(t, [g.addr], { service: "payments", labels: { zone: "eu-1", version: "1.2.3" } });
  (await g.stream(0)).end(); // a reconnect
  await sub.waitSynced(5000);
  const [r0, r1] = [await g.request(0), await g.request(1)];
  assert.match(sub.clientId, /^[0-9a-f]{32}$/);
  assert.equal(r0.client.clientId, sub.clientId);
  assert.deepEqual(r1.client, r0.client);
  assert.equal(r0.client.service, "payments");
  assert.deepEqual(r0.client.labels, { zone: "eu-1", version: "1.2.3" });
  assert.equal(sub.status().reconnects, 1);
  const other = open(t, [g.addr], { reportIntervalMs: -1 });
  assert.notEqual(other.clientId, sub.clientId); // one per Subscription
  const g2 = await startGateway(t, () => "hold");
  const named = open(t, [g2.addr], { clientId: "pod-7", reportIntervalMs: -1 });
  assert.equal(named.clientId, "pod-7");
  assert.equal((await g2.request(0)).client.clientId, "pod-7");
});

test("identity validated", () => {
  const bad = [
    { clientId: "has space" },
    { clientId: "é" },
    { clientId: "x".repeat(129) },
    { service: "s".repeat(129) },
    { service: "\uD800" },
    { labels: { "": "v" } },
    { labels: { ["k".repeat(129)]: "v" } },
    { labels: { k: "v".repeat(129) } },
    { labels: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, "v"])) },
  ];
  for (const o of bad) {
    assert.throws(() => new confgate.Subscription({ addrs: ["127.0.0.1:1"], ...o }), /confgate: /, JSON.stringify(o));
  }
});

test("identity at its limits is accepted", async (t) => {
  const g = await startGateway(t, () => "hold");
  const labels = Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`k${String(i).padStart(3, "0")}${"k".repeat(124)}`, "v".repeat(128)]));
  open(t, [g.addr], { clientId: "x".repeat(128), service: "s".repeat(128), labels, reportIntervalMs: -1 });
  assert.equal(Object.keys((await g.request(0)).client.labels).length, 16);
});

test("report after a snapshot and after a delta, with the view's cursor and digest", async (t) => {
  const a0 = ent("a", "1", 0, 0), b1 = ent("b", "2", 0, 1), a2 = ent("a", "3", 0, 2);
  const g = await feedGateway(t, () => snapshot(cur([2]), INITIAL, a0, b1));
  const sub = open(t, [g.addr], { prefixes: ["a", "b"], service: "svc", reportIntervalMs: 2500 });
  await sub.waitSynced(5000);
  await h.eventually("a report of the snapshot", () => g.reports.length >= 1, 1000);
  let r = g.reports[0].req;
  assert.deepEqual(r.appliedCursor, cur([2]).encode());
  assert.deepEqual(r.digest, digestOf(a0, b1));
  assert.deepEqual(r.digest, sub.digest);
  assert.equal(r.client.clientId, sub.clientId);
  assert.equal(r.client.service, "svc");
  assert.deepEqual(r.selector.prefixes, ["a", "b"]);
  assert.deepEqual(r.rejections, []);
  send(g.calls[0], [delta(cur([3]), put(a2))]);
  // At once, but not before interval/5 (500 ms) after the first.
  await h.eventually("a report of the delta", () => g.reports.length >= 2, 1500);
  assert.ok(g.reports[1].at - g.reports[0].at >= 450, `${g.reports[1].at - g.reports[0].at} ms`);
  r = g.reports[1].req;
  assert.deepEqual(r.appliedCursor, cur([3]).encode());
  assert.deepEqual(r.digest, digestOf(a2, b1));
});

test("reports coalesce", async (t) => {
  const g = await feedGateway(t, () => snapshot(cur([1]), INITIAL, ent("k", "0", 0, 0)));
  const sub = open(t, [g.addr], { reportIntervalMs: 5000 }); // at most one a second
  await sub.waitSynced(5000);
  await h.eventually("the first report", () => g.reports.length === 1, 1000);
  for (let i = 1; i <= 20; i++) {
    send(g.calls[0], [delta(cur([i + 1]), put(ent("k", String(i), 0, i)))]);
    await sleep(5);
  }
  await h.eventually("all deltas", () => sub.cursor === cur([21]).toString(), 5000);
  await h.eventually("the report of the burst", () => g.reports.length >= 2, 2000);
  await sleep(1300);
  assert.ok(g.reports.length >= 2 && g.reports.length <= 3, `${g.reports.length} reports`);
  assert.deepEqual(g.lastReport().appliedCursor, cur([21]).encode());
  assert.deepEqual(g.lastReport().digest, sub.digest);
});

test("periodic report", async (t) => {
  const g = await feedGateway(t, () => snapshot(cur([1]), INITIAL, ent("k", "0", 0, 0)));
  const sub = open(t, [g.addr], { reportIntervalMs: 300 });
  await sub.waitSynced(5000);
  await h.eventually("four reports without changes", () => g.reports.length >= 4, 3000);
  const ts = g.reports.map((r) => r.at);
  for (let i = 1; i < ts.length; i++) assert.ok(ts[i] - ts[i - 1] >= 250, `${ts}`);
  for (const r of g.reports) assert.deepEqual(r.req.appliedCursor, cur([1]).encode());
});

test("a progress message does not ask for a report", async (t) => {
  const g = await feedGateway(t, () => snapshot(cur([1]), INITIAL, ent("k", "0", 0, 0)));
  const sub = open(t, [g.addr], { reportIntervalMs: 1000 });
  await sub.waitSynced(5000);
  await h.eventually("the first report", () => g.reports.length === 1, 1000);
  await sleep(300);
  send(g.calls[0], [h.progress(cur([5]))]);
  await h.eventually("the progress", () => sub.cursor === cur([5]).toString(), 5000);
  await sleep(300);
  assert.equal(g.reports.length, 1); // the next tick tells
  await h.eventually("the periodic report", () => g.reports.length === 2, 1500);
  assert.deepEqual(g.reports[1].req.appliedCursor, cur([5]).encode());
});

test("reporting off", async (t) => {
  const g = await feedGateway(t, () => snapshot(cur([1]), INITIAL, ent("k", "0", 0, 0)));
  const sub = open(t, [g.addr], { reportIntervalMs: -1 });
  await sub.waitSynced(5000);
  sub.reject("k", "no");
  await sleep(300);
  assert.equal(g.reports.length, 0);
  assert.equal((await g.request(0)).client.clientId, sub.clientId);
});

test("reject and accept", async (t) => {
  const g = await feedGateway(t, () => snapshot(cur([2]), INITIAL, ent("a", "1", 0, 0), ent("b", "2", 0, 1)));
  const sub = open(t, [g.addr], { prefixes: ["a", "b", "c"], reportIntervalMs: 500 });
  await sub.waitSynced(5000);
  await h.eventually("the first report", () => g.reports.length === 1, 1000);
  sub.reject("b", "schema: max_rps must be positive");
  sub.reject("c", "must exist"); // absent: rejected without a version
  sub.reject("zzz", "outside the selector: ignored");
  sub.reject("b", "x".repeat(2000)); // latest per key, cut to 1 KiB
  await h.eventually("a report with the rejections", () => g.lastReport().rejections.length === 2, 1000);
  const rj = g.lastReport().rejections;
  assert.deepEqual(rj.map((r) => r.key), ["b", "c"]);
  assert.deepEqual(rj[0].version, { partition: 0, offset: 1n });
  assert.equal(rj[0].reason, "x".repeat(1024));
  assert.equal(rj[1].version, undefined);
  assert.equal(rj[1].reason, "must exist");
  // Reported until the key changes: b's new version ends its rejection.
  const n = g.reports.length;
  send(g.calls[0], [delta(cur([3]), put(ent("b", "3", 0, 2)))]);
  await h.eventually("the report after the delta", () => g.reports.length > n, 1000);
  assert.deepEqual(g.lastReport().rejections.map((r) => r.key), ["c"]);
  sub.accept("c");
  await h.eventually("no rejection left", () => g.lastReport().rejections.length === 0, 1000);
  sub.accept("c"); // nothing to clear: ignored
});

test("reject keeps the latest 100 keys", async (t) => {
  const g = await feedGateway(t, () => snapshot(cur([1]), INITIAL));
  const sub = open(t, [g.addr], { reportIntervalMs: 500 });
  await sub.waitSynced(5000);
  for (let i = 0; i <= 100; i++) sub.reject(`k${String(i).padStart(3, "0")}`, "no");
  await h.eventually("a report with 100 rejections", () => g.lastReport()?.rejections.length === 100, 2000);
  const keys = g.lastReport().rejections.map((r) => r.key);
  assert.equal(keys[0], "k001");
  assert.equal(keys[99], "k100");
});

test("UNIMPLEMENTED stops reporting until the next reconnect", async (t) => {
  const g = await feedGateway(t, (n) => (n === 0 ? snapshot(cur([1]), INITIAL, ent("a", "1", 0, 0)) : []));
  g.reportCode = grpc.status.UNIMPLEMENTED;
  const sub = open(t, [g.addr], { reportIntervalMs: 200 });
  await sub.waitSynced(5000);
  await h.eventually("the refused report", () => g.reports.length === 1, 1000);
  send(g.calls[0], [delta(cur([2]), put(ent("a", "2", 0, 1)))]);
  await h.eventually("the delta", () => sub.cursor === cur([2]).toString(), 5000);
  sub.reject("a", "no");
  await sleep(600);
  assert.equal(g.reports.length, 1); // no more reports on this stream
  let st = sub.status();
  assert.ok(st.connected && sub.isRunning);
  assert.equal(st.reconnects, 0);
  // The next stream reports again.
  g.reportCode = undefined;
  g.calls[0].end();
  await h.eventually("a report on the new stream", () => g.reports.length >= 2, 2000);
  const r = g.reports[1].req;
  assert.deepEqual(r.appliedCursor, cur([2]).encode());
  assert.deepEqual(r.rejections.map((x) => x.key), ["a"]);
  st = sub.status();
  assert.equal(st.reconnects, 1);
});

test("a failed report is retried at the next tick", async (t) => {
  const g = await feedGateway(t, () => snapshot(cur([1]), INITIAL, ent("a", "1", 0, 0)));
  g.reportCode = grpc.status.UNAVAILABLE;
  const sub = open(t, [g.addr], { reportIntervalMs: 200 });
  await sub.waitSynced(5000);
  await h.eventually("reports retried", () => g.reports.length >= 3, 2000);
  assert.equal(sub.status().reconnects, 0);
});
