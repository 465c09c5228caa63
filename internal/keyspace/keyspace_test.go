package keyspace

import (
	"slices"
	"strings"
	"testing"
)

func TestValidateKey(t *testing.T) {
	tests := []struct {
		key  string
		want string // substring of the error, "" for valid
	}{
		{"payments/db/timeout", ""},
		{"a", ""},
		{"ünïcode/ключ", ""},
		{"", "empty"},
		{"/a", "leading slash"},
		{"a/", "ends with '/'"},
		{"a//b", "empty path segment"},
		{"a\nb", "control character"},
		{string([]byte{0xff}), "UTF-8"},
		{strings.Repeat("k", MaxKeyLen+1), "longer than the limit"},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			err := ValidateKey(tt.key)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestSelector(t *testing.T) {
	tests := []struct {
		name     string
		prefixes []string
		norm     []string
		match    []string
		miss     []string
	}{
		{"all", nil, nil, []string{"a", "z/y"}, nil},
		{"empty prefix is all", []string{"a/", ""}, nil, []string{"q"}, nil},
		{"covered dropped", []string{"pay/db/", "pay/", "auth/"}, []string{"auth/", "pay/"}, []string{"pay/x", "auth/y", "pay/"}, []string{"pa", "billing/x", "auth"}},
		{"dupes", []string{"b", "b", "a"}, []string{"a", "b"}, []string{"a", "ab", "b/c"}, []string{"c", ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewSelector(tt.prefixes)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(s.Prefixes(), tt.norm) {
				t.Fatalf("prefixes %q, want %q", s.Prefixes(), tt.norm)
			}
			for _, k := range tt.match {
				if !s.Match(k) {
					t.Errorf("should match %q", k)
				}
			}
			for _, k := range tt.miss {
				if s.Match(k) {
					t.Errorf("should not match %q", k)
				}
			}
		})
	}
	a, _ := NewSelector([]string{"x/", "y/"})
	b, _ := NewSelector([]string{"y/", "x/", "x/z"})
	if a.Key() != b.Key() {
		t.Fatal("equal selectors have different keys")
	}
	if _, err := NewSelector([]string{"/bad"}); err == nil {
		t.Fatal("accepted a prefix with a leading slash")
	}
	if _, err := NewSelector(make([]string, MaxPrefixes+1)); err == nil {
		t.Fatal("accepted too many prefixes")
	}
}
