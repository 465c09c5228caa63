// Key and selector rules, the same as the gateways' (internal/keyspace in
// the Go module): validate keys and normalize prefixes so a bad key or
// selector fails at once, locally, with a clear message. The gateway remains
// the authority; internal/keyspace/testdata/rules.json is the shared
// reference the tests check this copy against.

export const MAX_KEY_LEN = 1024;
export const MAX_PREFIXES = 64;

// Code points a key must not contain: control characters (Cc), line and
// paragraph separators, and invisible or formatting characters (Cf, which
// holds the bidirectional and join controls, variation selectors and the
// other default-ignorable code points). Inclusive ranges, copied from
// internal/keyspace/testdata/rules.json (Go's Unicode tables); the tests
// fail when they differ.
export const REJECTED_RANGES: readonly (readonly [number, number])[] = [
  [0x0000, 0x001f],
  [0x007f, 0x009f],
  [0x00ad, 0x00ad],
  [0x034f, 0x034f],
  [0x0600, 0x0605],
  [0x061c, 0x061c],
  [0x06dd, 0x06dd],
  [0x070f, 0x070f],
  [0x0890, 0x0891],
  [0x08e2, 0x08e2],
  [0x115f, 0x1160],
  [0x17b4, 0x17b5],
  [0x180b, 0x180f],
  [0x200b, 0x200f],
  [0x2028, 0x202e],
  [0x2060, 0x206f],
  [0x3164, 0x3164],
  [0xfe00, 0xfe0f],
  [0xfeff, 0xfeff],
  [0xffa0, 0xffa0],
  [0xfff0, 0xfffb],
  [0x110bd, 0x110bd],
  [0x110cd, 0x110cd],
  [0x13430, 0x1343f],
  [0x1bca0, 0x1bca3],
  [0x1d173, 0x1d17a],
  [0xe0000, 0xe0fff],
];

const BIDI_CONTROL = /^[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]$/u;
const VARIATION_SELECTOR = /^[\u180b-\u180d\u180f\ufe00-\ufe0f\u{e0100}-\u{e01ef}]$/u;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** Whether code point cp may not appear in keys (see REJECTED_RANGES). */
export function hidden(cp: number): boolean {
  let lo = 0;
  let hi = REJECTED_RANGES.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (REJECTED_RANGES[mid][1] < cp) lo = mid + 1;
    else hi = mid;
  }
  return lo < REJECTED_RANGES.length && REJECTED_RANGES[lo][0] <= cp;
}

function isControl(cp: number): boolean {
  return cp <= 0x1f || (cp >= 0x7f && cp <= 0x9f) || cp === 0x2028 || cp === 0x2029;
}

/** s in double quotes with hidden and unprintable characters escaped. */
function quote(s: string): string {
  let out = "";
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    if (ch === '"' || ch === "\\") out += "\\" + ch;
    else if (hidden(cp) || (/^[\p{C}\p{Z}]$/u.test(ch) && ch !== " ")) {
      out += cp <= 0xffff ? "\\u" + cp.toString(16).padStart(4, "0") : "\\U" + cp.toString(16).padStart(8, "0");
    } else out += ch;
  }
  return '"' + out + '"';
}

function clip(s: string): string {
  const cps = Array.from(s);
  return cps.length > 64 ? quote(cps.slice(0, 64).join("")) + "..." : quote(s);
}

function validateText(what: string, s: string): void {
  const n = Buffer.byteLength(s, "utf8");
  if (n > MAX_KEY_LEN) throw new Error(`${what} ${clip(s)} is ${n} bytes, longer than the limit ${MAX_KEY_LEN}: shorten it`);
  if (LONE_SURROGATE.test(s)) throw new Error(`${what} ${clip(s)} is not valid UTF-8: keys are UTF-8 text`);
  let at = 0;
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    if (hidden(cp)) {
      const u = "U+" + cp.toString(16).toUpperCase().padStart(4, "0");
      if (isControl(cp)) {
        throw new Error(`${what} ${clip(s)} has control character ${u} at byte ${at}: remove it (keys are one line of visible text)`);
      }
      let note = "";
      if (BIDI_CONTROL.test(ch)) note = " (a bidirectional control: text can display in another order than it is stored)";
      else if (VARIATION_SELECTOR.test(ch)) note = " (a variation selector)";
      throw new Error(`${what} ${clip(s)} has invisible or formatting character ${u}${note} at byte ${at}: remove it (keys must look like what they are)`);
    }
    at += Buffer.byteLength(ch, "utf8");
  }
  const nfc = s.normalize("NFC");
  if (nfc !== s) {
    throw new Error(`${what} ${clip(s)} is not in Unicode normalization form C: normalize to NFC (${clip(nfc)}), so that keys that look the same are the same`);
  }
}

function dotSegment(what: string, s: string, seg: string): Error {
  return new Error(`${what} ${clip(s)} has a '.' or '..' segment ("${seg}"): keys are names, not relative paths; remove the segment or rename it`);
}

/** Throws an Error saying what to fix when key is not a valid key: a
 * non-empty UTF-8 path of at most MAX_KEY_LEN bytes in NFC, without control,
 * invisible or formatting characters, leading or trailing '/', empty
 * segments, or "." and ".." segments. */
export function validateKey(key: string): void {
  if (key === "") throw new Error("key is empty: give a path such as payments/db/timeout");
  validateText("key", key);
  const c = clip(key);
  if (key.startsWith("/")) throw new Error(`key ${c} starts with '/': write paths without a leading slash, like payments/db/timeout`);
  if (key.endsWith("/")) throw new Error(`key ${c} ends with '/': a key names an entry, not a folder; remove the trailing slash`);
  if (key.includes("//")) throw new Error(`key ${c} has an empty path segment ('//'): use a single '/' between segments`);
  for (const seg of key.split("/")) {
    if (seg === "." || seg === "..") throw dotSegment("key", key, seg);
  }
}

/** Throws an Error saying what to fix when p is not a valid selector
 * prefix: a leading part of a valid key ("" selects everything). It may end
 * with '/' or in the middle of a segment ("a/." leads to "a/.x"), and must
 * be NFC on its own. */
export function validatePrefix(p: string): void {
  if (p === "") return;
  validateText("selector prefix", p);
  const c = clip(p);
  if (p.startsWith("/")) throw new Error(`selector prefix ${c} starts with '/': keys have no leading slash; remove it`);
  if (p.includes("//")) throw new Error(`selector prefix ${c} has an empty path segment ('//'): use a single '/' between segments`);
  for (const seg of p.split("/").slice(0, -1)) {
    // the last segment may still grow
    if (seg === "." || seg === "..") throw dotSegment("selector prefix", p, seg);
  }
}

/** Compares strings by their UTF-8 bytes, the gateways' (Go's) key order. */
export function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}

/** Validates prefixes and returns them sorted, without duplicates and
 * without prefixes another one covers. [] selects every key. */
export function normalizeSelector(prefixes: readonly string[]): string[] {
  if (typeof prefixes === "string") throw new TypeError("prefixes must be an array of strings, not one string");
  if (prefixes.length > MAX_PREFIXES) {
    throw new Error(`selector has ${prefixes.length} prefixes, more than the limit ${MAX_PREFIXES}`);
  }
  // All of them, also after a "": validity does not depend on order.
  for (const p of prefixes) validatePrefix(p);
  if (prefixes.includes("")) return [];
  const out: string[] = [];
  for (const p of [...prefixes].sort(compareKeys)) {
    if (out.length > 0 && p.startsWith(out[out.length - 1])) continue;
    out.push(p);
  }
  return out;
}
