package schema

import (
	"fmt"
	"testing"
)

func TestTarget(t *testing.T) {
	tests := []struct {
		key     string
		pattern string
		exact   bool
		ok      bool
	}{
		{"_confgate/schemas/*", "", false, true},
		{"_confgate/schemas/svc/*", "svc/", false, true},
		{"_confgate/schemas/svc/db/*", "svc/db/", false, true},
		{"_confgate/schemas/svc/db/pool", "svc/db/pool", true, true},
		{"_confgate/schemas/svc", "svc", true, true},
		{"_confgate/schemas/", "", false, false},
		{"_confgate/schemas", "", false, false},
		{"_confgate/other", "", false, false},
		{"svc/db", "", false, false},
		{"_confgate/schemas/svc*", "", false, false},
		{"_confgate/schemas/svc/*/db", "", false, false},
		{"_confgate/schemas/*/*", "", false, false},
		{"_confgate/schemas/**", "", false, false},
		{"_confgate/schemas/_confgate/*", "", false, false},
		{"_confgate/schemas/_confgate/x", "", false, false},
		{"_confgate/schemas/_confgate", "_confgate", true, true},
	}
	for _, tt := range tests {
		pattern, exact, ok := Target(tt.key)
		if pattern != tt.pattern || exact != tt.exact || ok != tt.ok {
			t.Errorf("Target(%q) = %q, %v, %v; want %q, %v, %v", tt.key, pattern, exact, ok, tt.pattern, tt.exact, tt.ok)
		}
		if IsSchemaKey(tt.key) != tt.ok {
			t.Errorf("IsSchemaKey(%q) = %v, want %v", tt.key, !tt.ok, tt.ok)
		}
	}
}

func TestIsReserved(t *testing.T) {
	for key, want := range map[string]bool{
		"_confgate/schemas/x": true,
		"_confgate/other":     true,
		"_confgate/":          true,
		"_confgate":           false,
		"svc/_confgate/x":     false,
	} {
		if got := IsReserved(key); got != want {
			t.Errorf("IsReserved(%q) = %v, want %v", key, got, want)
		}
	}
}

func TestSetFor(t *testing.T) {
	sc := func() *Schema {
		s, err := Compile([]byte(`{"type": "string"}`))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	var s Set
	if _, _, ok := s.For("a"); ok {
		t.Fatal("empty Set governs a key")
	}
	for _, k := range []string{
		"_confgate/schemas/*",
		"_confgate/schemas/svc/*",
		"_confgate/schemas/svc/db/*",
		"_confgate/schemas/svc/db/pool",
		"_confgate/schemas/svc/db/",
	} {
		s.Put(k, sc())
	}
	s.Put("_confgate/schemas/bad*", sc()) // not a schema key: ignored
	if s.Len() != 5 {
		t.Fatalf("Len() = %d, want 5", s.Len())
	}
	tests := []struct{ key, want string }{
		{"svc/db/pool", "_confgate/schemas/svc/db/pool"},   // exact beats prefix
		{"svc/db/pool/size", "_confgate/schemas/svc/db/*"}, // exact governs only its key
		{"svc/db/timeout", "_confgate/schemas/svc/db/*"},   // longest prefix wins
		{"svc/db/", "_confgate/schemas/svc/db/"},           // exact, even ending in '/'
		{"svc/cache", "_confgate/schemas/svc/*"},
		{"svc/", "_confgate/schemas/svc/*"},
		{"svc", "_confgate/schemas/*"},     // "svc/" does not govern "svc"
		{"svcx/a", "_confgate/schemas/*"},  // prefixes end at '/'
		{"other/x", "_confgate/schemas/*"}, // "*" governs all
		{"", "_confgate/schemas/*"},
		{"_confgate/schemas/svc/*", ""}, // reserved: never governed
		{"_confgate/x", ""},
	}
	check := func(s *Set, tests []struct{ key, want string }) {
		t.Helper()
		for _, tt := range tests {
			got, gsc, ok := s.For(tt.key)
			if got != tt.want || ok != (tt.want != "") || ok != (gsc != nil) {
				t.Errorf("For(%q) = %q, %v, %v; want %q", tt.key, got, gsc, ok, tt.want)
			}
		}
	}
	check(&s, tests)

	c := s.Clone()
	c.Delete("_confgate/schemas/svc/db/pool")
	c.Delete("_confgate/schemas/*")
	c.Put("_confgate/schemas/svc/*", nil) // nil deletes
	check(c, []struct{ key, want string }{
		{"svc/db/pool", "_confgate/schemas/svc/db/*"},
		{"svc/cache", ""},
		{"other/x", ""},
	})
	if c.Len() != 2 || s.Len() != 5 {
		t.Fatalf("Len() = %d after deletes and %d in the original, want 2 and 5", c.Len(), s.Len())
	}
	check(&s, tests) // the original is untouched

	other := sc()
	s.Put("_confgate/schemas/svc/*", other) // replaces
	if _, got, _ := s.For("svc/cache"); got != other || s.Len() != 5 {
		t.Errorf("Put did not replace the schema (Len %d)", s.Len())
	}
	if (*Set)(nil).Clone().Len() != 0 {
		t.Error("nil Clone is not empty")
	}
}

func BenchmarkSetFor(b *testing.B) {
	var s Set
	sc, _ := Compile([]byte(`{"type": "string"}`))
	for i := range 5000 {
		s.Put(fmt.Sprintf("_confgate/schemas/team%d/*", i), sc)
		s.Put(fmt.Sprintf("_confgate/schemas/team%d/svc/key", i), sc)
	}
	for b.Loop() {
		s.For("team4999/svc/deeply/nested/config/key")
	}
}
