"use strict";
// Bearer tokens (token, tokenFile, insecureToken): validation, the loopback
// rule, token file rotation, and the metadata fake gateways see from
// Subscription and Client.

const { test, before } = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const grpc = require("@grpc/grpc-js");
const h = require("./helpers");
const { confgate, pb, cur, ent, snapshot, INITIAL } = h;
const { checkToken, loopbackTarget, TokenSource, TOKEN_FILE_CHECK_MS } = require("../dist/grpc");

before(() => confgate.digestReady());

const TOKEN_A = `cgt_${"a".repeat(43)}`;
const TOKEN_B = `cgt_${"b".repeat(43)}`;

const authOf = (call) => call.metadata.get("authorization").join("|");

function tmpdir(t) {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), "confgate-token-"));
  t.after(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

// A gateway answering every verb, recording the authorization of each call.
// subscribe(n, call) drives Subscribe call n.
async function startGateway(t, subscribe) {
  const seen = [];
  const server = new grpc.Server();
  server.addService(pb.ConfigServiceService, {
    subscribe(call) {
      const n = seen.filter((s) => s.method === "subscribe").length;
      seen.push({ method: "subscribe", auth: authOf(call) });
      subscribe(n, call);
    },
    getSnapshot(call) {
      seen.push({ method: "getSnapshot", auth: authOf(call) });
      call.write({ message: { $case: "end", end: snapshot(cur([1]), INITIAL)[0].message.snapshotEnd } });
      call.end();
    },
    get(call, cb) {
      seen.push({ method: "get", auth: authOf(call) });
      cb(null, { entry: ent("a", "1", 0, 0), cursor: cur([1]).encode() });
    },
    put(call, cb) {
      seen.push({ method: "put", auth: authOf(call) });
      cb(null, { version: { partition: 0, offset: 1n }, cursor: cur([2]).encode() });
    },
    delete(call, cb) {
      seen.push({ method: "delete", auth: authOf(call) });
      cb(null, { version: { partition: 0, offset: 2n }, cursor: cur([3]).encode() });
    },
  });
  const port = await new Promise((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  t.after(() => server.forceShutdown());
  return { addr: `127.0.0.1:${port}`, seen };
}

test("checkToken", () => {
  checkToken(TOKEN_A);
  checkToken("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln");
  for (const [tok, want] of [["", /empty/], [`Bearer ${TOKEN_A}`, /Bearer/], ["two words", /offset 3/], ["ünï", /offset 0/]]) {
    assert.throws(() => checkToken(tok), want);
  }
});

test("loopbackTarget", () => {
  for (const [target, want] of [
    ["127.0.0.1:1", true], ["[::1]:1", true], ["localhost:1", true], ["dns:///localhost:1", true],
    ["unix:///run/cg.sock", true], ["10.0.0.5:50051", false], ["gw.example:443", false],
    ["localhost.evil.com:1", false], ["0.0.0.0:1", false],
  ]) {
    assert.equal(loopbackTarget(target), want, target);
  }
});

test("plaintext to a remote gateway is refused", () => {
  assert.throws(() => new confgate.Client({ addrs: ["127.0.0.1:1", "10.0.0.5:1"], token: TOKEN_A }), /refusing to send the token in plaintext to 10\.0\.0\.5:1/);
  assert.throws(() => new confgate.Subscription({ addrs: ["gw.example:1"], token: TOKEN_A }), /plaintext/);
  new confgate.Client({ addrs: ["10.0.0.5:1"], token: TOKEN_A, insecureToken: true }).close();
  new confgate.Client({ addrs: ["10.0.0.5:1"], token: TOKEN_A, credentials: grpc.credentials.createSsl() }).close();
  assert.throws(() => new confgate.Client({ addrs: ["127.0.0.1:1"], token: TOKEN_A, tokenFile: "/x" }), /exclude each other/);
});

test("token file rotation", (t) => {
  const file = path.join(tmpdir(t), "token");
  fs.writeFileSync(file, `${TOKEN_A}\n`);
  let now = 1000;
  const warnings = [];
  const src = new TokenSource(undefined, file, () => now, (m) => warnings.push(m));
  assert.equal(src.token(), TOKEN_A);
  fs.writeFileSync(`${file}.new`, `  ${TOKEN_B}\n`);
  fs.renameSync(`${file}.new`, file); // as a Kubernetes projected volume swaps files
  assert.equal(src.token(), TOKEN_A); // within the check interval
  now += TOKEN_FILE_CHECK_MS;
  assert.equal(src.token(), TOKEN_B);
  // Broken, then gone: the last good token stays, reported once each.
  fs.writeFileSync(file, "not a token");
  now += TOKEN_FILE_CHECK_MS;
  assert.equal(src.token(), TOKEN_B);
  fs.rmSync(file);
  now += TOKEN_FILE_CHECK_MS;
  assert.equal(src.token(), TOKEN_B);
  assert.equal(warnings.length, 2);
  fs.writeFileSync(file, TOKEN_A);
  now += TOKEN_FILE_CHECK_MS;
  assert.equal(src.token(), TOKEN_A);
  // Never valid, or missing: throws at construction, without the content.
  fs.writeFileSync(file, "secret words");
  assert.throws(() => new TokenSource(undefined, file), (e) => /space/.test(e.message) && !e.message.includes("secret"));
  assert.throws(() => new TokenSource(undefined, `${file}.missing`), /ENOENT/);
});

test("Subscription sends the token, and the rotated one on reconnect", async (t) => {
  const file = path.join(tmpdir(t), "token");
  fs.writeFileSync(file, `${TOKEN_A}\n`);
  let drop;
  const g = await startGateway(t, (n, call) => {
    if (n > 0) return; // hold
    for (const m of snapshot(cur([1]), INITIAL, ent("a", "1", 0, 0))) call.write(m);
    drop = () => call.emit("error", { code: grpc.status.UNAVAILABLE, details: "draining" });
  });
  const sub = new confgate.Subscription({
    addrs: [g.addr], tokenFile: file, backoffMinMs: 1, backoffMaxMs: 20, logger: { info() {}, warn() {} },
  });
  t.after(() => sub.close());
  await sub.waitSynced(5000);
  assert.equal(g.seen[0].auth, `Bearer ${TOKEN_A}`);
  fs.writeFileSync(`${file}.new`, `${TOKEN_B}\n`);
  fs.renameSync(`${file}.new`, file);
  await new Promise((r) => setTimeout(r, TOKEN_FILE_CHECK_MS + 100));
  drop();
  await h.eventually("the second Subscribe", () => g.seen.length > 1, 5000);
  assert.equal(g.seen[1].auth, `Bearer ${TOKEN_B}`);
});

for (const [name, opts, want] of [["with a token", { token: TOKEN_A }, `Bearer ${TOKEN_A}`], ["without", {}, ""]]) {
  test(`Client sends the token on every call: ${name}`, async (t) => {
    const g = await startGateway(t, () => {});
    const c = new confgate.Client({ addrs: [g.addr], ...opts });
    t.after(() => c.close());
    assert.equal((await c.get("a")).value.toString(), "1");
    await c.put("a", "2");
    await c.delete("a");
    await c.snapshot();
    assert.deepEqual(g.seen.map((s) => s.method), ["get", "put", "delete", "getSnapshot"]);
    assert.deepEqual(g.seen.map((s) => s.auth), [want, want, want, want]);
  });
}
