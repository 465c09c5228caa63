"use strict";
// The state file is one format for the Go and Node clients: the Go client
// (clients/gostatefile, a test tool built by scripts/polyglot-test.sh as
// CONFGATE_GOSTATEFILE) loads what Node wrote and Node loads what Go wrote,
// for a view of the test gateway (CONFGATE_ADDR); and both write the same
// bytes for the same view.

const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { execFile } = require("node:child_process");
const { randomUUID } = require("node:crypto");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { confgate } = require("./helpers");
const sf = require("../dist/statefile");

function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run scripts/polyglot-test.sh, which builds and starts what these tests need`);
  return v;
}

let addr, gostatefile, client, dir, prefix;
before(async () => {
  addr = env("CONFGATE_ADDR");
  gostatefile = env("CONFGATE_GOSTATEFILE");
  await confgate.digestReady();
  client = new confgate.Client({ addrs: [addr] });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "confgate-node-crosslang-"));
  // A view with what a file must carry exactly: headers, a content type,
  // binary and empty values, keys whose UTF-8 and UTF-16 orders differ.
  prefix = `node-x-${randomUUID().slice(0, 8)}/`;
  await client.put(`${prefix}json`, '{"a":1}', { contentType: "application/json", headers: [{ key: "by", value: "node" }] });
  await client.put(`${prefix}bin`, Buffer.from([0, 255, 1, 254]));
  await client.put(`${prefix}empty`, "");
  await client.put(`${prefix}\u{10400}`, "astral");
  await client.put(`${prefix}\uff21`, "fullwidth", { waitApplied: true });
});
after(() => {
  client?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

function go(args) {
  return new Promise((resolve, reject) => {
    execFile(gostatefile, args, { timeout: 60_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`gostatefile ${args.join(" ")}: ${err.message}\n${stderr}`));
      else resolve(JSON.parse(stdout));
    });
  });
}

// A view as the Go helper prints it (offsets as decimal strings, bytes in base64).
const asGo = (entries) =>
  entries.map((e) => ({
    key: e.key,
    value: e.value.toString("base64"),
    partition: e.partition,
    offset: e.offset,
    content_type: e.contentType,
    headers: e.headers.map((h) => ({ key: h.key, value: h.value.toString("base64") })),
  }));
const byKey = (a, b) => Buffer.compare(Buffer.from(a.key), Buffer.from(b.key));

test("Node loads what the Go client wrote, and writes the same bytes for it", async () => {
  const file = path.join(dir, "from-go.state");
  const fromGo = await go(["-mode", "write", "-addr", addr, "-prefix", prefix, "-file", file]);
  assert.equal(fromGo.entries.length, 5);

  const r = await sf.readStateFile(file, [prefix]);
  assert.equal(r.cursor.toString(), fromGo.cursor);
  assert.equal(r.digest.toBytes().toString("hex"), fromGo.digest);
  assert.deepEqual(asGo(sf.sortedEntries(r.entries.values())), fromGo.entries);

  const sub = new confgate.Subscription({ addrs: [`unix:${path.join(dir, "nobody.sock")}`], prefixes: [prefix], stateFile: file, reportIntervalMs: -1 });
  try {
    await sub.waitLoaded(10_000);
    assert.ok(sub.status().fromFile);
    assert.equal(sub.cursor, fromGo.cursor);
    assert.deepEqual(asGo(sub.entries()), fromGo.entries);
  } finally {
    await sub.close();
  }

  const again = path.join(dir, "again.state");
  await sf.writeStateFile(again, [prefix], { entries: sf.sortedEntries(r.entries.values()), cursor: r.cursor, digest: r.digest.toBytes() });
  assert.ok(fs.readFileSync(again).equals(fs.readFileSync(file)), "Node's file is byte for byte the Go client's");
});

test("the Go client loads what Node wrote", async () => {
  const file = path.join(dir, "from-node.state");
  const sub = new confgate.Subscription({ addrs: [addr], prefixes: [prefix], stateFile: file, reportIntervalMs: -1 });
  let view;
  try {
    await sub.waitSynced(20_000);
  } finally {
    await sub.close(); // the last write
    view = { cursor: sub.cursor, digest: sub.digest.toString("hex"), entries: asGo(sub.entries()) };
  }
  const loaded = await go(["-mode", "read", "-prefix", prefix, "-file", file]);
  assert.ok(loaded.from_file, "served from the file, no gateway");
  assert.deepEqual({ cursor: loaded.cursor, digest: loaded.digest, entries: [...loaded.entries].sort(byKey) }, view);
  assert.equal(view.entries.length, 5);
});
