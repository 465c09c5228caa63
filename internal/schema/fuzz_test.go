package schema

import (
	"errors"
	"testing"
)

// FuzzCompile compiles fuzzed documents and validates a fuzzed value with
// each one that compiles: neither may panic, and Validate returns nil or a
// *Violation.
func FuzzCompile(f *testing.F) {
	for _, doc := range validDocs {
		f.Add([]byte(doc), []byte(`{"a": [1, "x"]}`), "text/plain")
	}
	f.Add([]byte(exponentialDoc(20)), []byte(`1`), "")
	f.Add([]byte(`{"type": "json", "schema": {"properties": {"n": {"type": "integer", "multipleOf": 0.5}}}}`), []byte(`{"n": 1e308}`), "")
	f.Fuzz(func(t *testing.T, doc, value []byte, contentType string) {
		sc, err := Compile(doc)
		if err != nil {
			if sc != nil {
				t.Fatal("Compile returned a schema with an error")
			}
			return
		}
		checkValidate(t, sc, value, contentType)
	})
}

// FuzzValidate validates fuzzed values against fixed schemas.
func FuzzValidate(f *testing.F) {
	var scs []*Schema
	for _, doc := range append(validDocs, `{"type": "json", "schema": {"type": "object", "properties": {"a": {"type": "array", "items": {"type": "number", "maximum": 10, "multipleOf": 0.25}, "uniqueItems": true}}, "additionalProperties": {"enum": [1, "x", null]}}}`) {
		sc, err := Compile([]byte(doc))
		if err != nil {
			f.Fatal(err)
		}
		scs = append(scs, sc)
	}
	for _, v := range []string{`{"a": [1, 2.5, 1e3]}`, `{"b": 1}`, `42`, `0.5`, `true`, `90s`, `info`, `abc`, "\xff"} {
		f.Add([]byte(v))
	}
	f.Fuzz(func(t *testing.T, value []byte) {
		for _, sc := range scs {
			checkValidate(t, sc, value, "")
		}
	})
}

func checkValidate(t *testing.T, sc *Schema, value []byte, contentType string) {
	err := sc.Validate(value, contentType)
	if err == nil {
		return
	}
	var v *Violation
	if !errors.As(err, &v) {
		t.Fatalf("Validate returned %T %v, want a *Violation", err, err)
	}
	if v.Rule == "" || v.Msg == "" || v.Rule == "internal" {
		t.Fatalf("Validate returned %#v", v)
	}
}
