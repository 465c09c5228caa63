"use strict";
// Conditional and retry-safe writes (preconditions, request IDs, apply)
// against fake gateways in this process: what the client sends, the request
// ID it keeps across a retry, and how it reads a PreconditionFailure.

const { test } = require("node:test");
const assert = require("node:assert/strict");
const grpc = require("@grpc/grpc-js");
const { confgate, pb, cur } = require("./helpers");
const { preconditionFailureStatus, decodeRpcStatus, STATUS_DETAILS_KEY } = require("../dist/errors");

// answer(method, n, request) returns the response of call n (over all
// methods), or a grpc error object to fail it with.
async function startGateway(t, answer) {
  const calls = [];
  const serve = (method) => (call, cb) => {
    const n = calls.length;
    calls.push({ method, request: call.request });
    const out = answer(method, n, call.request);
    if (out && typeof out.code === "number") cb(out);
    else cb(null, out);
  };
  const server = new grpc.Server();
  const unimplemented = (call) => call.emit("error", { code: grpc.status.UNIMPLEMENTED });
  server.addService(pb.ConfigServiceService, {
    subscribe: unimplemented,
    getSnapshot: unimplemented,
    diff: unimplemented,
    get: (_c, cb) => cb({ code: grpc.status.UNIMPLEMENTED }),
    put: serve("put"),
    delete: serve("delete"),
    apply: serve("apply"),
  });
  const port = await new Promise((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  t.after(() => server.forceShutdown());
  return { addr: `127.0.0.1:${port}`, calls, requests: () => calls.map((c) => c.request) };
}

function client(t, addrs) {
  const c = new confgate.Client({ addrs });
  t.after(() => c.close());
  return c;
}

const ok = (method, n, req) => {
  const version = { partition: 1, offset: BigInt(10 + n) };
  if (method === "apply") {
    return {
      versions: req.operations.map((_, i) => ({ partition: i % 2, offset: BigInt(10 + i) })),
      cursor: cur([20, 20]).encode(),
    };
  }
  return { version, cursor: cur([0, 11 + n]).encode() };
};

const unavailable = () => ({ code: grpc.status.UNAVAILABLE, details: "draining" });

function failed(keys, detail = true) {
  return () => {
    const metadata = new grpc.Metadata();
    if (detail) metadata.set(STATUS_DETAILS_KEY, preconditionFailureStatus("precondition failed", keys));
    return { code: grpc.status.FAILED_PRECONDITION, details: "precondition failed", metadata };
  };
}

test("a request ID is generated per call and kept on retry", async (t) => {
  const down = await startGateway(t, unavailable);
  const up = await startGateway(t, ok);
  const c = client(t, [down.addr, up.addr]);
  const w1 = await c.put("a", "1");
  const w2 = await c.delete("a");
  const w3 = await c.apply([{ key: "a", value: "2" }]);
  const sent = down.requests().map((r) => r.requestId);
  assert.deepEqual(up.requests().map((r) => r.requestId), sent, "a retry sends the same request ID");
  for (const id of sent) assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.equal(new Set(sent).size, 3, "each call has its own");
  assert.deepEqual([w1.requestId, w2.requestId, w3.requestId], sent);
  assert.deepEqual(w1, { partition: 1, offset: "10", cursor: cur([0, 11]).toString(), duplicate: false, requestId: sent[0] });
});

test("a given request ID, and duplicate", async (t) => {
  const g = await startGateway(t, (method) => {
    if (method === "put") return { version: { partition: 2, offset: 7n }, cursor: cur([0, 0, 8]).encode(), duplicate: true };
    if (method === "delete") return { version: { partition: 2, offset: 9n }, cursor: cur([0, 0, 10]).encode(), duplicate: true };
    return { versions: [{ partition: 0, offset: 3n }], cursor: cur([4]).encode(), duplicate: true };
  });
  const c = client(t, [g.addr]);
  const w = await c.put("a", "1", { requestId: "deploy-42/a" });
  const d = await c.delete("a", { requestId: "deploy-42/del" });
  const a = await c.apply([{ key: "a", delete: true }], { requestId: "deploy-42/set" });
  assert.deepEqual(g.requests().map((r) => r.requestId), ["deploy-42/a", "deploy-42/del", "deploy-42/set"]);
  assert.ok(w.duplicate && w.partition === 2 && w.offset === "7" && w.requestId === "deploy-42/a");
  assert.ok(d.duplicate && d.offset === "9");
  assert.deepEqual(a, { versions: [{ partition: 0, offset: "3" }], cursor: cur([4]).toString(), duplicate: true, requestId: "deploy-42/set" });
});

test("preconditions are sent", async (t) => {
  const g = await startGateway(t, ok);
  const c = client(t, [g.addr]);
  const entry = { key: "k", value: Buffer.from("v"), partition: 3, offset: "33" };
  await c.put("k", "v");
  await c.put("k", "v", { ifAbsent: true });
  await c.put("k", "v", { ifVersion: { partition: 1, offset: 5 } });
  await c.put("k", "v", { ifVersion: entry });
  await c.delete("k", { ifVersion: { partition: 2, offset: 6n } });
  await c.delete("k", { ifAbsent: true });
  await assert.rejects(c.put("k", "v", { ifAbsent: true, ifVersion: entry }), /exclude/);
  await assert.rejects(c.delete("k", { ifVersion: { partition: -1, offset: 5 } }), /no version/);
  await assert.rejects(c.put("k", "v", { ifVersion: { partition: 0, offset: 1.5 } }), /no version/);
  // Offsets as this client returns them (decimal strings), bigints, and
  // numbers only where they are exact.
  await c.put("k", "v", { ifVersion: { partition: 4, offset: "9007199254740993" } });
  for (const bad of [2 ** 53, -1, "-1", "1e3", " 7", "", "9223372036854775808", 1n << 63n, null]) {
    await assert.rejects(c.put("k", "v", { ifVersion: { partition: 0, offset: bad } }), /no version/, String(bad));
  }
  const v = (partition, offset) => ({ condition: { $case: "version", version: { partition, offset } } });
  assert.deepEqual(g.requests().map((r) => r.precondition), [
    undefined,
    { condition: { $case: "absent", absent: true } },
    v(1, 5n),
    v(3, 33n),
    v(2, 6n),
    { condition: { $case: "absent", absent: true } },
    v(4, 9007199254740993n),
  ]);
});

test("apply sends the change set", async (t) => {
  const g = await startGateway(t, ok);
  const c = client(t, [g.addr]);
  const r = await c.apply(
    [
      { key: "a", value: "1", contentType: "text/plain", headers: [{ key: "by", value: "test" }], ifAbsent: true },
      { key: "b", delete: true, ifVersion: { partition: 0, offset: 4n } },
      { key: "c", value: Buffer.from([0]) },
    ],
    { waitApplied: true },
  );
  await c.apply([{ key: "a", value: "x" }], { validateOnly: true });
  await assert.rejects(c.apply([{ value: "no key" }]), /operations\[0\] has no key/);
  const [req, req2] = g.requests();
  assert.deepEqual(req.operations, [
    {
      key: "a", delete: false, value: Buffer.from("1"), contentType: "text/plain",
      headers: [{ key: "by", value: Buffer.from("test") }], precondition: { condition: { $case: "absent", absent: true } },
    },
    {
      key: "b", delete: true, value: Buffer.alloc(0), contentType: "", headers: [],
      precondition: { condition: { $case: "version", version: { partition: 0, offset: 4n } } },
    },
    { key: "c", delete: false, value: Buffer.from([0]), contentType: "", headers: [], precondition: undefined },
  ]);
  assert.ok(req.waitApplied && !req.validateOnly && req.requestId === r.requestId);
  assert.deepEqual(r.versions, [{ partition: 0, offset: "10" }, { partition: 1, offset: "11" }, { partition: 0, offset: "12" }]);
  assert.deepEqual(JSON.parse(JSON.stringify(r)), r, "an ApplyResult survives JSON");
  assert.equal(r.cursor, cur([20, 20]).toString());
  assert.ok(req2.validateOnly && !req2.waitApplied);
});

test("PreconditionFailedError carries the current versions", async (t) => {
  const g = await startGateway(t, failed([{ key: "a", version: { partition: 1, offset: 5n } }, { key: "b" }]));
  const c = client(t, [g.addr]);
  for (const call of [
    () => c.put("a", "1", { ifVersion: { partition: 1, offset: 4 } }),
    () => c.delete("a", { ifAbsent: true }),
    () => c.apply([{ key: "a", value: "1", ifAbsent: true }, { key: "b", delete: true, ifVersion: { partition: 0, offset: 1 } }]),
  ]) {
    await assert.rejects(call(), (e) => {
      assert.ok(e instanceof confgate.PreconditionFailedError);
      assert.deepEqual(e.keys, [{ key: "a", version: { partition: 1, offset: "5" } }, { key: "b" }]);
      assert.deepEqual(JSON.parse(JSON.stringify(e.keys)), e.keys);
      assert.equal(e.code, grpc.status.FAILED_PRECONDITION);
      assert.equal(e.details, "precondition failed");
      assert.equal(e.message, "precondition failed");
      assert.equal(e.cause.code, grpc.status.FAILED_PRECONDITION);
      return true;
    });
  }
  assert.equal(g.calls.length, 3, "a failed precondition is not retried");
});

test("PreconditionFailedError without its detail", async (t) => {
  const g = await startGateway(t, failed([], false));
  const c = client(t, [g.addr]);
  await assert.rejects(c.put("a", "1", { ifAbsent: true }), (e) => {
    assert.ok(e instanceof confgate.PreconditionFailedError);
    assert.deepEqual(e.keys, []);
    assert.equal(e.message, "precondition failed");
    return true;
  });
  // An unconditional write has no precondition to blame: the gateway's
  // error is passed on as it is.
  await assert.rejects(c.put("a", "1"), (e) => !(e instanceof confgate.PreconditionFailedError) && e.code === grpc.status.FAILED_PRECONDITION);
});

test("other errors pass through", async (t) => {
  const g = await startGateway(t, () => ({ code: grpc.status.INVALID_ARGUMENT, details: "request ID reused for other keys" }));
  const c = client(t, [g.addr]);
  await assert.rejects(
    c.apply([{ key: "a", value: "1", ifAbsent: true }], { requestId: "x" }),
    (e) => !(e instanceof confgate.PreconditionFailedError) && e.code === grpc.status.INVALID_ARGUMENT,
  );
});

test("google.rpc.Status decoding skips unknown fields", () => {
  const st = preconditionFailureStatus("m", [{ key: "k" }]);
  // An unknown varint field (15) and an unknown detail type in front.
  const other = Buffer.from([0x1a, 0x07, 0x0a, 0x01, 0x78, 0x12, 0x02, 0x08, 0x01]);
  const decoded = decodeRpcStatus(Buffer.concat([Buffer.from([0x78, 0x05]), other, st]));
  assert.equal(decoded.code, grpc.status.FAILED_PRECONDITION);
  assert.equal(decoded.message, "m");
  assert.deepEqual(decoded.details.map((d) => d.typeUrl), ["x", "type.googleapis.com/confgate.v1.PreconditionFailure"]);
});
