"use strict";
// The Node client against a running gateway. scripts/polyglot-test.sh starts
// one (clients/testgateway) and sets CONFGATE_ADDR (the gateway),
// CONFGATE_PROXY_ADDR (a TCP proxy to it that the tests cut and restore),
// CONFGATE_CONTROL_URL (the proxy's control endpoint) and CONFGATE_BIN (the
// confgate CLI, for cross-checks).

const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { execFileSync } = require("node:child_process");
const { randomBytes, randomUUID } = require("node:crypto");
const grpc = require("@grpc/grpc-js");
const { confgate, pb, eventually } = require("./helpers");

function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run scripts/polyglot-test.sh, which starts a gateway for these tests`);
  return v;
}

let addr, proxyAddr, controlURL, client;
before(async () => {
  addr = env("CONFGATE_ADDR");
  proxyAddr = env("CONFGATE_PROXY_ADDR");
  controlURL = env("CONFGATE_CONTROL_URL");
  client = new confgate.Client({ addrs: [addr] });
  await confgate.digestReady();
});
after(() => client?.close());

const newPrefix = () => `node-${randomUUID().slice(0, 12)}/`;

// Writes n entries and waits until the gateway applied them all: a put is
// acknowledged once Kafka has it, not once the gateway applied it, so without
// the wait a subscription opened right after could see the last writes as
// deltas.
async function seed(prefix, n) {
  for (let i = 0; i < n; i++) {
    const key = `${prefix}k${String(i).padStart(3, "0")}`;
    const waitApplied = i === n - 1;
    if (i % 3 === 0) {
      await client.put(key, `v${i}`, { contentType: "application/json", headers: [{ key: "by", value: "node-test" }], waitApplied });
    } else {
      await client.put(key, `v${i}`, { waitApplied });
    }
  }
}

function open(addrs, prefixes, events, opts = {}) {
  return new confgate.Subscription({
    addrs,
    prefixes,
    onChange: events ? (e) => events.push(e) : undefined,
    backoffMinMs: 20,
    backoffMaxMs: 500,
    shuffle: false,
    ...opts,
  });
}

async function control(what) {
  const r = await fetch(`${controlURL}/proxy/${what}`, { method: "POST" });
  assert.equal(r.status, 200);
}

// grpc.health.v1 without a health package: HealthCheckRequest{service} is
// field 1 (string); HealthCheckResponse{status} field 1 (enum, SERVING = 1).
function health(service) {
  const name = Buffer.from(service);
  const req = name.length ? Buffer.concat([Buffer.from([0x0a, name.length]), name]) : Buffer.alloc(0);
  const c = new grpc.Client(addr, grpc.credentials.createInsecure());
  return new Promise((resolve, reject) => {
    c.makeUnaryRequest("/grpc.health.v1.Health/Check", (x) => x, (x) => x, req, { deadline: Date.now() + 5000 }, (err, resp) => {
      c.close();
      if (err) return reject(err);
      assert.equal(resp[0], 0x08);
      resolve(resp[1]);
    });
  });
}

const same = (a, b) =>
  assert.deepEqual(
    a.map((e) => [e.key, e.value.toString("hex"), e.partition, e.offset, e.contentType, e.headers.map((h) => [h.key, h.value.toString()])]),
    b.map((e) => [e.key, e.value.toString("hex"), e.partition, e.offset, e.contentType, e.headers.map((h) => [h.key, h.value.toString()])]),
  );

test("health answers SERVING", async () => {
  assert.equal(await health(""), 1);
  assert.equal(await health("confgate.v1.ConfigService"), 1);
});

test("the snapshot matches GetSnapshot", async () => {
  const prefix = newPrefix();
  await seed(prefix, 25);
  await client.put(`${prefix}bin`, Buffer.from(Array.from({ length: 256 }, (_, i) => i)), { waitApplied: true });
  const events = [];
  const sub = open([addr], [prefix], events);
  try {
    await sub.waitSynced(20_000);
    const snap = await client.snapshot([prefix], { minCursor: sub.cursor });
    assert.equal(snap.entries.length, 26);
    same(sub.entries(), snap.entries);
    assert.deepEqual(sub.digest, snap.digest);
    assert.equal(sub.size, 26);
    const e = sub.get(`${prefix}k000`);
    assert.equal(e.contentType, "application/json");
    assert.ok(e.headers.some((h) => h.key === "by" && h.value.toString() === "node-test"));
    assert.equal(sub.get(`${prefix}bin`).value.length, 256);
    assert.ok(confgate.Cursor.parse(sub.cursor));
    assert.deepEqual(events.map((e) => e.kind), ["snapshot"]);
    const st = sub.status();
    assert.ok(st.connected && st.addr === addr && !st.stale && st.resets === 0, JSON.stringify(st));
    assert.deepEqual(JSON.parse(JSON.stringify(st)), st, "a status survives JSON");
    assert.equal(st.cursor, sub.cursor);
  } finally {
    await sub.close();
  }
});

test("matches the confgate CLI", { skip: !process.env.CONFGATE_BIN && "CONFGATE_BIN not set" }, async () => {
  const cli = process.env.CONFGATE_BIN;
  const prefix = newPrefix();
  await seed(prefix, 5);
  const events = [];
  const sub = open([addr], [prefix], events);
  try {
    await sub.waitSynced(20_000);
    const put = JSON.parse(execFileSync(cli, ["--addr", addr, "put", `${prefix}cli`, "from-cli", "-o", "json"], { timeout: 30_000 }).toString().trim().split("\n").pop());
    await eventually("the CLI's put", () => events.length >= 2);
    assert.equal(events[1].kind, "put");
    assert.equal(events[1].key, `${prefix}cli`);
    assert.equal(events[1].entry.partition, put.version.partition);
    assert.equal(events[1].entry.offset, String(put.version.offset));
    const lines = execFileSync(cli, ["--addr", addr, "snapshot", prefix, "--min-cursor", put.cursor, "-o", "json"], { timeout: 30_000 })
      .toString().trim().split("\n").map((l) => JSON.parse(l));
    const end = lines.pop();
    assert.deepEqual(
      lines.map((e) => [e.key, e.value, e.version.partition, String(e.version.offset)]),
      sub.entries().map((e) => [e.key, e.value.toString(), e.partition, e.offset]),
    );
    assert.equal(end.entry_count, sub.size);
    assert.deepEqual(Buffer.from(end.digest, "base64url"), sub.digest);
  } finally {
    await sub.close();
  }
});

test("put and delete arrive as deltas", async () => {
  const prefix = newPrefix();
  await seed(prefix, 3);
  const events = [];
  const sub = open([addr], [prefix], events);
  try {
    await sub.waitSynced(20_000);
    const w1 = await client.put(`${prefix}new`, "1", { contentType: "text/plain" });
    const w2 = await client.put(`${prefix}k001`, "changed");
    const w3 = await client.delete(`${prefix}k002`);
    await client.put("elsewhere/not-selected", "x");
    await eventually("three changes", () => events.length >= 4);
    const evs = events.slice(1);
    assert.deepEqual(evs.map((e) => `${e.kind} ${e.key}`), [`put ${prefix}new`, `put ${prefix}k001`, `delete ${prefix}k002`]);
    assert.deepEqual([evs[0].entry.partition, evs[0].entry.offset, evs[0].entry.contentType], [w1.partition, w1.offset, "text/plain"]);
    assert.deepEqual([evs[1].entry.value.toString(), evs[1].entry.offset], ["changed", w2.offset]);
    assert.equal(evs[2].entry, undefined);
    assert.equal(sub.get(`${prefix}k002`), undefined);
    await eventually("the cursor to include the delete", () =>
      confgate.Cursor.parse(sub.cursor).covers(confgate.Cursor.parse(w3.cursor)));
    const snap = await client.snapshot([prefix], { minCursor: sub.cursor });
    same(sub.entries(), snap.entries);
    assert.deepEqual(sub.digest, snap.digest);
    assert.equal(sub.status().resets, 0);
    assert.equal((await client.get(`${prefix}new`, { minCursor: w1.cursor })).value.toString(), "1");
    assert.equal(await client.get(`${prefix}k002`, { minCursor: w3.cursor }), undefined);
  } finally {
    await sub.close();
  }
});

test("after a disconnect, resume yields exactly the missed changes", async () => {
  const prefix = newPrefix();
  await seed(prefix, 4);
  const events = [];
  await control("up");
  const sub = open([proxyAddr], [prefix], events);
  try {
    await sub.waitSynced(20_000);
    const before = sub.cursor;
    await control("down");
    await eventually("the disconnect", () => !sub.status().connected);
    const w = [
      await client.put(`${prefix}k000`, "v0-new"),
      await client.put(`${prefix}added`, "a"),
      await client.delete(`${prefix}k003`),
    ];
    // While disconnected the view serves the last-known-good state.
    assert.equal(sub.get(`${prefix}k000`).value.toString(), "v0");
    assert.equal(sub.cursor, before);
    assert.ok(sub.status().stale);
    await control("up");
    await eventually("the missed changes", () => events.length >= 4);
    assert.deepEqual(events.map((e) => `${e.kind} ${e.key}`), [
      "snapshot ", `put ${prefix}k000`, `put ${prefix}added`, `delete ${prefix}k003`,
    ]);
    assert.deepEqual(events.slice(1, 3).map((e) => e.entry.offset), [w[0].offset, w[1].offset]);
    const st = sub.status();
    assert.equal(st.resets, 0);
    assert.ok(st.reconnects >= 1);
    const snap = await client.snapshot([prefix], { minCursor: sub.cursor });
    same(sub.entries(), snap.entries);
    assert.deepEqual(sub.digest, snap.digest);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(events.length, 4, "nothing but the missed changes arrived");
  } finally {
    await control("up");
    await sub.close();
  }
});

// Reads a raw Subscribe stream until stop() says enough.
function readStream(c, req, stop) {
  return new Promise((resolve, reject) => {
    const msgs = [];
    const call = c.subscribe(req, { deadline: Date.now() + 30_000 });
    call.on("data", (m) => {
      msgs.push(m);
      if (stop(m, msgs)) {
        call.cancel();
        resolve(msgs);
      }
    });
    call.on("error", (e) => (e.code === grpc.status.CANCELLED ? resolve(msgs) : reject(e)));
    call.on("end", () => resolve(msgs));
  });
}

test("raw resume by cursor is exact, with no snapshot", async () => {
  const prefix = newPrefix();
  await seed(prefix, 3);
  const c = new pb.ConfigServiceClient(addr, grpc.credentials.createInsecure());
  try {
    const sel = { prefixes: [prefix] };
    const first = await readStream(c, pb.SubscribeRequest.fromPartial({ selector: sel }), (m) => m.message?.$case === "snapshotEnd");
    const endMsg = first[first.length - 1].message.snapshotEnd;
    assert.equal(endMsg.entryCount, 3n);
    assert.equal(endMsg.reset, false);
    await client.put(`${prefix}k000`, "x");
    await client.delete(`${prefix}k001`);
    await client.put(`${prefix}k000`, "y");
    const got = [];
    const msgs = await readStream(c, pb.SubscribeRequest.fromPartial({ selector: sel, resumeCursor: endMsg.cursor }), (m) => {
      if (m.message?.$case === "delta") {
        for (const ch of m.message.delta.changes) {
          got.push(ch.change.$case === "put" ? `put ${ch.change.put.key}=${ch.change.put.value}` : `delete ${ch.change.delete.key}`);
        }
      }
      return got.length >= 3;
    });
    for (const m of msgs) assert.ok(["delta", "progress"].includes(m.message?.$case), `resume sent ${m.message?.$case}`);
    assert.deepEqual(got, [`put ${prefix}k000=x`, `delete ${prefix}k001`, `put ${prefix}k000=y`]);
  } finally {
    c.close();
  }
});

test("a malformed cursor gives INVALID_ARGUMENT", async () => {
  const prefix = newPrefix();
  const bad = [Buffer.from("\x07not-a-cursor"), Buffer.from("\x01truncated")];
  const c = new pb.ConfigServiceClient(addr, grpc.credentials.createInsecure());
  try {
    for (const cur of bad) {
      await assert.rejects(
        readStream(c, pb.SubscribeRequest.fromPartial({ selector: { prefixes: [prefix] }, resumeCursor: cur }), () => true),
        (e) => e.code === grpc.status.INVALID_ARGUMENT && /cursor/.test(e.details),
      );
    }
    await assert.rejects(
      readStream(c, pb.SubscribeRequest.fromPartial({ selector: { prefixes: ["/abs"] } }), () => true),
      (e) => e.code === grpc.status.INVALID_ARGUMENT,
    );
  } finally {
    c.close();
  }
  await assert.rejects(client.get(`${prefix}x`, { minCursor: bad[0] }), (e) => e.code === grpc.status.INVALID_ARGUMENT);
  await assert.rejects(client.snapshot([prefix], { minCursor: bad[1] }), (e) => e.code === grpc.status.INVALID_ARGUMENT);
  // The subscription rejects a bad selector locally, before any call.
  assert.throws(() => open([addr], ["/abs"]), /leading slash/);
});

test("a snapshot over 4 MiB works with default gRPC limits", async () => {
  const prefix = newPrefix();
  const size = 100 * 1024;
  const n = 60; // 6 MB in all
  const writer = new confgate.Client({ addrs: [addr], timeoutMs: 30_000 });
  try {
    for (let i = 0; i < n; i++) await writer.put(`${prefix}big${String(i).padStart(2, "0")}`, randomBytes(size), { waitApplied: i === n - 1 });
  } finally {
    writer.close();
  }
  // maxReceiveMessageLength: null is gRPC's default 4 MiB limit.
  const small = new confgate.Client({ addrs: [addr], timeoutMs: 30_000, maxReceiveMessageLength: null });
  let snap;
  try {
    snap = await small.snapshot([prefix]);
  } finally {
    small.close();
  }
  assert.equal(snap.entries.length, n);
  assert.ok(snap.entries.every((e) => e.value.length === size));
  const sub = open([addr], [prefix], undefined, { maxReceiveMessageLength: null });
  try {
    await sub.waitSynced(60_000);
    assert.equal(sub.size, n);
    assert.deepEqual(sub.digest, snap.digest);
    assert.equal(sub.status().resets, 0);
  } finally {
    await sub.close();
  }
});

// Conditional and retry-safe writes (preconditions, request IDs, apply).

const vOf = (x) => ({ partition: x.partition, offset: x.offset });

test("a conditional put race: one wins, the others get PreconditionFailedError", async () => {
  const key = `${newPrefix()}leader`;
  const writers = Array.from({ length: 4 }, () => new confgate.Client({ addrs: [addr], timeoutMs: 20_000 }));
  let results;
  try {
    results = await Promise.allSettled(writers.map((c, i) => c.put(key, `writer-${i}`, { ifAbsent: true })));
  } finally {
    for (const c of writers) c.close();
  }
  const wins = results.filter((r) => r.status === "fulfilled");
  const losses = results.filter((r) => r.status === "rejected");
  assert.equal(wins.length, 1, JSON.stringify(results.map((r) => r.status)));
  const w = wins[0].value;
  assert.equal(w.duplicate, false);
  for (const l of losses) {
    assert.ok(l.reason instanceof confgate.PreconditionFailedError, String(l.reason));
    assert.equal(l.reason.code, grpc.status.FAILED_PRECONDITION);
    // The winner's version; or none yet when the gateway decided the loser
    // in the same Kafka transaction as the winner (the key was still being
    // written).
    const ks = l.reason.keys;
    assert.ok(ks.length === 1 && ks[0].key === key, JSON.stringify(ks, (_, v) => (typeof v === "bigint" ? String(v) : v)));
    if (ks[0].version) assert.deepEqual(ks[0].version, vOf(w));
  }
  const got = await client.get(key, { minCursor: w.cursor });
  assert.deepEqual(vOf(got), vOf(w));
  assert.equal(got.value.toString(), `writer-${results.indexOf(wins[0])}`);
  // Once it landed, a late writer learns the winner's version.
  await assert.rejects(client.put(key, "late", { ifAbsent: true }), (e) => {
    assert.deepEqual(e.keys, [{ key, version: vOf(w) }]);
    return true;
  });
  // Compare-and-set on the version: the current one wins, a stale one
  // fails with the current version and writes nothing.
  const w2 = await client.put(key, "next", { ifVersion: got });
  await assert.rejects(client.put(key, "stale", { ifVersion: got }), (e) => {
    assert.deepEqual(e.keys, [{ key, version: vOf(w2) }]);
    return e instanceof confgate.PreconditionFailedError;
  });
  await assert.rejects(client.delete(key, { ifVersion: w }), (e) => {
    assert.deepEqual(e.keys, [{ key, version: vOf(w2) }]);
    return true;
  });
  const d = await client.delete(key, { ifVersion: w2 });
  await assert.rejects(client.put(key, "x", { ifVersion: w2 }), (e) => {
    assert.deepEqual(e.keys, [{ key }], "a deleted key is absent");
    return true;
  });
  assert.equal(await client.get(key, { minCursor: d.cursor }), undefined);
  const again = await client.put(key, "again", { ifAbsent: true });
  assert.ok(BigInt(again.offset) > BigInt(d.offset));
});

test("a reused request ID returns the original write", async () => {
  const prefix = newPrefix();
  const key = `${prefix}k`;
  const rid = `node-test-${prefix}put`;
  const w1 = await client.put(key, "v1", { requestId: rid });
  assert.equal(w1.duplicate, false);
  assert.equal(w1.requestId, rid);
  const again = await client.put(key, "v1", { requestId: rid });
  assert.equal(again.duplicate, true);
  assert.deepEqual(vOf(again), vOf(w1));
  assert.deepEqual(vOf(await client.get(key, { minCursor: again.cursor })), vOf(w1), "the retry wrote nothing");
  // A conditional write retried after it landed is a duplicate, not a
  // failed precondition.
  const cid = `node-test-${prefix}create`;
  const c1 = await client.put(`${prefix}c`, "1", { ifAbsent: true, requestId: cid });
  const c2 = await client.put(`${prefix}c`, "1", { ifAbsent: true, requestId: cid });
  assert.ok(c2.duplicate);
  assert.deepEqual(vOf(c2), vOf(c1));
  const d1 = await client.delete(key, { requestId: `node-test-${prefix}del` });
  const d2 = await client.delete(key, { requestId: `node-test-${prefix}del` });
  assert.ok(!d1.duplicate && d2.duplicate);
  assert.deepEqual(vOf(d2), vOf(d1));
  // Generated IDs differ per call: the same write twice lands twice.
  const g1 = await client.put(key, "v2");
  const g2 = await client.put(key, "v2");
  assert.notEqual(g1.requestId, g2.requestId);
  assert.ok(!g2.duplicate && g2.offset !== g1.offset);
  // Reusing an ID for other keys is refused.
  await assert.rejects(client.put(`${prefix}other`, "v1", { requestId: rid }), (e) => e.code === grpc.status.INVALID_ARGUMENT);
});

test("apply is all or nothing", async () => {
  const prefix = newPrefix();
  const [a, b, c] = [`${prefix}a`, `${prefix}b`, `${prefix}c`];
  const wa = await client.put(a, "a1");
  const wb = await client.put(b, "b1", { waitApplied: true });
  const before = await client.snapshot([prefix], { minCursor: wb.cursor });
  // One failing precondition (b exists): nothing of the set is written.
  await assert.rejects(
    client.apply([{ key: a, value: "a2", ifVersion: wa }, { key: b, value: "b2", ifAbsent: true }, { key: c, value: "c1" }], { waitApplied: true }),
    (e) => {
      assert.ok(e instanceof confgate.PreconditionFailedError, String(e));
      assert.deepEqual(e.keys, [{ key: b, version: vOf(wb) }]);
      return true;
    },
  );
  // Both failing: both named.
  await assert.rejects(
    client.apply([{ key: a, delete: true, ifVersion: { partition: wa.partition, offset: BigInt(wa.offset) + 1_000_000n } }, { key: c, value: "c1", ifVersion: wb }]),
    (e) => {
      assert.deepEqual([...e.keys].sort((x, y) => (x.key < y.key ? -1 : 1)), [{ key: a, version: vOf(wa) }, { key: c }]);
      return true;
    },
  );
  // validateOnly checks without writing.
  const v = await client.apply([{ key: c, value: "c1", ifAbsent: true }], { validateOnly: true });
  assert.deepEqual(v.versions, []);
  assert.equal(v.duplicate, false);
  const after = await client.snapshot([prefix]);
  assert.deepEqual(after.entries, before.entries, "a failed or validate-only change set writes nothing");
  // The same set with its preconditions holding lands whole.
  const rid = `node-test-${prefix}set`;
  const ops = [
    { key: a, value: "a2", contentType: "text/plain", ifVersion: wa },
    { key: b, delete: true, ifVersion: wb },
    { key: c, value: "c1", headers: [{ key: "by", value: "node-test" }], ifAbsent: true },
  ];
  const r = await client.apply(ops, { requestId: rid, waitApplied: true });
  assert.equal(r.versions.length, 3);
  assert.ok(!r.duplicate && r.requestId === rid);
  const snap = await client.snapshot([prefix], { minCursor: r.cursor });
  assert.deepEqual(
    snap.entries.map((e) => [e.key, e.value.toString(), vOf(e)]),
    [[a, "a2", r.versions[0]], [c, "c1", r.versions[2]]],
  );
  assert.equal(snap.entries[0].contentType, "text/plain");
  assert.ok(snap.entries[1].headers.some((h) => h.key === "by" && h.value.toString() === "node-test"));
  // Sent again with its request ID (a retry): the original versions, no write.
  const r2 = await client.apply(ops, { requestId: rid });
  assert.ok(r2.duplicate);
  assert.deepEqual(r2.versions, r.versions);
  assert.deepEqual((await client.snapshot([prefix], { minCursor: r2.cursor })).entries, snap.entries);
});

// The fleet view. The test gateway keeps one (clients/testgateway: records
// written at most every 200 ms, a closed client's record kept 2 s) and
// expects reports every 200 ms, the interval these tests report at.
const GATEWAY_NAME = process.env.CONFGATE_GATEWAY_NAME || "testgateway";
const REPORT_INTERVAL_MS = 200;
const FLEET_GRACE_MS = 2000;
const IN_SYNC = pb.FleetState.FLEET_STATE_IN_SYNC;

function getFleet(raw, req) {
  return new Promise((resolve, reject) =>
    raw.getFleet(pb.GetFleetRequest.fromPartial(req), new grpc.Metadata(), { deadline: Date.now() + 10_000 }, (err, resp) =>
      err ? reject(err) : resolve(resp),
    ),
  );
}

async function fleetEntry(raw, service, clientId) {
  const resp = await getFleet(raw, { service });
  const found = resp.clients.filter((c) => c.client?.clientId === clientId);
  assert.ok(found.length <= 1, `listed ${found.length} times`);
  return found[0];
}

// Polls GetFleet until the client is listed and cond holds for its entry.
async function waitFleet(raw, service, clientId, what, cond, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const fc = await fleetEntry(raw, service, clientId);
    if (fc && cond(fc)) return fc;
    if (Date.now() > deadline) {
      assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}; last GetFleet entry: ${JSON.stringify(fc, (_, v) => (typeof v === "bigint" ? String(v) : v))}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

test("the client shows in the fleet view: in sync, its rejection, a put, gone once closed", async () => {
  const prefix = newPrefix();
  const tag = prefix.slice(0, -1);
  const clientId = `${tag}-fleet`;
  const service = `${tag}-svc`;
  const labels = { lang: "node", zone: "test-a" };
  await seed(prefix, 3);
  const raw = new pb.ConfigServiceClient(addr, grpc.credentials.createInsecure());
  const logs = { info: [], warn: [], debug: [] };
  try {
    assert.equal(await fleetEntry(raw, service, clientId), undefined);
    const sub = open([addr], [prefix], undefined, {
      clientId,
      service,
      labels,
      reportIntervalMs: REPORT_INTERVAL_MS,
      logger: { info: (m) => logs.info.push(m), warn: (m) => logs.warn.push(m), debug: (m) => logs.debug.push(m) },
    });
    try {
      await sub.waitSynced(20_000);
      assert.equal(sub.clientId, clientId);
      const inSyncAtView = (fc) =>
        fc.state === IN_SYNC && Buffer.from(fc.appliedCursor).equals(confgate.Cursor.parse(sub.cursor).encode());

      let fc = await waitFleet(raw, service, clientId, "the client in sync at the subscription's cursor", inSyncAtView);
      assert.equal(fc.client.service, service);
      assert.deepEqual({ ...fc.client.labels }, labels);
      assert.equal(fc.gateway, GATEWAY_NAME);
      assert.deepEqual(fc.selector.prefixes, [prefix]);
      assert.ok(Buffer.from(fc.digest).equals(sub.digest) && fc.digest.length === 16);
      assert.ok(fc.connectedSinceUnixMs > 0n && fc.lastReportUnixMs >= fc.connectedSinceUnixMs);
      assert.deepEqual(fc.rejections, []);
      const resp = await getFleet(raw, { service });
      assert.deepEqual(
        resp.services.map((s) => [s.service, s.inSync, s.behind, s.diverged, s.notReporting, s.unknown]),
        [[service, 1, 0, 0, 0, 0]],
      );

      // A rejection of the current value shows with its version and reason.
      const key = `${prefix}k001`;
      const held = sub.get(key);
      assert.ok(held);
      sub.reject(key, "refused by the test: not a number");
      fc = await waitFleet(raw, service, clientId, "the rejection", (fc) => fc.rejections.length === 1);
      const rj = fc.rejections[0];
      assert.deepEqual(
        [rj.key, rj.version.partition, String(rj.version.offset), rj.reason],
        [key, held.partition, held.offset, "refused by the test: not a number"],
      );
      assert.equal(fc.state, IN_SYNC, "a rejection does not change the view's state");

      // A put through the client's write API: the view moves to the new
      // cursor, in sync again, and the key's new version ends its rejection.
      const w = await client.put(key, "42", { waitApplied: true });
      await eventually("the view to reach the put", () => confgate.Cursor.parse(sub.cursor).covers(confgate.Cursor.parse(w.cursor)));
      assert.deepEqual([sub.get(key).partition, sub.get(key).offset], [w.partition, w.offset]);
      fc = await waitFleet(
        raw, service, clientId, "the client in sync at the put's cursor",
        (fc) => inSyncAtView(fc) && fc.rejections.length === 0 &&
          confgate.Cursor.decode(fc.appliedCursor).covers(confgate.Cursor.parse(w.cursor)),
      );
      assert.ok(Buffer.from(fc.digest).equals(sub.digest));
      const st = sub.status();
      assert.ok(st.connected);
      assert.equal(st.reconnects, 0);
      assert.equal(st.lastError, undefined);
    } finally {
      await sub.close();
    }
    assert.ok(!sub.isRunning);
    // Closed: the gateway marks it disconnected, and GetFleet lists only
    // connected clients; the record is tombstoned after the grace.
    const bound = FLEET_GRACE_MS + 10 * REPORT_INTERVAL_MS;
    const start = Date.now();
    let gone = false;
    while (!gone && Date.now() - start < bound) {
      gone = (await fleetEntry(raw, service, clientId)) === undefined;
      if (!gone) await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(gone, `the closed client still listed after ${bound} ms`);
  } finally {
    raw.close();
  }
  assert.ok(!logs.debug.some((m) => m.includes("does not take reports")));
  assert.deepEqual(logs.warn, []);
});
