package keyspace

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// MaxKeyLen is the longest key, in bytes. Keys are paths, not payloads.
const MaxKeyLen = 1024

// MaxPrefixes bounds a selector so one request cannot make a gateway scan
// its index thousands of times.
const MaxPrefixes = 64

// The rules below make a key look like what it is: two keys that render
// the same are the same key, and what a terminal, a log line or a code
// review shows is what is stored. Keys are compared byte by byte
// everywhere (index, selectors, grants, partitioner), so anything that
// renders as nothing, reorders its neighbours or has an invisible twin
// would let two distinct keys pass for one: a grant for "payments/" that
// "payments\u200b/" escapes, a review that reads "admin/rate" for
// "etar/nimda" under U+202E. Hence:
//
//   - no control characters (Cc) and no line or paragraph separators (Zl,
//     Zp): they break lines in logs and terminals;
//   - no invisible or formatting characters: format characters (Cf, which
//     holds the bidirectional controls U+061C, U+200E..U+200F,
//     U+202A..U+202E, U+2066..U+2069, the joiners U+200C..U+200D, U+200B,
//     U+2060..U+2064, U+00AD, U+FEFF and the tag characters), variation
//     selectors and the other default-ignorable code points (U+034F, the
//     Hangul fillers, U+17B4..U+17B5 and the ranges Unicode reserves as
//     ignorable). Together with Cf this is Unicode's Default_Ignorable_Code_Point
//     set, which is what renderers are told to draw as nothing, plus the
//     few visible Cf characters (Arabic number signs), which no path needs;
//   - NFC (Unicode normalization form C): "é" as one code point and as "e"
//     plus a combining accent are the same text, so only the composed
//     form, the one almost every keyboard and editor produces, is a key;
//   - no "." or ".." segments, which tools and people read as "this
//     folder" and "the parent folder".
//
// The tables are those of Go's unicode package (unicode.Version) and of
// golang.org/x/text/unicode/norm; clients in other languages carry a copy
// of the resulting code point ranges (testdata/rules.json is the shared
// reference their tests read).
var rejectedTables = []*unicode.RangeTable{
	unicode.Cc,
	unicode.Zl,
	unicode.Zp,
	unicode.Cf,
	unicode.Bidi_Control, // within Cf; named for the reader and the message
	unicode.Join_Control, // within Cf
	unicode.Variation_Selector,
	unicode.Other_Default_Ignorable_Code_Point,
}

// ValidateKey reports why key is not a valid config key, or nil.
// A key is a non-empty UTF-8 path of at most MaxKeyLen bytes in Unicode
// normalization form C, without control, invisible or formatting
// characters, leading or trailing '/', empty segments, or "." and ".."
// segments.
func ValidateKey(key string) error {
	if key == "" {
		return ruleErr(ruleEmpty, "key is empty: give a path such as payments/db/timeout")
	}
	if err := validateText("key", key); err != nil {
		return err
	}
	switch {
	case strings.HasPrefix(key, "/"):
		return ruleErr(ruleLeadingSlash, "key %s starts with '/': write paths without a leading slash, like payments/db/timeout", clip(key))
	case strings.HasSuffix(key, "/"):
		return ruleErr(ruleTrailingSlash, "key %s ends with '/': a key names an entry, not a folder; remove the trailing slash", clip(key))
	case strings.Contains(key, "//"):
		return ruleErr(ruleEmptySegment, "key %s has an empty path segment ('//'): use a single '/' between segments", clip(key))
	}
	for seg := range strings.SplitSeq(key, "/") {
		if seg == "." || seg == ".." {
			return dotSegment("key", key, seg)
		}
	}
	return nil
}

// ValidatePrefix reports why p is not a valid selector prefix, or nil. A
// prefix is any leading part of a valid key ("" selects everything), so it
// may end with '/' or in the middle of a segment: "a/." is valid (a prefix
// of "a/.x"), "a/./" is not. It must be in NFC on its own: every leading
// part of an NFC key is, and a prefix that is not can match no key.
// Prefixes match bytes, so "e" does not select "é".
func ValidatePrefix(p string) error {
	if p == "" {
		return nil
	}
	if err := validateText("selector prefix", p); err != nil {
		return err
	}
	if strings.HasPrefix(p, "/") {
		return ruleErr(ruleLeadingSlash, "selector prefix %s starts with '/': keys have no leading slash; remove it", clip(p))
	}
	if strings.Contains(p, "//") {
		return ruleErr(ruleEmptySegment, "selector prefix %s has an empty path segment ('//'): use a single '/' between segments", clip(p))
	}
	// Only complete segments (followed by '/') count: the last one may
	// still grow into a valid segment.
	segs := strings.Split(p, "/")
	for _, seg := range segs[:len(segs)-1] {
		if seg == "." || seg == ".." {
			return dotSegment("selector prefix", p, seg)
		}
	}
	return nil
}

func dotSegment(what, s, seg string) error {
	return ruleErr(ruleDotSegment, "%s %s has a '.' or '..' segment (%q): keys are names, not relative paths; remove the segment or rename it", what, clip(s), seg)
}

// validateText checks what keys and prefixes share: length, encoding,
// characters and normalization. what names s in the message.
func validateText(what, s string) error {
	if len(s) > MaxKeyLen {
		return ruleErr(ruleLength, "%s %s is %d bytes, longer than the limit %d: shorten it", what, clip(s), len(s), MaxKeyLen)
	}
	if !utf8.ValidString(s) {
		return ruleErr(ruleUTF8, "%s %s is not valid UTF-8: keys are UTF-8 text", what, clip(s))
	}
	for i, r := range s {
		if !Hidden(r) {
			continue
		}
		switch {
		case unicode.IsControl(r) || unicode.In(r, unicode.Zl, unicode.Zp):
			return ruleErr(ruleControl, "%s %s has control character %U at byte %d: remove it (keys are one line of visible text)", what, clip(s), r, i)
		case unicode.Is(unicode.Bidi_Control, r):
			return ruleErr(ruleInvisible, "%s %s has invisible or formatting character %U (a bidirectional control: text can display in another order than it is stored) at byte %d: remove it", what, clip(s), r, i)
		case unicode.Is(unicode.Variation_Selector, r):
			return ruleErr(ruleInvisible, "%s %s has invisible or formatting character %U (a variation selector) at byte %d: remove it", what, clip(s), r, i)
		default:
			return ruleErr(ruleInvisible, "%s %s has invisible or formatting character %U at byte %d: remove it (keys must look like what they are)", what, clip(s), r, i)
		}
	}
	if !norm.NFC.IsNormalString(s) {
		at, from, to := firstUnnormalized(s)
		return ruleErr(ruleNFC, "%s %s is not in Unicode normalization form C: at byte %d, %s is %s in NFC; normalize to NFC (%s), so that keys that look the same are the same",
			what, clip(s), at, codePoints(from), codePoints(to), clip(norm.NFC.String(s)))
	}
	return nil
}

// firstUnnormalized finds the first normalization segment of s that NFC
// changes: where it starts, what it is, what NFC makes of it.
func firstUnnormalized(s string) (at int, from, to string) {
	for i := 0; i < len(s); {
		n := norm.NFC.NextBoundaryInString(s[i:], true)
		if n <= 0 {
			n = len(s) - i
		}
		seg := s[i : i+n]
		if nfc := norm.NFC.String(seg); nfc != seg {
			return i, seg, nfc
		}
		i += n
	}
	return 0, s, norm.NFC.String(s)
}

// codePoints spells s as code points: "U+0065 U+0301".
func codePoints(s string) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%U", r)
	}
	return b.String()
}

// Hidden reports whether r may not appear in keys because it does not
// show as itself: a control character, a line or paragraph separator, or
// an invisible or formatting character (see rejectedTables).
func Hidden(r rune) bool {
	if r < utf8.RuneSelf {
		return hiddenASCII[r]
	}
	return unicode.IsOneOf(rejectedTables, r)
}

// hiddenASCII is Hidden for the ASCII range, worked out once from the
// tables: keys are mostly ASCII, and a gateway checks every key it reads
// (100,000 keys took 70 ms through the tables at bootstrap).
var hiddenASCII = func() (t [utf8.RuneSelf]bool) {
	for r := range rune(utf8.RuneSelf) {
		t[r] = unicode.IsOneOf(rejectedTables, r)
	}
	return t
}()

// Quote renders s in double quotes for messages and terminal output, Go
// syntax, with every character that is not printable or is Hidden
// escaped (\u202e, \x1b, \xff for a byte that is not UTF-8), so what is
// shown is exactly what is stored and cannot act on the terminal.
func Quote(s string) string {
	b := make([]byte, 0, len(s)+2)
	b = append(b, '"')
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			b = fmt.Appendf(b, `\x%02x`, s[i])
		case r == '"' || r == '\\':
			b = append(b, '\\', byte(r))
		case Hidden(r) || !strconv.IsPrint(r):
			q := strconv.QuoteRuneToASCII(r) // 'x' with r escaped
			b = append(b, q[1:len(q)-1]...)
		default:
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return string(append(b, '"'))
}

// clip quotes s for a message, shortened at a character boundary.
func clip(s string) string {
	if len(s) <= 64 {
		return Quote(s)
	}
	n := 64
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return Quote(s[:n]) + "..."
}

// The rules, for tests: every error of ValidateKey and ValidatePrefix is a
// *ruleError naming the rule it enforces.
const (
	ruleEmpty         = "empty"
	ruleLength        = "length"
	ruleUTF8          = "utf8"
	ruleControl       = "control"
	ruleInvisible     = "invisible"
	ruleNFC           = "nfc"
	ruleLeadingSlash  = "leading_slash"
	ruleTrailingSlash = "trailing_slash"
	ruleEmptySegment  = "empty_segment"
	ruleDotSegment    = "dot_segment"
)

type ruleError struct {
	rule string
	msg  string
}

func (e *ruleError) Error() string { return e.msg }

func ruleErr(rule, format string, args ...any) error {
	return &ruleError{rule: rule, msg: fmt.Sprintf(format, args...)}
}

// Selector is a normalized set of key prefixes: sorted, without duplicates
// and without prefixes that another prefix already covers. The zero value
// selects every key.
type Selector struct {
	prefixes []string // nil means all
}

// NewSelector validates and normalizes prefixes. No prefixes, or a "" among
// them, selects everything.
func NewSelector(prefixes []string) (Selector, error) {
	if len(prefixes) > MaxPrefixes {
		return Selector{}, fmt.Errorf("selector has %d prefixes, more than the limit %d", len(prefixes), MaxPrefixes)
	}
	// Every prefix is checked, also after a "": whether a selector is
	// valid does not depend on the order of its prefixes.
	for _, p := range prefixes {
		if err := ValidatePrefix(p); err != nil {
			return Selector{}, err
		}
	}
	if slices.Contains(prefixes, "") {
		return Selector{}, nil
	}
	ps := slices.Clone(prefixes)
	slices.Sort(ps)
	out := ps[:0]
	for _, p := range ps {
		// Sorted order puts a covering prefix right before what it covers.
		if len(out) > 0 && strings.HasPrefix(p, out[len(out)-1]) {
			continue
		}
		out = append(out, p)
	}
	return Selector{prefixes: out}, nil
}

// All reports whether the selector selects every key.
func (s Selector) All() bool { return len(s.prefixes) == 0 }

// Prefixes returns the normalized prefixes in key order (nil for all).
func (s Selector) Prefixes() []string { return slices.Clone(s.prefixes) }

// Match reports whether key is selected.
func (s Selector) Match(key string) bool {
	if len(s.prefixes) == 0 {
		return true
	}
	// The candidate is the greatest prefix <= key.
	i, found := slices.BinarySearch(s.prefixes, key)
	if found {
		return true
	}
	return i > 0 && strings.HasPrefix(key, s.prefixes[i-1])
}

// Key is a canonical string for the selector, equal for equal selectors;
// gateways group subscribers and cache payloads by it.
func (s Selector) Key() string {
	if len(s.prefixes) == 0 {
		return "*"
	}
	// NUL cannot occur in a prefix, so the join is unambiguous.
	return "=" + strings.Join(s.prefixes, "\x00")
}

// String is a readable form for logs.
func (s Selector) String() string {
	if len(s.prefixes) == 0 {
		return "[*]"
	}
	return "[" + strings.Join(s.prefixes, ",") + "]"
}
