package keyspace

import (
	"strings"
	"testing"
)

// Tests written for the mutants that survived the first mutation run
// (docs/testing.md, "Mutation score"): each pins a behaviour no other test
// checked precisely.

// TestClip pins how messages shorten long input: up to 64 bytes whole, past
// that the first 64 bytes cut back to a character boundary, then "...".
func TestClip(t *testing.T) {
	a63 := strings.Repeat("a", 63)
	e600 := strings.Repeat("\u00e9", 600) // 2 bytes each
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"short", "abc", `"abc"`},
		{"exactly 64 bytes is whole", a63 + "b", `"` + a63 + `b"`},
		{"65 bytes is cut to 64", a63 + "bc", `"` + a63 + `b"...`},
		{"cut on a boundary", e600, `"` + strings.Repeat("\u00e9", 32) + `"...`},
		// Byte 64 is the second byte of an é: the cut moves back to 63.
		{"cut moves back to a boundary", "a" + e600, `"a` + strings.Repeat("\u00e9", 31) + `"...`},
		// No character boundary at all in the first 64 bytes (not UTF-8):
		// the cut reaches 0 and stops there.
		{"no boundary before the cut", strings.Repeat("\x80", 100), `""...`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := clip(tt.in); got != tt.want {
				t.Fatalf("clip = %s, want %s", got, tt.want)
			}
		})
	}
}

// TestMessagesClipLongInput checks the clipping through the public
// functions: what a message shows of the key.
func TestMessagesClipLongInput(t *testing.T) {
	a63 := strings.Repeat("a", 63)
	tests := []struct {
		name string
		key  string
		rule string
		show string // what the message shows of the key
	}{
		{"64-byte key shown whole", a63 + "/", ruleTrailingSlash, `"` + a63 + `/" ends with`},
		{"long key cut at a boundary", "a" + strings.Repeat("\u00e9", 600), ruleLength, `key "a` + strings.Repeat("\u00e9", 31) + `"... is 1201 bytes`},
		{"long non-UTF-8 key", strings.Repeat("\x80", MaxKeyLen+1), ruleLength, `key ""... is 1025 bytes`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateKey(tt.key)
			if got := ruleOf(t, err); got != tt.rule {
				t.Fatalf("rule %q, want %q (%v)", got, tt.rule, err)
			}
			if !strings.Contains(err.Error(), tt.show) {
				t.Fatalf("message %q does not show %q", err, tt.show)
			}
		})
	}
}

// TestSelectorPrefixLimit: MaxPrefixes prefixes are accepted, one more is
// refused.
func TestSelectorPrefixLimit(t *testing.T) {
	ps := make([]string, MaxPrefixes)
	for i := range ps {
		ps[i] = strings.Repeat("p", i+1) + "/"
	}
	s, err := NewSelector(ps)
	if err != nil {
		t.Fatalf("%d prefixes refused: %v", MaxPrefixes, err)
	}
	if n := len(s.Prefixes()); n != MaxPrefixes {
		t.Fatalf("%d prefixes kept, want %d", n, MaxPrefixes)
	}
	if _, err := NewSelector(append(ps, "q/")); err == nil || !strings.Contains(err.Error(), "more than the limit 64") {
		t.Fatalf("%d prefixes: error %v, want the limit", MaxPrefixes+1, err)
	}
}

// TestSelectorForms pins All, Key and String for the selector of
// everything and for a selector with prefixes.
func TestSelectorForms(t *testing.T) {
	tests := []struct {
		name     string
		prefixes []string
		all      bool
		key, str string
	}{
		{"zero", nil, true, "*", "[*]"},
		{"empty prefix", []string{"a/", ""}, true, "*", "[*]"},
		{"one", []string{"a/"}, false, "=a/", "[a/]"},
		{"two", []string{"b", "a/"}, false, "=a/\x00b", "[a/,b]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewSelector(tt.prefixes)
			if err != nil {
				t.Fatal(err)
			}
			if s.All() != tt.all {
				t.Errorf("All() = %v, want %v", s.All(), tt.all)
			}
			if s.Key() != tt.key {
				t.Errorf("Key() = %q, want %q", s.Key(), tt.key)
			}
			if s.String() != tt.str {
				t.Errorf("String() = %q, want %q", s.String(), tt.str)
			}
		})
	}
	var zero Selector
	if !zero.All() || zero.Key() != "*" || zero.String() != "[*]" {
		t.Fatalf("zero Selector: All %v, Key %q, String %q", zero.All(), zero.Key(), zero.String())
	}
}
