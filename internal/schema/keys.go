package schema

import "strings"

// ReservedPrefix starts every key confgate keeps for itself. Only schema
// keys may be written under it, and no key under it is governed by a
// schema: the schema documents are checked by compiling them instead.
const ReservedPrefix = "_confgate/"

// KeyPrefix starts every schema key. The rest of the key names what the
// schema governs (see Target).
const KeyPrefix = ReservedPrefix + "schemas/"

// IsReserved reports whether key lies under ReservedPrefix.
func IsReserved(key string) bool { return strings.HasPrefix(key, ReservedPrefix) }

// IsSchemaKey reports whether key is a well-formed schema key, one whose
// Target is ok. A key under KeyPrefix that is malformed is not a schema
// key, so a writer cannot store it (it would govern nothing).
func IsSchemaKey(key string) bool {
	_, _, ok := Target(key)
	return ok
}

// Target says what the schema stored under schemaKey governs:
//
//   - KeyPrefix+"*": every key; pattern "" and exact false.
//   - KeyPrefix+"<path>/*": every key starting with "<path>/"; pattern
//     "<path>/" and exact false.
//   - KeyPrefix+"<key>" (no '*' anywhere): exactly <key>; pattern "<key>"
//     and exact true.
//
// ok is false when schemaKey does not start with KeyPrefix, when nothing
// follows it, when '*' appears anywhere but as the whole last segment, or
// when the pattern would lie under ReservedPrefix (such keys are never
// governed).
func Target(schemaKey string) (pattern string, exact bool, ok bool) {
	rest, found := strings.CutPrefix(schemaKey, KeyPrefix)
	if !found || rest == "" {
		return "", false, false
	}
	star := strings.IndexByte(rest, '*')
	switch {
	case star < 0:
		pattern, exact = rest, true
	case star != len(rest)-1:
		return "", false, false // '*' inside, or more than one
	case rest == "*":
		pattern = ""
	case rest[star-1] == '/':
		pattern = rest[:star]
	default:
		return "", false, false // "a/b*": '*' is not a whole segment
	}
	if IsReserved(pattern) {
		return "", false, false
	}
	return pattern, exact, true
}
