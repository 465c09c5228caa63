// Selector rules, the same as the gateways' (internal/keyspace in the Go
// module): validate and normalize prefixes so a bad selector fails at once,
// locally, with a clear message.

export const MAX_KEY_LEN = 1024;
export const MAX_PREFIXES = 64;

// Go's unicode.IsControl: C0, DEL and C1.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** Compares strings by their UTF-8 bytes, the gateways' (Go's) key order. */
export function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}

export function validatePrefix(p: string): void {
  if (p === "") return;
  const clip = JSON.stringify(p.length > 64 ? p.slice(0, 64) + "..." : p);
  if (LONE_SURROGATE.test(p)) throw new Error(`selector prefix ${clip}: is not valid UTF-8`);
  const n = Buffer.byteLength(p, "utf8");
  if (n > MAX_KEY_LEN) throw new Error(`selector prefix ${clip}: is ${n} bytes, longer than the limit ${MAX_KEY_LEN}`);
  const m = CONTROL.exec(p);
  if (m) throw new Error(`selector prefix ${clip}: has a control character at index ${m.index}`);
  if (p.startsWith("/")) throw new Error(`selector prefix ${clip} starts with '/': keys have no leading slash`);
  if (p.includes("//")) throw new Error(`selector prefix ${clip} has an empty path segment ('//')`);
}

/** Validates prefixes and returns them sorted, without duplicates and
 * without prefixes another one covers. [] selects every key. */
export function normalizeSelector(prefixes: readonly string[]): string[] {
  if (typeof prefixes === "string") throw new TypeError("prefixes must be an array of strings, not one string");
  if (prefixes.length > MAX_PREFIXES) {
    throw new Error(`selector has ${prefixes.length} prefixes, more than the limit ${MAX_PREFIXES}`);
  }
  for (const p of prefixes) {
    validatePrefix(p);
    if (p === "") return [];
  }
  const out: string[] = [];
  for (const p of [...prefixes].sort(compareKeys)) {
    if (out.length > 0 && p.startsWith(out[out.length - 1])) continue;
    out.push(p);
  }
  return out;
}
