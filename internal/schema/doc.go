// Package schema holds the rules for schemas: which keys they govern, the
// format of schema documents, and how values are checked against them.
// Gateways enforce schemas on every write and check every applied record;
// the CLI validates change-set files offline with the same code.
//
// # Keys
//
// Schemas are ordinary entries of the config topic, stored under the
// reserved prefix "_confgate/schemas/". Keys under "_confgate/" are
// reserved: only schema keys may be written there, and no key under it is
// governed by a schema (a schema document must compile instead). What the
// rest of a schema key names:
//
//   - "_confgate/schemas/*" governs every key;
//   - "_confgate/schemas/<path>/*" governs every key starting with
//     "<path>/" (so "svc/*" governs "svc/db" but neither "svc" nor
//     "svcx/db");
//   - "_confgate/schemas/<key>" governs exactly <key>.
//
// A key under "_confgate/schemas/" is malformed, and not a schema key, when
// nothing follows the prefix, when '*' appears anywhere but as the whole
// last segment, or when what it would govern lies under "_confgate/". Keys
// containing '*' therefore cannot have a schema of their own; a prefix
// schema still governs them.
//
// The most specific schema governs a key: the schema for exactly that key,
// else the one with the longest governing prefix, else "*". Schemas do not
// combine: only the most specific one is checked.
//
// # Documents
//
// A schema document is a JSON object with a "type" and the fields of that
// type. Field names are case-sensitive; an unknown field, a field given
// twice or anything after the object is an error.
//
//	{"type": "json", "schema": {...}}               a JSON document, optionally checked against a JSON Schema
//	{"type": "int", "min": 1, "max": 100}           base-10 integer text in the int64 range, optional sign
//	{"type": "float", "min": 0, "max": 1}           a finite number as strconv.ParseFloat reads it (64 bits)
//	{"type": "bool"}                                "true" or "false" exactly
//	{"type": "duration", "min": "100ms", "max": "1h"}  Go duration syntax (time.ParseDuration)
//	{"type": "enum", "values": ["debug", "info"]}   equal to one of the values, byte for byte
//	{"type": "regex", "pattern": "[a-z]+"}          the whole value matches the Go (RE2) pattern
//	{"type": "string"}                              valid UTF-8 text
//
// min and max are optional and inclusive; when both are given min must not
// exceed max. For "int" they are JSON integers in the int64 range, for
// "float" finite JSON numbers, for "duration" strings in Go duration
// syntax. "values" must be a non-empty array of strings. The regex pattern
// is anchored at both ends of the value (as \A(?:pattern)\z), so "^" and
// "$" in it are allowed but not needed.
//
// Every type also accepts:
//
//   - "minBytes", "maxBytes": non-negative JSON integers bounding the size
//     of the raw value in bytes (minBytes ≤ maxBytes);
//   - "contentType": a non-empty string the entry's content type must
//     equal exactly;
//   - "description": free text, ignored.
//
// # JSON Schema
//
// The "schema" of type "json" is a JSON Schema (draft 2020-12 unless its
// "$schema" names another draft: 4, 6, 7 or 2019-09). Without "schema" any
// JSON document is accepted. The schema must be self-contained: "$ref" may
// point only inside the document (use "$defs"); any other URL, and a
// "$schema" naming an unknown metaschema, fails to compile, as nothing is
// ever loaded from the network or the file system. "format" is asserted
// (a value with "format": "email" must be an email address) for every
// format the library knows; unknown formats are ignored. Patterns use Go's
// RE2 syntax. To keep compilation cheap on every gateway, the schema may
// nest at most 128 levels and hold at most 5,000 JSON objects.
//
// To keep validation cheap too (gateways check every applied record, and
// a validation cannot be interrupted), the schema may expand to at most
// 100,000 subschemas, counting every "$ref", "$dynamicRef" and
// "$recursiveRef" as a copy of its target (a "$dynamicRef" as a copy of
// every schema with its "$dynamicAnchor"), and a reference back to a
// subschema it is inside (recursion) once. A few definitions that each
// refer twice to the next exceed this quickly (20 levels expand to a
// million). Recursion must follow the value: a schema may not refer back
// to itself by two paths that can apply to the same part of a value (such
// as {"allOf": [{"items": {"$ref": "#"}}, {"items": {"$ref": "#"}}]}),
// which would double the work at each level of the value, nor by more
// than 1,000 paths.
//
// A "json" value must be UTF-8 JSON with nothing after the document, and
// its numbers' exponents must lie within ±1000 (checking a number against
// a JSON Schema is exact arithmetic, whose cost grows with the exponent).
//
// # Checks and violations
//
// A value is checked in this order: content type, maxBytes, minBytes, then
// the type's rules. The first failure is reported as a Violation: the rule
// ("type", "min", "max", "minBytes", "maxBytes", "contentType", "enum",
// "pattern", "json", or the JSON Schema keyword that failed), the JSON
// pointer of the offending part of the value ("" for the whole value) and
// a message. Of the failures of a JSON Schema the deepest in the value is
// reported (the first of them if several are as deep).
package schema
