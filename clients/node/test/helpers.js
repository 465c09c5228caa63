"use strict";
// Shared helpers for the tests. The tests run against the built package
// (dist/), as a user's code would.

const assert = require("node:assert/strict");
const confgate = require("../dist");

const { pb } = confgate;

const TOPIC_A = Buffer.concat([Buffer.from([0xa]), Buffer.alloc(15)]);
const TOPIC_B = Buffer.concat([Buffer.from([0xb]), Buffer.alloc(15)]);

function cur(offsets, topic = TOPIC_A) {
  return new confgate.Cursor(topic, offsets.map(BigInt));
}

function ent(key, value, p, off) {
  return pb.Entry.fromPartial({ key, value: Buffer.from(value), version: { partition: p, offset: BigInt(off) } });
}

function digestOf(...es) {
  const d = new confgate.Digest();
  for (const e of es) d.add(e.key, e.value, e.version.partition, e.version.offset);
  return d.toBytes();
}

const chunk = (...es) => ({ message: { $case: "snapshotChunk", snapshotChunk: { entries: es } } });

function end(c, reason, ...es) {
  return {
    message: {
      $case: "snapshotEnd",
      snapshotEnd: {
        cursor: c.encode(),
        reason,
        reset: reason !== pb.SnapshotReason.SNAPSHOT_REASON_INITIAL,
        entryCount: BigInt(es.length),
        digest: digestOf(...es),
      },
    },
  };
}

const snapshot = (c, reason, ...es) => [...es.map((e) => chunk(e)), end(c, reason, ...es)];
const delta = (c, ...changes) => ({ message: { $case: "delta", delta: { cursor: c.encode(), changes, coalesced: false } } });
const put = (e) => ({ change: { $case: "put", put: e } });
const del = (key, p, off) => ({
  change: { $case: "delete", delete: { key, version: { partition: p, offset: BigInt(off) } } },
});
const progress = (c) => ({ message: { $case: "progress", progress: { cursor: c.encode(), lagRecords: 3n, stale: true } } });

async function eventually(what, cond, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const INITIAL = pb.SnapshotReason.SNAPSHOT_REASON_INITIAL;

module.exports = {
  confgate, pb, TOPIC_A, TOPIC_B, cur, ent, digestOf, chunk, end, snapshot, delta, put, del, progress, eventually, INITIAL,
};
