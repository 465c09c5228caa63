package keyspace

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// The reference implementation: the rules written as plainly as possible,
// to check ValidateKey and ValidatePrefix against. The character set is
// the reviewed list in testdata/rules.json (TestRulesFile keeps it equal
// to Go's tables); normalization uses norm.NFC.String, not the quick check
// the code uses.

var refRanges = sync.OnceValue(func() [][2]rune {
	b, err := os.ReadFile("testdata/rules.json")
	if err != nil {
		panic(err)
	}
	var f struct {
		Rejected []string `json:"rejected_ranges"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		panic(err)
	}
	var out [][2]rune
	for _, s := range f.Rejected {
		var lo, hi rune
		if _, err := fmt.Sscanf(s, "U+%X..U+%X", &lo, &hi); err != nil {
			panic(err)
		}
		out = append(out, [2]rune{lo, hi})
	}
	return out
})

func refRejected(r rune) bool {
	for _, rg := range refRanges() {
		if rg[0] <= r && r <= rg[1] {
			return true
		}
	}
	return false
}

func refControl(r rune) bool {
	return r <= 0x1f || (r >= 0x7f && r <= 0x9f) || r == 0x2028 || r == 0x2029
}

func refText(s string) string {
	switch {
	case len(s) > MaxKeyLen:
		return ruleLength
	case !utf8.ValidString(s):
		return ruleUTF8
	}
	for _, r := range s {
		if refControl(r) {
			return ruleControl
		}
		if refRejected(r) {
			return ruleInvisible
		}
	}
	if norm.NFC.String(s) != s {
		return ruleNFC
	}
	return ""
}

func refKey(s string) string {
	if s == "" {
		return ruleEmpty
	}
	if r := refText(s); r != "" {
		return r
	}
	segs := strings.Split(s, "/")
	switch {
	case segs[0] == "":
		return ruleLeadingSlash
	case segs[len(segs)-1] == "":
		return ruleTrailingSlash
	case slices.Contains(segs, ""):
		return ruleEmptySegment
	case slices.Contains(segs, "."), slices.Contains(segs, ".."):
		return ruleDotSegment
	}
	return ""
}

func refPrefix(s string) string {
	if s == "" {
		return ""
	}
	if r := refText(s); r != "" {
		return r
	}
	segs := strings.Split(s, "/")
	done := segs[:len(segs)-1] // complete segments: followed by '/'
	switch {
	case segs[0] == "":
		return ruleLeadingSlash
	case slices.Contains(done, ""):
		return ruleEmptySegment
	case slices.Contains(done, "."), slices.Contains(done, ".."):
		return ruleDotSegment
	}
	return ""
}

// alphabet makes fuzz bytes into text where the rules are interesting:
// separators, dots, composing pairs, marks, invisible characters.
var alphabet = []string{
	"a", "/", ".", "e", "x", "\u0301", "\u00e9", "\u200b", "\u202e", "\u1100", "\u1161",
	"\u11a8", "\uac00", "\ufe0f", "\x00", "\u2028", "\u2126", "\u0323", "\u0307", "\u1e0b",
	"\xff", "\u00ad", "\U000e0041", "\u3164", "\u0600", "\u0345", "\u0f73", "\u0344",
	"\U0001d15e", "\u0915\u093c", "\u0958", "\u2764", "\u00a0", "..", "\u0627\u0653", "\u05d0",
}

func fromAlphabet(b []byte) string {
	var sb strings.Builder
	for _, c := range b {
		sb.WriteString(alphabet[int(c)%len(alphabet)])
	}
	return sb.String()
}

func checkRules(t *testing.T, s string) {
	kerr := ValidateKey(s)
	if got, want := ruleOf(t, kerr), refKey(s); got != want {
		t.Fatalf("ValidateKey(%q): rule %q (%v), the reference says %q", s, got, kerr, want)
	}
	perr := ValidatePrefix(s)
	if got, want := ruleOf(t, perr), refPrefix(s); got != want {
		t.Fatalf("ValidatePrefix(%q): rule %q (%v), the reference says %q", s, got, perr, want)
	}
	for _, err := range []error{kerr, perr} {
		if err != nil {
			checkMessage(t, err)
		}
	}
	if kerr == nil {
		// Every leading part of a valid key is a valid prefix: the
		// definition of a prefix, and what makes "NFC on its own" right.
		// (Long keys: the first and last 64 bytes' worth, to stay fast.)
		for i := range len(s) + 1 {
			if (i < len(s) && !utf8.RuneStart(s[i])) || (i > 64 && i < len(s)-64) {
				continue
			}
			if err := ValidatePrefix(s[:i]); err != nil {
				t.Fatalf("prefix %q of valid key %q rejected: %v", s[:i], s, err)
			}
		}
		sel, err := NewSelector([]string{s})
		if err != nil || !sel.Match(s) {
			t.Fatalf("selector of valid key %q: %v, matches itself: %v", s, err, sel.Match(s))
		}
	}
	if perr == nil && len(s) < MaxKeyLen {
		// A valid prefix leads somewhere: it can be completed into a key.
		if err := ValidateKey(s + "x"); err != nil {
			t.Fatalf("valid prefix %q is the start of no key: %v", s, err)
		}
	}
	q := Quote(s)
	if back, err := strconv.Unquote(q); err != nil || back != s {
		t.Fatalf("Quote(%q) = %s does not unquote to it: %q, %v", s, q, back, err)
	}
	for _, r := range q {
		if Hidden(r) || !strconv.IsPrint(r) {
			t.Fatalf("Quote(%q) = %s shows %U as is", s, q, r)
		}
	}
}

// FuzzRules checks ValidateKey and ValidatePrefix against the reference,
// on the input as is and spelled with the alphabet; valid keys' leading
// parts are valid prefixes; valid prefixes complete into keys; messages
// are visible text; Quote round-trips.
func FuzzRules(f *testing.F) {
	for _, c := range keyCases {
		f.Add(c.S)
	}
	for _, c := range prefixCases {
		f.Add(c.S)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkRules(t, s)
		checkRules(t, fromAlphabet([]byte(s)))
	})
}

// FuzzSelector checks NewSelector and Match against the definition: a key
// is selected when it starts with one of the prefixes, and the normalized
// form does not depend on order or duplicates.
func FuzzSelector(f *testing.F) {
	f.Add([]byte("a/\x00b\x00a/c"), []byte("a/c"))
	f.Add([]byte("\x00"), []byte("x"))
	f.Add([]byte("pay/\x00pay/db/\x00auth/"), []byte("pay/db/x"))
	f.Fuzz(func(t *testing.T, prefixBytes, keyBytes []byte) {
		var prefixes []string
		for _, p := range strings.Split(string(prefixBytes), "\x00") {
			prefixes = append(prefixes, fromAlphabet([]byte(p)))
		}
		key := fromAlphabet(keyBytes)
		sel, err := NewSelector(prefixes)
		wantErr := len(prefixes) > MaxPrefixes
		for _, p := range prefixes {
			wantErr = wantErr || refPrefix(p) != ""
		}
		if (err != nil) != wantErr {
			t.Fatalf("NewSelector(%q): %v, want error: %v", prefixes, err, wantErr)
		}
		if err != nil {
			return
		}
		want := false
		for _, p := range prefixes {
			want = want || strings.HasPrefix(key, p)
		}
		if got := sel.Match(key); got != want {
			t.Fatalf("selector %q (normalized %s) matches %q: %v, want %v", prefixes, sel, key, got, want)
		}
		norm := sel.Prefixes()
		if !slices.IsSorted(norm) {
			t.Fatalf("normalized prefixes %q are not sorted", norm)
		}
		for i, p := range norm {
			for j, q := range norm {
				if i != j && strings.HasPrefix(p, q) {
					t.Fatalf("normalized prefixes %q: %q covers %q", norm, q, p)
				}
			}
		}
		rev := slices.Clone(prefixes)
		slices.Reverse(rev)
		rev = append(rev, prefixes[0])
		if len(rev) <= MaxPrefixes {
			other, err := NewSelector(rev)
			if err != nil || other.Key() != sel.Key() {
				t.Fatalf("selector %q and its reverse with a duplicate differ: %s vs %s (%v)", prefixes, sel.Key(), other.Key(), err)
			}
		}
	})
}
