package main

import (
	"os"
	"strings"
	"testing"

	"github.com/confgate/confgate/internal/keyspace"
	"github.com/confgate/confgate/store"
)

// FuzzParseChangeSet feeds the change-set parser arbitrary files in both
// formats: it never panics, errors name the file, and an accepted set is
// one Apply would not refuse for its shape (valid distinct keys, within
// the set bounds, deletes without values, valid preconditions).
func FuzzParseChangeSet(f *testing.F) {
	for _, name := range []string{"deploy.json", "deploy.yaml", "unknown_field.yaml"} {
		b, err := os.ReadFile("testdata/changesets/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, strings.HasSuffix(name, ".json"))
	}
	f.Add([]byte("operations:\n  - put: a/b\n    value: x\n    if_version: \"0:1\"\n  - delete: a/c\n    if_absent: true\n"), false)
	f.Add([]byte(`{"operations":[{"put":"a","value_json":{"x":[1,2]}},{"put":"b","value_base64":"AAE="}]}`), true)
	f.Add([]byte("a: &a [*a, *a]\n"), false)
	f.Fuzz(func(t *testing.T, data []byte, asJSON bool) {
		format := "yaml"
		if asJSON {
			format = "json"
		}
		cs, err := parseChangeSet("fuzz.file", format, data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.file") {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		if len(cs.Ops) == 0 || len(cs.Ops) > store.MaxSetOps {
			t.Fatalf("accepted %d operations", len(cs.Ops))
		}
		if err := store.CheckRequestID(cs.RequestID); err != nil {
			t.Fatalf("accepted request ID %q: %v", cs.RequestID, err)
		}
		seen := map[string]bool{}
		for _, op := range cs.Ops {
			if err := keyspace.ValidateKey(op.Key); err != nil {
				t.Fatalf("accepted key %q: %v", op.Key, err)
			}
			if seen[op.Key] {
				t.Fatalf("accepted key %q twice", op.Key)
			}
			seen[op.Key] = true
			if op.Delete && (len(op.Value) > 0 || op.ContentType != "" || len(op.Headers) > 0) {
				t.Fatalf("accepted a delete of %q with data", op.Key)
			}
			if op.Cond.Kind == store.CondVersion && (op.Cond.Partition < 0 || op.Cond.Offset < 0) {
				t.Fatalf("accepted version %v", op.Cond)
			}
		}
	})
}
