"use strict";
// The state file (stateFile): its layout, every check on load, the atomic
// writes, and a Subscription that boots from it while no gateway answers
// and then resumes from its cursor.

const { test, before } = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const grpc = require("@grpc/grpc-js");
const h = require("./helpers");
const { confgate, pb, cur, ent, snapshot, delta, put, progress, INITIAL } = h;
const { startGateway, feedGateway, send } = require("./fakegateway");
const sf = require("../dist/statefile");
const { entryFromProto } = require("../dist/types");

before(() => confgate.digestReady());

function tmpdir(t) {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), "confgate-node-state-"));
  t.after(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

// CRC-32C, bit by bit: an independent check of the file's checksum.
function crc32c(b) {
  let c = 0xffffffff;
  for (const x of b) {
    c ^= x;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

// A view to save: pb entries, their cursor and digest.
function view(es, c) {
  const entries = sf.sortedEntries(es.map(entryFromProto));
  return { entries, cursor: c, digest: h.digestOf(...es) };
}

const ENTRIES = [
  ent("app/b", "2", 1, 7),
  ent("app/a", "1", 0, 3),
  ent("app/\u00e9", "accent", 0, 4),
  // By UTF-8 bytes U+FF21 (EF BC A1) sorts before U+10400 (F0 90 90 80); by
  // UTF-16 code units (D801 DC00) after it. Files are in UTF-8 order.
  ent("app/\u{10400}", "astral", 1, 8),
  ent("app/\uff21", "fullwidth", 1, 9),
  ent("app/z", Buffer.alloc(0), 2, 0),
  pb.Entry.fromPartial({
    key: "app/h",
    value: Buffer.from([0, 1, 2, 255]),
    version: { partition: 2, offset: 9007199254740993n }, // 2^53 + 1
    contentType: "application/octet-stream",
    headers: [{ key: "content-type", value: Buffer.from("application/octet-stream") }, { key: "by", value: Buffer.from("test") }],
  }),
];
const CURSOR = cur([5, 10, 9007199254740994n]);

test("layout: magic, selector, entries in key order, end, CRC-32C", async (t) => {
  assert.equal(crc32c(Buffer.from("123456789")), 0xe3069283); // the CRC-32C check value
  const p = path.join(tmpdir(t), "view.state");
  const v = view(ENTRIES, CURSOR);
  const n = await sf.writeStateFile(p, ["app/"], v);
  const b = fs.readFileSync(p);
  assert.equal(b.length, n);
  assert.equal(fs.statSync(p).mode & 0o777, 0o600);
  assert.equal(b.subarray(0, 8).toString("latin1"), "CGSTATE\x01");
  assert.equal(b.readUInt32BE(b.length - 4), crc32c(b.subarray(0, b.length - 4)));
  // Records: the selector, one chunk (the entries are small), the end.
  let pos = 8;
  const record = () => {
    let len = 0;
    for (let shift = 0; ; shift += 7) {
      const c = b[pos++];
      len += (c & 0x7f) * 2 ** shift;
      if (c < 0x80) break;
    }
    const r = b.subarray(pos, pos + len);
    pos += len;
    return r;
  };
  assert.deepEqual(pb.Selector.decode(record()).prefixes, ["app/"]);
  const chunk = pb.SubscribeResponse.decode(record()).message;
  assert.equal(chunk.$case, "snapshotChunk");
  assert.deepEqual(
    chunk.snapshotChunk.entries.map((e) => e.key),
    ["app/a", "app/b", "app/h", "app/z", "app/\u00e9", "app/\uff21", "app/\u{10400}"],
  );
  assert.deepEqual(chunk.snapshotChunk.entries[2], ENTRIES[6]);
  const end = pb.SubscribeResponse.decode(record()).message;
  assert.equal(end.$case, "snapshotEnd");
  assert.deepEqual(end.snapshotEnd, { cursor: CURSOR.encode(), entryCount: 7n, digest: v.digest, reason: 0, reset: false });
  assert.equal(pos, b.length - 4);

  const r = await sf.readStateFile(p, ["app/"]);
  assert.ok(r.cursor.equals(CURSOR));
  assert.deepEqual(r.digest.toBytes(), v.digest);
  assert.equal(r.live, false, "a loaded view is not live until a gateway vouches for it");
  assert.deepEqual([...r.entries.values()].map((e) => [e.key, e.offset]).sort(), v.entries.map((e) => [e.key, e.offset]).sort());
  assert.equal(r.entries.get("app/h").offset, "9007199254740993");
  assert.equal(r.entries.get("app/h").contentType, "application/octet-stream");
  assert.equal(await sf.readStateFile(path.join(path.dirname(p), "absent"), ["app/"]), undefined, "no file is no error");
});

test("chunks of about 256 KiB", async (t) => {
  const p = path.join(tmpdir(t), "big.state");
  const big = Buffer.alloc(100 << 10, 7);
  const es = Array.from({ length: 8 }, (_, i) => ent(`k/${i}`, big, 0, i));
  await sf.writeStateFile(p, [], view(es, cur([8])));
  const r = await sf.readStateFile(p, []);
  assert.equal(r.entries.size, 8);
  // Three entries of 100 KiB pass 256 KiB: records of 3, 3 and 2 entries.
  const b = fs.readFileSync(p);
  let pos = 8;
  const sizes = [];
  while (pos < b.length - 4) {
    let len = 0;
    for (let shift = 0; ; shift += 7) {
      const c = b[pos++];
      len += (c & 0x7f) * 2 ** shift;
      if (c < 0x80) break;
    }
    const m = sizes.length === 0 ? null : pb.SubscribeResponse.decode(b.subarray(pos, pos + len)).message;
    if (m?.$case === "snapshotChunk") sizes.push(m.snapshotChunk.entries.length);
    else if (!m) sizes.push("selector");
    pos += len;
  }
  assert.deepEqual(sizes, ["selector", 3, 3, 2]);
});

test("a file that fails any check is refused whole", async (t) => {
  const dir = tmpdir(t);
  const good = path.join(dir, "good.state");
  await sf.writeStateFile(good, ["app/"], view(ENTRIES, CURSOR));
  const b = fs.readFileSync(good);
  const withCrc = (body) => {
    const out = Buffer.alloc(body.length + 4);
    body.copy(out);
    out.writeUInt32BE(crc32c(body), body.length);
    return out;
  };
  const body = b.subarray(0, b.length - 4);
  const flip = (buf, i) => {
    const out = Buffer.from(buf);
    out[i] ^= 1;
    return out;
  };
  const cases = [
    ["empty", Buffer.alloc(0), /header: file is truncated/],
    ["bad magic", Buffer.concat([Buffer.from("XGSTATE\x01"), b.subarray(8)]), /bad magic/],
    ["another version", withCrc(Buffer.concat([Buffer.from("CGSTATE\x02"), body.subarray(8)])), /format version 2 is not supported/],
    ["a flipped bit in the checksum", Buffer.from(b).fill(b[b.length - 1] ^ 1, b.length - 1), /checksum mismatch/],
    ["a flipped bit in a value", flip(b, b.indexOf("accent")), /snapshot digest .* does not match/],
    ["a flipped bit in a key", flip(b, b.indexOf("app/z")), /does not match the selector|snapshot digest/],
    ["truncated in the middle", b.subarray(0, b.length >> 1), /truncated|past the end/],
    ["no checksum", body, /checksum: file is truncated/],
    ["bytes after the checksum", Buffer.concat([b, Buffer.from([0])]), /1 bytes after the checksum/],
    ["a record longer than the file", withCrc(Buffer.concat([Buffer.from("CGSTATE\x01"), Buffer.from([0xff, 0xff, 0xff, 0x7f])])), /past the end of the file or over the limit/],
  ];
  for (const [name, bytes, want] of cases) {
    const p = path.join(dir, `${name}.state`);
    fs.writeFileSync(p, bytes);
    await assert.rejects(sf.readStateFile(p, ["app/"]), (e) => e instanceof sf.StateFileError && want.test(e.message), name);
  }
  await assert.rejects(sf.readStateFile(good, ["db/"]), /made for selector \["app\/"\], this view's is \["db\/"\]/);
  // Files whose checksum is right but whose content is not a valid view.
  const wrong = async (name, sel, v, want) => {
    const p = path.join(dir, `${name}.state`);
    await sf.writeStateFile(p, sel, v);
    await assert.rejects(sf.readStateFile(p, sel), (e) => e instanceof sf.StateFileError && want.test(e.message), name);
  };
  await wrong("a key outside the selector", ["db/"], view(ENTRIES, CURSOR), /entry "app\/a" does not match the selector/);
  await wrong("a wrong digest", ["app/"], { ...view(ENTRIES, CURSOR), digest: Buffer.alloc(16, 1) }, /^snapshot digest .* does not match/);
  await wrong("no digest", ["app/"], { ...view(ENTRIES, CURSOR), digest: Buffer.alloc(0) }, /end record has no digest/);
  await wrong("an entry past the cursor", ["app/"], view(ENTRIES, cur([5, 8, 5])), /at or past its cursor/);
  await assert.rejects(sf.readStateFile(dir, []), /not a regular file|EISDIR/);
});

test("leftover temporary files are removed; a write leaves none", async (t) => {
  const dir = tmpdir(t);
  const p = path.join(dir, "v.state");
  fs.writeFileSync(`${p}.tmp-0123`, "half a file");
  fs.writeFileSync(path.join(dir, "other.tmp-1"), "not ours");
  const removed = await sf.removeStateTemps(p, assert.fail);
  assert.deepEqual(removed, [`${p}.tmp-0123`]);
  await sf.writeStateFile(p, [], view([], cur([0])));
  await sf.writeStateFile(p, [], view([ent("a", "1", 0, 0)], cur([1])));
  assert.deepEqual(fs.readdirSync(dir).sort(), ["other.tmp-1", "v.state"]);
  assert.equal((await sf.readStateFile(p, [])).entries.size, 1);
  // A failed write leaves the old file and no temporary file.
  await assert.rejects(sf.writeStateFile(p, [], { ...view([ent("a", "1", 0, 0)], cur([1])), cursor: null }));
  assert.deepEqual(fs.readdirSync(dir).sort(), ["other.tmp-1", "v.state"]);
  assert.equal((await sf.readStateFile(p, [])).entries.size, 1);
});

const quiet = { info() {}, warn() {} };

function open(t, addrs, opts = {}) {
  const sub = new confgate.Subscription({
    addrs,
    backoffMinMs: 1,
    backoffMaxMs: 20,
    shuffle: false,
    reportIntervalMs: -1,
    logger: quiet,
    ...opts,
  });
  t.after(() => sub.close());
  return sub;
}

test("a Subscription writes its view, boots from it while no gateway answers, then resumes", async (t) => {
  const dir = tmpdir(t);
  const file = path.join(dir, "payments.state");
  fs.writeFileSync(`${file}.tmp-dead`, "left by a crash");
  const g = await feedGateway(t, (n) => (n === 0 ? snapshot(cur([2]), INITIAL, ent("p/a", "1", 0, 0), ent("p/b", "2", 0, 1)) : []));
  const first = open(t, [g.addr], { prefixes: ["p/"], stateFile: file });
  await first.waitSynced(5000);
  await h.eventually("the first write", () => fs.existsSync(file), 5000);
  assert.ok(!fs.existsSync(`${file}.tmp-dead`), "the leftover temporary file is gone");
  send(await g.stream(0), [delta(cur([3]), put(ent("p/a", "1b", 0, 2))), progress(cur([4]))]);
  await h.eventually("the delta", () => first.cursor === cur([4]).toString(), 5000);
  await first.close(); // writes the last state
  const saved = await sf.readStateFile(file, ["p/"]);
  assert.ok(saved.cursor.equals(cur([4])), "close wrote the view at its last cursor");
  assert.deepEqual(saved.digest.toBytes(), first.digest);

  // Every gateway down: the view is served from the file.
  const down = await startGateway(t, () => ({ code: grpc.status.UNAVAILABLE, details: "down" }));
  const events = [];
  const second = open(t, [down.addr], { prefixes: ["p/"], stateFile: file, onChange: (e) => events.push(e) });
  await second.waitLoaded(5000);
  assert.equal(second.get("p/a").value.toString(), "1b");
  assert.equal(second.cursor, cur([4]).toString());
  assert.deepEqual(events, [{ kind: "loaded", key: "", cursor: cur([4]).toString() }]);
  await down.request(1);
  let st = second.status();
  assert.ok(st.fromFile && st.stale && !st.connected, JSON.stringify(st));
  assert.deepEqual((await down.request(0)).resumeCursor, cur([4]).encode(), "resumed from the file's cursor");
  await assert.rejects(second.waitSynced(100), /no snapshot within/);
  await second.close();

  // A gateway answers: deltas since the file's cursor, no snapshot.
  const up = await feedGateway(t);
  const ready = [];
  const third = open(t, [up.addr], { prefixes: ["p/"], stateFile: file, onChange: (e) => ready.push(e.kind) });
  third.on("ready", () => ready.push("ready"));
  await third.waitLoaded(5000);
  assert.deepEqual((await up.request(0)).resumeCursor, cur([4]).encode());
  send(await up.stream(0), [delta(cur([5]), put(ent("p/c", "3", 0, 4)))]);
  await third.waitSynced(5000);
  st = third.status();
  assert.ok(!st.fromFile && !st.stale && st.connected, JSON.stringify(st));
  assert.deepEqual(ready, ["loaded", "ready", "put"]);
  assert.deepEqual(third.entries().map((e) => e.key), ["p/a", "p/b", "p/c"]);
  await third.close();
  assert.ok((await sf.readStateFile(file, ["p/"])).cursor.equals(cur([5])));
});

test("a loaded view replaced by a snapshot is a reset; a bad file is ignored and named", async (t) => {
  const dir = tmpdir(t);
  const file = path.join(dir, "v.state");
  await sf.writeStateFile(file, [], view([ent("a", "old", 0, 0)], cur([1])));
  const g = await feedGateway(t, () => snapshot(cur([5]), pb.SnapshotReason.SNAPSHOT_REASON_HISTORY_EXPIRED, ent("b", "new", 0, 4)));
  const kinds = [];
  const sub = open(t, [g.addr], { stateFile: file, onChange: (e) => kinds.push(e.kind) });
  await sub.waitSynced(5000);
  assert.deepEqual(kinds, ["loaded", "reset"]);
  assert.deepEqual(sub.entries().map((e) => e.key), ["b"]);
  assert.equal(sub.status().resets, 1);
  await sub.close();

  fs.writeFileSync(file, "garbage, not a state file");
  const warned = [];
  const g2 = await feedGateway(t, () => snapshot(cur([5]), INITIAL, ent("b", "new", 0, 4)));
  const fresh = open(t, [g2.addr], { stateFile: file, logger: { info() {}, warn: (m) => warned.push(m) } });
  await fresh.waitLoaded(5000); // no usable file: waits for the snapshot
  assert.match(fresh.status().stateFileError ?? "", /ignored: not a confgate state file/);
  assert.equal((await g2.request(0)).resumeCursor.length, 0, "nothing to resume from");
  assert.ok(warned.some((m) => /ignoring the state file/.test(m)));
  await h.eventually("the file rewritten", () => fresh.status().stateFileError === undefined, 5000);
  assert.equal((await sf.readStateFile(file, [])).entries.size, 1);
});

test("writes are bounded by the interval, and a failed write is reported", async (t) => {
  const dir = tmpdir(t);
  const file = path.join(dir, "v.state");
  const written = [];
  const logger = { info() {}, warn() {}, debug: (m) => /written/.test(m) && written.push(Date.now()) };
  const g = await feedGateway(t, () => snapshot(cur([1]), INITIAL, ent("k", "0", 0, 0)));
  const sub = open(t, [g.addr], { stateFile: file, stateFileIntervalMs: 200, logger });
  await sub.waitSynced(5000);
  const call = await g.stream(0);
  const start = Date.now();
  for (let i = 1; Date.now() - start < 1000; i++) {
    send(call, [delta(cur([i + 1]), put(ent("k", String(i), 0, i)))]);
    await new Promise((r) => setTimeout(r, 5));
  }
  await sub.close();
  // One at the first snapshot, then at most one per 200 ms, and the last.
  assert.ok(written.length >= 3 && written.length <= 1 + 6 + 1, `${written.length} writes`);
  for (let i = 2; i < written.length - 1; i++) assert.ok(written[i] - written[i - 1] >= 190, `write ${i} after ${written[i] - written[i - 1]} ms`);
  assert.equal((await sf.readStateFile(file, [])).cursor.toString(), sub.cursor, "the last write has the last cursor");

  const missing = path.join(dir, "no-such-dir", "v.state");
  const g2 = await feedGateway(t, () => snapshot(cur([1]), INITIAL, ent("k", "0", 0, 0)));
  const bad = open(t, [g2.addr], { stateFile: missing });
  const statuses = [];
  bad.on("status", (s) => statuses.push(s.stateFileError));
  await bad.waitSynced(5000);
  await h.eventually("the failed write", () => bad.status().stateFileError !== undefined, 5000);
  assert.match(bad.status().stateFileError, /not written: ENOENT/);
  assert.ok(statuses.some((e) => e !== undefined), "the status event tells");
  assert.ok(bad.isRunning, "the view goes on");
  assert.throws(() => open(t, [g2.addr], { stateFile: "" }), /stateFile must be a path/);
});
