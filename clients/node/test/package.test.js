"use strict";
// The package as an application gets it: packed with `npm pack`, installed
// in a project of its own (test/consumer.js), loaded with import and with
// require, type-checked by tsc in every module mode, and the Node examples
// of docs/clients.md run from that project against the test gateway
// (CONFGATE_ADDR, set by scripts/polyglot-test.sh).

const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { execFile } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { makeConsumer, ROOT } = require("./consumer");

let dir;
let packedFiles;
before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "confgate-node-consumer-"));
  packedFiles = makeConsumer(dir);
});
after(() => dir && fs.rmSync(dir, { recursive: true, force: true }));

/** Runs node (or a tool) in the consumer project; resolves to its output,
 * rejects with it on a non-zero exit. */
function run(args, { env = {}, timeout = 60_000 } = {}) {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, args, { cwd: dir, timeout, env: { ...process.env, ...env } }, (err, stdout, stderr) => {
      if (err) reject(new Error(`node ${args.join(" ")}: ${err.message}\n--- stdout\n${stdout}\n--- stderr\n${stderr}`));
      else resolve(stdout + stderr);
    });
  });
}

test("the tarball holds both entry points with their types, and no tests", () => {
  for (const f of ["package.json", "dist/index.js", "dist/index.d.ts", "dist/index.mjs", "dist/index.d.mts", "dist/statefile.js", "README.md"]) {
    assert.ok(packedFiles.includes(f), `${f} is packed`);
  }
  assert.deepEqual(packedFiles.filter((f) => f.startsWith("test/") || f.startsWith("scripts/") || f.startsWith("node_modules/")), []);
  const pkg = JSON.parse(fs.readFileSync(path.join(dir, "node_modules/@confgate/client/package.json"), "utf8"));
  assert.deepEqual(pkg.exports["."], {
    import: { types: "./dist/index.d.mts", default: "./dist/index.mjs" },
    require: { types: "./dist/index.d.ts", default: "./dist/index.js" },
  });
});

test("import and require load one copy of the client", async () => {
  fs.writeFileSync(
    path.join(dir, "both.mjs"),
    `import * as esm from "@confgate/client";
import { createRequire } from "node:module";
const cjs = createRequire(import.meta.url)("@confgate/client");
const names = (m) => Object.keys(m).filter((n) => n !== "default" && n !== "__esModule").sort();
const out = {
  esm: names(esm),
  cjs: names(cjs),
  same: names(cjs).filter((n) => esm[n] !== cjs[n]),
  resolved: [import.meta.resolve("@confgate/client"), createRequire(import.meta.url).resolve("@confgate/client")],
};
const err = new cjs.PreconditionFailedError("x", []);
out.instanceofAcross = err instanceof esm.PreconditionFailedError;
await esm.digestReady();
out.digest = new cjs.Digest().toBytes().length;
console.log(JSON.stringify(out));
`,
  );
  const out = JSON.parse(await run(["both.mjs"]));
  assert.deepEqual(out.esm, out.cjs, "the ES module exports what the CommonJS module does");
  assert.ok(out.esm.includes("Subscription") && out.esm.includes("Client") && out.esm.includes("pb"));
  assert.deepEqual(out.same, [], "every export is the same object both ways");
  assert.ok(out.instanceofAcross);
  assert.equal(out.digest, 16);
  assert.match(out.resolved[0], /node_modules\/@confgate\/client\/dist\/index\.mjs$/);
  assert.match(out.resolved[1], /node_modules\/@confgate\/client\/dist\/index\.js$/);

  fs.writeFileSync(
    path.join(dir, "plain.cjs"),
    `const { Subscription, Client, Cursor } = require("@confgate/client");
const sub = new Subscription({ addrs: ["127.0.0.1:1"], prefixes: ["a/"], reportIntervalMs: -1, logger: { info() {}, warn() {} } });
console.log(typeof Client, sub instanceof require("node:events").EventEmitter, typeof sub[Symbol.asyncIterator], JSON.stringify(sub.status()));
sub.close().then(() => console.log("closed"));
`,
  );
  const plain = await run(["plain.cjs"]);
  assert.match(plain, /^function true function \{"connected":false,/);
  assert.match(plain, /"lagRecords":"0"/);
  assert.match(plain, /closed\n$/);
});

// A TypeScript application of the client: it must type-check, and the
// @ts-expect-error lines fail it if the types degrade to any.
const CONSUMER_TS = `import { Client, PreconditionFailedError, Subscription, type Entry, type Event, type Status, type WriteResult } from "@confgate/client";

export async function main(addr: string): Promise<string> {
  const sub = new Subscription({ addrs: [addr], prefixes: ["payments/"], stateFile: "/tmp/payments.state" });
  sub.on("change", (e: Event) => void e.kind);
  sub.once("ready", () => undefined);
  sub.on("status", (s: Status) => void s.lagRecords.padStart(3));
  sub.on("error", (err: Error) => void err.message);
  sub.on("newListener", (name: string | symbol) => void name);
  // @ts-expect-error: a "change" listener takes an Event
  sub.on("change", (n: number) => n);
  await sub.waitLoaded(1000);
  for await (const ev of sub) {
    const k: "put" | "delete" | "snapshot" | "reset" | "loaded" = ev.kind;
    if (k === "put") break;
  }
  for await (const ev of sub.events({ maxBuffered: 10 })) void ev.cursor;
  const e: Entry | undefined = sub.get("payments/db/timeout");
  const off: string | undefined = e?.offset;
  const st: Status = sub.status();
  // @ts-expect-error: 64-bit integers are decimal strings, not bigints
  const lag: bigint = st.lagRecords;
  const c = new Client({ addrs: [addr] });
  let w: WriteResult;
  try {
    w = await c.put("payments/db/timeout", "5s", { ifVersion: e ?? { partition: 0, offset: "1" } });
  } catch (err) {
    if (err instanceof PreconditionFailedError) return JSON.stringify(err.keys);
    throw err;
  }
  await c.put("payments/a", "1", { ifVersion: { partition: 1, offset: 5n } });
  c.close();
  await sub.close();
  return JSON.stringify({ st, w, off, lag });
}
`;

// [module, moduleResolution, file extension, the declaration file it must use]
const TS_MODES = [
  ["nodenext", "nodenext", "mts", "index.d.mts"],
  ["nodenext", "nodenext", "cts", "index.d.ts"],
  ["node16", "node16", "mts", "index.d.mts"],
  ["node16", "node16", "cts", "index.d.ts"],
  ["esnext", "bundler", "ts", "index.d.mts"],
  ["commonjs", "node10", "ts", "index.d.ts"],
];

test("TypeScript consumers type-check in every module mode", async () => {
  const tsc = path.join(dir, "node_modules/typescript/bin/tsc");
  for (const [module, resolution, ext, want] of TS_MODES) {
    const name = `${module}-${resolution}-${ext}`;
    const src = path.join(dir, `${name}.${ext}`);
    fs.writeFileSync(src, CONSUMER_TS);
    const cfg = path.join(dir, `tsconfig.${name}.json`);
    fs.writeFileSync(
      cfg,
      JSON.stringify({
        compilerOptions: { module, moduleResolution: resolution, strict: true, noEmit: true, skipLibCheck: false, target: "ES2022", lib: ["ES2022"], types: ["node"] },
        files: [src],
      }),
    );
    const files = await run([tsc, "-p", cfg, "--listFiles"], { timeout: 120_000 });
    const ours = files.split("\n").filter((f) => f.includes("node_modules/@confgate/client/dist/index."));
    // index.d.mts re-exports index.d.ts: an ES module consumer sees both,
    // a CommonJS one only index.d.ts.
    const used = ours.map((f) => path.basename(f)).sort();
    assert.deepEqual(used, want === "index.d.mts" ? ["index.d.mts", "index.d.ts"] : ["index.d.ts"], `${name} uses ${want}`);
  }
});

/** The blocks of docs/clients.md marked <!-- example: node-esm --> or
 * <!-- example: node-cjs -->, in order. */
function docExamples() {
  const md = fs.readFileSync(path.join(ROOT, "..", "..", "docs", "clients.md"), "utf8");
  const re = /<!-- example: (node-esm|node-cjs) -->\n```js\n([\s\S]*?)\n```/g;
  return [...md.matchAll(re)].map((m) => ({ kind: m[1], code: m[2] }));
}

test("the Node examples of docs/clients.md run", async () => {
  const addr = process.env.CONFGATE_ADDR;
  if (!addr) throw new Error("CONFGATE_ADDR is not set: run scripts/polyglot-test.sh, which starts a gateway for these tests");
  const examples = docExamples();
  assert.ok(examples.filter((e) => e.kind === "node-esm").length >= 2, "ES module examples are marked");
  assert.ok(examples.some((e) => e.kind === "node-cjs"), "a CommonJS example is marked");
  for (const [i, ex] of examples.entries()) {
    const file = path.join(dir, `docs-example-${i + 1}.${ex.kind === "node-esm" ? "mjs" : "cjs"}`);
    fs.writeFileSync(file, ex.code + "\n");
    const out = await run([file], { env: { CONFGATE_ADDR: addr } });
    assert.ok(out.trim().length > 0, `example ${i + 1} printed something`);
    assert.doesNotMatch(out, /confgate: /, `example ${i + 1} logged no warning:\n${out}`);
  }
});
