package schema

import (
	"errors"
	"strings"
	"sync"
	"testing"
)

// validDocs are one valid document of each type; the fuzz targets start
// from them too.
var validDocs = []string{
	`{"type": "json", "schema": {"type": "object"}}`,
	`{"type": "json"}`,
	`{"type": "int", "min": 1, "max": 100}`,
	`{"type": "float", "min": 0, "max": 1}`,
	`{"type": "bool"}`,
	`{"type": "duration", "min": "100ms", "max": "1h"}`,
	`{"type": "enum", "values": ["debug", "info"]}`,
	`{"type": "regex", "pattern": "^[a-z]+$"}`,
	`{"type": "string"}`,
	`{"type": "string", "minBytes": 1, "maxBytes": 8, "contentType": "text/plain", "description": "a name"}`,
	`{"type": "json", "schema": {"$schema": "http://json-schema.org/draft-07/schema#", "type": "string", "format": "email"}}`,
	`{"type": "json", "schema": {"$ref": "#/$defs/a", "$defs": {"a": {"type": "integer"}}}}`,
	`{"type": "json", "schema": true}`,
}

func TestCompileValid(t *testing.T) {
	for _, doc := range validDocs {
		if _, err := Compile([]byte(doc)); err != nil {
			t.Errorf("Compile(%s): %v", doc, err)
		}
	}
}

func TestCompileInvalid(t *testing.T) {
	tests := []struct {
		doc  string
		want []string // substrings of the error
	}{
		{``, []string{"JSON object"}},
		{`[]`, []string{"JSON object"}},
		{`{"type": "int"`, []string{"not valid JSON"}},
		{`{"type": "int"} {}`, []string{"data after"}},
		{`{"type": "int", "type": "int"}`, []string{`"type" appears twice`}},
		{`{}`, []string{`"type" is missing`}},
		{`{"type": 3}`, []string{`"type" must be a JSON string`}},
		{`{"type": "integer"}`, []string{`"type"`, `unknown type "integer"`, "json, int, float"}},
		{`{"type": "int", "maximum": 3}`, []string{`unknown field "maximum"`, `"int"`, "min, max"}},
		{`{"type": "bool", "min": 3}`, []string{`unknown field "min"`}},
		{`{"type": "int", "Type": "int"}`, []string{`unknown field "Type"`}},
		{`{"type": "int", "min": 5, "max": 1}`, []string{`"min" (5)`, `"max" (1)`}},
		{`{"type": "int", "min": 1.5}`, []string{`"min"`, "JSON integer", "1.5"}},
		{`{"type": "int", "max": 1e3}`, []string{`"max"`, "JSON integer"}},
		{`{"type": "int", "max": 9223372036854775808}`, []string{`"max"`, "int64"}},
		{`{"type": "int", "min": "1"}`, []string{`"min"`, "JSON integer"}},
		{`{"type": "float", "min": 2, "max": 1.5}`, []string{`"min" (2)`, `"max" (1.5)`}},
		{`{"type": "float", "max": 1e400}`, []string{`"max"`, "finite JSON number"}},
		{`{"type": "float", "max": null}`, []string{`"max"`, "finite JSON number"}},
		{`{"type": "duration", "min": "5 minutes"}`, []string{`"min"`, `"5 minutes" is not a Go duration`}},
		{`{"type": "duration", "max": 5}`, []string{`"max"`, "JSON string"}},
		{`{"type": "duration", "min": "1h", "max": "1m"}`, []string{`"min" (1h)`, `"max" (1m)`}},
		{`{"type": "enum", "values": []}`, []string{`"values" is empty`}},
		{`{"type": "enum"}`, []string{`"values" is missing`}},
		{`{"type": "enum", "values": ["a", 1]}`, []string{`"values"`, "array of strings"}},
		{`{"type": "enum", "values": null}`, []string{`"values"`, "array of strings"}},
		{`{"type": "regex", "pattern": "[a-"}`, []string{`"pattern"`, "RE2"}},
		{`{"type": "regex", "pattern": "(?=a)"}`, []string{`"pattern"`, "RE2"}},
		{`{"type": "regex"}`, []string{`"pattern" is missing`}},
		{`{"type": "string", "minBytes": -1}`, []string{`"minBytes"`, "non-negative"}},
		{`{"type": "string", "minBytes": 9, "maxBytes": 8}`, []string{`"minBytes" (9)`, `"maxBytes" (8)`}},
		{`{"type": "string", "contentType": ""}`, []string{`"contentType" is empty`}},
		{`{"type": "string", "contentType": 1}`, []string{`"contentType" must be a JSON string`}},
		{`{"type": "string", "description": false}`, []string{`"description" must be a JSON string`}},
		{`{"type": "json", "schema": {"type": "strin"}}`, []string{`"schema"`, `"/type"`}},
		{`{"type": "json", "schema": {"pattern": "(?=a)"}}`, []string{`"schema"`, "pattern"}},
		{`{"type": "json", "schema": {"$ref": "https://example.com/s.json"}}`, []string{`"schema"`, "https://example.com/s.json", "self-contained", "$defs"}},
		{`{"type": "json", "schema": {"$ref": "other.json"}}`, []string{`"schema"`, "other.json", "self-contained"}},
		{`{"type": "json", "schema": {"$ref": "file:///etc/passwd"}}`, []string{`"schema"`, "file:///etc/passwd", "self-contained"}},
		{`{"type": "json", "schema": {"$id": "https://example.com/a/", "$ref": "b.json"}}`, []string{"https://example.com/a/b.json", "self-contained"}},
		{`{"type": "json", "schema": {"$schema": "https://example.com/meta"}}`, []string{"https://example.com/meta", "self-contained"}},
		{`{"type": "json", "schema": {"$ref": "#/$defs/missing"}}`, []string{`"schema"`}},
		{`{"type": "json", "schema": ` + strings.Repeat(`{"items":`, 200) + `true` + strings.Repeat(`}`, 200) + `}`, []string{`"schema" nests 200 levels`, "$defs"}},
		{`{"type": "json", "schema": {"anyOf": [` + strings.Repeat(`{"type": "integer"},`, 6000) + `true]}}`, []string{`"schema" holds 6001 JSON objects`}},
	}
	for _, tt := range tests {
		sc, err := Compile([]byte(tt.doc))
		if err == nil {
			t.Errorf("Compile(%s) = %v, want an error", tt.doc, sc)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Compile(%s) = %q, want it to mention %q", tt.doc, err, w)
			}
		}
	}
}

func TestValidate(t *testing.T) {
	const limits = `{"type": "json", "schema": {
		"type": "object",
		"required": ["name"],
		"properties": {
			"name": {"type": "string"},
			"a/b~c": {"type": "integer"},
			"limits": {"type": "array", "items": {
				"type": "object",
				"required": ["rate"],
				"properties": {"rate": {"type": "integer", "maximum": 100}}
			}}
		}
	}}`
	tests := []struct {
		doc, value, ct string
		rule, path     string // rule "" = valid
		msg            string // substring of Msg
	}{
		{doc: `{"type": "int", "min": -5, "max": 100}`, value: "42"},
		{doc: `{"type": "int", "min": -5, "max": 100}`, value: "-5"},
		{doc: `{"type": "int", "min": -5, "max": 100}`, value: "+100"},
		{doc: `{"type": "int", "min": -5, "max": 100}`, value: "101", rule: "max", msg: "101 is more than the maximum 100"},
		{doc: `{"type": "int", "min": -5, "max": 100}`, value: "-6", rule: "min", msg: "-6 is less than the minimum -5"},
		{doc: `{"type": "int"}`, value: "4.0", rule: "type", msg: "not a base-10 integer"},
		{doc: `{"type": "int"}`, value: " 4", rule: "type"},
		{doc: `{"type": "int"}`, value: "0x10", rule: "type"},
		{doc: `{"type": "int"}`, value: "", rule: "type"},
		{doc: `{"type": "int"}`, value: "9223372036854775808", rule: "type", msg: "int64 range"},
		{doc: `{"type": "int"}`, value: "-9223372036854775808"},

		{doc: `{"type": "float", "min": 0, "max": 1}`, value: "0.5"},
		{doc: `{"type": "float", "min": 0, "max": 1}`, value: "1e-3"},
		{doc: `{"type": "float", "min": 0, "max": 1}`, value: "1.5", rule: "max", msg: "1.5 is more than the maximum 1"},
		{doc: `{"type": "float", "min": 0, "max": 1}`, value: "-0.1", rule: "min"},
		{doc: `{"type": "float"}`, value: "NaN", rule: "type", msg: "finite"},
		{doc: `{"type": "float"}`, value: "Inf", rule: "type"},
		{doc: `{"type": "float"}`, value: "1e400", rule: "type"},
		{doc: `{"type": "float"}`, value: "one", rule: "type"},

		{doc: `{"type": "bool"}`, value: "true"},
		{doc: `{"type": "bool"}`, value: "false"},
		{doc: `{"type": "bool"}`, value: "True", rule: "type", msg: `"true" or "false"`},
		{doc: `{"type": "bool"}`, value: "1", rule: "type"},

		{doc: `{"type": "duration", "min": "100ms", "max": "1h"}`, value: "1m30s"},
		{doc: `{"type": "duration", "min": "100ms", "max": "1h"}`, value: "99ms", rule: "min", msg: "minimum 100ms"},
		{doc: `{"type": "duration", "min": "100ms", "max": "1h"}`, value: "61m", rule: "max", msg: "maximum 1h"},
		{doc: `{"type": "duration"}`, value: "5", rule: "type", msg: "Go duration"},

		{doc: `{"type": "enum", "values": ["debug", "info"]}`, value: "info"},
		{doc: `{"type": "enum", "values": ["debug", "info"]}`, value: "INFO", rule: "enum", msg: `"debug", "info"`},
		{doc: `{"type": "enum", "values": ["debug", "info"]}`, value: "info ", rule: "enum"},

		{doc: `{"type": "regex", "pattern": "[a-z]+"}`, value: "abc"},
		{doc: `{"type": "regex", "pattern": "[a-z]+"}`, value: "abc1", rule: "pattern", msg: "as a whole"},
		{doc: `{"type": "regex", "pattern": "a|b"}`, value: "ab", rule: "pattern"},
		{doc: `{"type": "regex", "pattern": "(?m)^a$"}`, value: "a\na", rule: "pattern"},
		{doc: `{"type": "regex", "pattern": "^[a-z]+$"}`, value: "abc"},
		{doc: `{"type": "regex", "pattern": "^[a-z]+$"}`, value: "abc\n", rule: "pattern"},

		{doc: `{"type": "string"}`, value: "héllo"},
		{doc: `{"type": "string"}`, value: "\xff", rule: "type", msg: "UTF-8"},

		{doc: `{"type": "string", "minBytes": 2, "maxBytes": 4}`, value: "ab"},
		{doc: `{"type": "string", "minBytes": 2, "maxBytes": 4}`, value: "a", rule: "minBytes", msg: "1 bytes, fewer than the minimum 2"},
		{doc: `{"type": "string", "minBytes": 2, "maxBytes": 4}`, value: "abcde", rule: "maxBytes", msg: "5 bytes, more than the maximum 4"},
		{doc: `{"type": "bool", "maxBytes": 4}`, value: "false", rule: "maxBytes"},
		{doc: `{"type": "string", "contentType": "text/plain"}`, value: "x", ct: "text/plain"},
		{doc: `{"type": "string", "contentType": "text/plain"}`, value: "x", ct: "application/json", rule: "contentType", msg: `"application/json" is not the required "text/plain"`},
		{doc: `{"type": "string", "contentType": "text/plain"}`, value: "x", rule: "contentType"},

		{doc: `{"type": "json"}`, value: `{"any": [1, 2]}`},
		{doc: `{"type": "json"}`, value: `nope`, rule: "json", msg: "not valid JSON"},
		{doc: `{"type": "json"}`, value: ``, rule: "json", msg: "not valid JSON"},
		{doc: `{"type": "json"}`, value: `{} {}`, rule: "json", msg: "not valid JSON"},
		{doc: `{"type": "json"}`, value: "\"\xff\"", rule: "json", msg: "UTF-8"},
		{doc: `{"type": "json"}`, value: `{"b": [1, 1e999999]}`, rule: "json", path: "/b/1", msg: "exponent"},
		{doc: `{"type": "json"}`, value: `[1e1000, 1E-1000, 0.0000001e+0999]`},
		{doc: limits, value: `{"name": "x", "limits": [{"rate": 5}, {"rate": 100}]}`},
		{doc: limits, value: `{"name": "x", "limits": [{"rate": 5}, {"rate": 250}]}`, rule: "maximum", path: "/limits/1/rate", msg: "250"},
		{doc: limits, value: `{"name": "x", "limits": [{}]}`, rule: "required", path: "/limits/0", msg: "rate"},
		{doc: limits, value: `{"limits": []}`, rule: "required", path: "", msg: "name"},
		{doc: limits, value: `{"name": 7}`, rule: "type", path: "/name", msg: "want string"},
		{doc: limits, value: `{"name": "x", "a/b~c": "y"}`, rule: "type", path: "/a~1b~0c"},
		{doc: limits, value: `[]`, rule: "type", path: "", msg: "want object"},
		{doc: limits, value: `{"limits": [{"rate": 500}]}`, rule: "maximum", path: "/limits/0/rate"}, // deepest wins over the missing name
		{doc: `{"type": "json", "schema": false}`, value: `1`, rule: "false"},
		{doc: `{"type": "json", "schema": {"not": {"type": "integer"}}}`, value: `1`, rule: "not"},
		{doc: `{"type": "json", "schema": {"dependentRequired": {"a": ["b"]}}}`, value: `{"a": 1}`, rule: "dependentRequired"},
		{doc: `{"type": "json", "schema": {"type": "string", "format": "email"}}`, value: `"nobody"`, rule: "format"},
		{doc: `{"type": "json", "schema": {"$ref": "#/$defs/port", "$defs": {"port": {"type": "integer", "minimum": 1}}}}`, value: `0`, rule: "minimum"},
		{doc: `{"type": "json", "schema": {"type": "integer", "maximum": 1e308}}`, value: `1e1000`, rule: "maximum"},
	}
	for _, tt := range tests {
		sc, err := Compile([]byte(tt.doc))
		if err != nil {
			t.Fatalf("Compile(%s): %v", tt.doc, err)
		}
		err = sc.Validate([]byte(tt.value), tt.ct)
		if tt.rule == "" {
			if err != nil {
				t.Errorf("%s: Validate(%q) = %v, want nil", tt.doc, tt.value, err)
			}
			continue
		}
		var v *Violation
		if !errors.As(err, &v) {
			t.Errorf("%s: Validate(%q) = %v, want a *Violation", tt.doc, tt.value, err)
			continue
		}
		if v.Rule != tt.rule || v.Path != tt.path || !strings.Contains(v.Msg, tt.msg) {
			t.Errorf("%s: Validate(%q) = %#v, want rule %q, path %q, message containing %q", tt.doc, tt.value, v, tt.rule, tt.path, tt.msg)
		}
	}
}

func TestViolationError(t *testing.T) {
	v := &Violation{Rule: "maximum", Path: "/limits/0/rate", Msg: "250 is more than the maximum 100"}
	if got, want := v.Error(), "rule maximum at /limits/0/rate: 250 is more than the maximum 100"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	v = &Violation{Rule: "max", Msg: "value 250 is more than the maximum 100"}
	if got, want := v.Error(), "rule max: value 250 is more than the maximum 100"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

// TestConcurrentValidate shares compiled schemas between goroutines; run
// with -race.
func TestConcurrentValidate(t *testing.T) {
	var scs []*Schema
	for _, doc := range validDocs {
		sc, err := Compile([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		scs = append(scs, sc)
	}
	values := []string{`{"a": 1}`, `7`, `0.5`, `true`, `1h`, `info`, `abc`, `"x@y.z"`, "\xff", `[1e2000]`}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 20 {
				for _, sc := range scs {
					for _, v := range values {
						_ = sc.Validate([]byte(v), "text/plain")
					}
				}
			}
		})
	}
	wg.Wait()
}

// TestHostileDocuments checks that documents at the edge of the library's
// limits fail or succeed cleanly, without a panic or a crash.
func TestHostileDocuments(t *testing.T) {
	deep := strings.Repeat(`{"items":`, 127) + `true` + strings.Repeat(`}`, 127)
	sc, err := Compile([]byte(`{"type": "json", "schema": ` + deep + `}`))
	if err != nil {
		t.Fatal(err)
	}
	_ = sc.Validate([]byte(strings.Repeat("[", 5000)+strings.Repeat("]", 5000)), "")
	if _, err := Compile([]byte(`{"type": "json", "schema": {"enum": ["` + strings.Repeat(`{[\\\"`, 1000) + `"]}}`)); err != nil {
		t.Errorf("brackets inside strings count as nesting: %v", err)
	}
	recursive, err := Compile([]byte(`{"type": "json", "schema": {"items": {"$ref": "#"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, depth := range []int{5000, 20000} {
		v := strings.Repeat("[", depth) + strings.Repeat("]", depth)
		_ = recursive.Validate([]byte(v), "") // 20000 exceeds encoding/json's nesting limit
	}
	cycle, err := Compile([]byte(`{"type": "json", "schema": {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}}`))
	if err == nil {
		_ = cycle.Validate([]byte(`1`), "")
	}
}
