"use strict";
// The Subscription's connection logic against scripted fake gateways
// (@grpc/grpc-js servers in this process): resume cursor on reconnect,
// failover, refused selectors and cursors, snapshots that fail their checks.

const { test, before } = require("node:test");
const assert = require("node:assert/strict");
const grpc = require("@grpc/grpc-js");
const h = require("./helpers");
const { confgate, pb, cur, ent, digestOf, snapshot, delta, put, INITIAL } = h;

before(() => confgate.digestReady());

// script(n, request, call) drives Subscribe call n: it writes messages and
// returns "end" (finish OK), "hold" (keep the stream open until the client
// goes away) or a grpc error object.
async function startGateway(t, script) {
  const requests = [];
  const server = new grpc.Server();
  server.addService(pb.ConfigServiceService, {
    subscribe(call) {
      const n = requests.length;
      requests.push(call.request);
      const outcome = script(n, call.request, call);
      if (outcome === "end") call.end();
      else if (outcome && outcome !== "hold") call.emit("error", outcome);
    },
    getSnapshot: (call) => call.emit("error", { code: grpc.status.UNIMPLEMENTED }),
    get: (_c, cb) => cb({ code: grpc.status.UNIMPLEMENTED }),
    put: (_c, cb) => cb({ code: grpc.status.UNIMPLEMENTED }),
    delete: (_c, cb) => cb({ code: grpc.status.UNIMPLEMENTED }),
  });
  const port = await new Promise((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  const g = {
    addr: `127.0.0.1:${port}`,
    requests,
    stop: () => server.forceShutdown(),
    request: async (n) => {
      await h.eventually(`Subscribe call ${n}`, () => requests.length > n, 5000);
      return requests[n];
    },
  };
  t.after(g.stop);
  return g;
}

const send = (call, msgs) => msgs.forEach((m) => call.write(m));

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
  assert.ok(st.lastError instanceof confgate.ProtocolViolation);
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
