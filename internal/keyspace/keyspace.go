package keyspace

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxKeyLen is the longest key, in bytes. Keys are paths, not payloads.
const MaxKeyLen = 1024

// MaxPrefixes bounds a selector so one request cannot make a gateway scan
// its index thousands of times.
const MaxPrefixes = 64

// ValidateKey reports why key is not a valid config key, or nil.
// A key is a non-empty UTF-8 path of at most MaxKeyLen bytes, without
// control characters, leading or trailing '/', or empty segments.
func ValidateKey(key string) error {
	if key == "" {
		return errors.New("key is empty")
	}
	if err := validateText(key); err != nil {
		return fmt.Errorf("key %q: %w", clip(key), err)
	}
	switch {
	case strings.HasPrefix(key, "/"):
		return fmt.Errorf("key %q starts with '/': write paths without a leading slash, like payments/db/timeout", clip(key))
	case strings.HasSuffix(key, "/"):
		return fmt.Errorf("key %q ends with '/': a key names an entry, not a folder", clip(key))
	case strings.Contains(key, "//"):
		return fmt.Errorf("key %q has an empty path segment ('//')", clip(key))
	}
	return nil
}

// ValidatePrefix reports why p is not a valid selector prefix, or nil. A
// prefix is any leading part of a valid key ("" selects everything), so it
// may end with '/'.
func ValidatePrefix(p string) error {
	if p == "" {
		return nil
	}
	if err := validateText(p); err != nil {
		return fmt.Errorf("selector prefix %q: %w", clip(p), err)
	}
	if strings.HasPrefix(p, "/") {
		return fmt.Errorf("selector prefix %q starts with '/': keys have no leading slash", clip(p))
	}
	if strings.Contains(p, "//") {
		return fmt.Errorf("selector prefix %q has an empty path segment ('//')", clip(p))
	}
	return nil
}

func validateText(s string) error {
	if len(s) > MaxKeyLen {
		return fmt.Errorf("is %d bytes, longer than the limit %d", len(s), MaxKeyLen)
	}
	if !utf8.ValidString(s) {
		return errors.New("is not valid UTF-8")
	}
	for i, r := range s {
		if unicode.IsControl(r) {
			return fmt.Errorf("has control character %U at byte %d", r, i)
		}
	}
	return nil
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
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
	for _, p := range prefixes {
		if err := ValidatePrefix(p); err != nil {
			return Selector{}, err
		}
		if p == "" {
			return Selector{}, nil
		}
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
