"use strict";
// A project that installs the client the way an application does: from the
// tarball `npm pack` makes, with the runtime dependencies at exactly the
// versions of package-lock.json (its lockfile is derived from ours, so
// `npm ci` installs nothing unpinned and finds every package in the npm
// cache that our own `npm ci` filled).

const { execFileSync } = require("node:child_process");
const crypto = require("node:crypto");
const fs = require("node:fs");
const path = require("node:path");

const ROOT = path.join(__dirname, "..");
const NPM = process.platform === "win32" ? "npm.cmd" : "npm";

function run(cmd, args, cwd, timeout = 120_000) {
  return execFileSync(cmd, args, { cwd, timeout, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

/** The packages of lock reachable from names: the installed tree of a
 * project that depends on them. */
function closure(lock, names) {
  const out = new Map();
  const visit = (name, from) => {
    // Node's lookup: the nearest node_modules up the tree.
    for (let dir = from; ; dir = dir.slice(0, Math.max(0, dir.lastIndexOf("/node_modules/")))) {
      const key = `${dir ? dir + "/" : ""}node_modules/${name}`;
      if (lock.packages[key]) {
        if (out.has(key)) return;
        const p = lock.packages[key];
        out.set(key, p);
        for (const dep of Object.keys({ ...p.dependencies, ...p.optionalDependencies })) visit(dep, key);
        return;
      }
      if (!dir) throw new Error(`package-lock.json has no ${name} (needed by ${from || "the root"})`);
    }
  };
  for (const n of names) visit(n, "");
  return out;
}

/**
 * Makes the consumer project in dir: packs the client (its dist/ must be
 * built), writes package.json and package-lock.json, runs npm ci. Returns
 * the tarball's file list.
 */
function makeConsumer(dir) {
  const packed = JSON.parse(run(NPM, ["pack", "--ignore-scripts", "--json", "--pack-destination", dir], ROOT))[0];
  const tgz = path.join(dir, packed.filename);
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8"));
  const lock = JSON.parse(fs.readFileSync(path.join(ROOT, "package-lock.json"), "utf8"));
  const devDeps = { typescript: pkg.devDependencies.typescript, "@types/node": pkg.devDependencies["@types/node"] };
  const clientEntry = {
    version: pkg.version,
    resolved: `file:${packed.filename}`,
    integrity: `sha512-${crypto.createHash("sha512").update(fs.readFileSync(tgz)).digest("base64")}`,
    dependencies: pkg.dependencies,
    engines: pkg.engines,
  };
  const packages = {
    "": { name: "consumer", dependencies: { [pkg.name]: `file:${packed.filename}` }, devDependencies: devDeps },
    [`node_modules/${pkg.name}`]: clientEntry,
  };
  const prod = closure(lock, Object.keys(pkg.dependencies));
  const dev = closure(lock, Object.keys(devDeps));
  for (const [k, p] of [...prod, ...dev]) {
    const { dev: _d, devOptional: _o, peer: _p, ...rest } = p;
    packages[k] = prod.has(k) ? rest : { ...rest, dev: true };
  }
  fs.writeFileSync(
    path.join(dir, "package.json"),
    JSON.stringify({ name: "consumer", version: "0.0.0", private: true, dependencies: packages[""].dependencies, devDependencies: devDeps }, null, 2),
  );
  fs.writeFileSync(path.join(dir, "package-lock.json"), JSON.stringify({ name: "consumer", version: "0.0.0", lockfileVersion: 3, requires: true, packages }, null, 2));
  run(NPM, ["ci", "--prefer-offline", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"], dir, 300_000);
  return packed.files.map((f) => f.path);
}

module.exports = { makeConsumer, run, ROOT };
