package schema

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// exponentialDoc is n definitions each of which is allOf two references
// to the next: about 1 KB per 15 levels that validation expands to 2^n
// subschemas.
func exponentialDoc(n int) string {
	var b strings.Builder
	b.WriteString(`{"type": "json", "schema": {"$ref": "#/$defs/d0", "$defs": {`)
	for i := range n {
		fmt.Fprintf(&b, `"d%d": {"allOf": [{"$ref": "#/$defs/d%d"}, {"$ref": "#/$defs/d%d"}]}, `, i, i+1, i+1)
	}
	fmt.Fprintf(&b, `"d%d": {"type": "integer"}}}}`, n)
	return b.String()
}

// flatDoc is a big schema without fan-out: defs definitions of props
// properties each, every property referring to one of a few shared
// definitions.
func flatDoc(defs, props int) string {
	var b strings.Builder
	b.WriteString(`{"type": "json", "schema": {"type": "object", "properties": {`)
	for i := range defs {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, `"s%d": {"$ref": "#/$defs/d%d"}`, i, i)
	}
	b.WriteString(`}, "$defs": {"port": {"type": "integer", "minimum": 1, "maximum": 65535}, "name": {"type": "string", "pattern": "^[a-z]+$"}, "list": {"type": "array", "items": {"$ref": "#/$defs/name"}}`)
	for i := range defs {
		fmt.Fprintf(&b, `, "d%d": {"type": "object", "additionalProperties": false, "properties": {`, i)
		for j := range props {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, `"p%d": {"$ref": "#/$defs/%s"}`, j, []string{"port", "name", "list"}[j%3])
		}
		b.WriteString(`}}`)
	}
	b.WriteString(`}}}`)
	return b.String()
}

func TestExpansion(t *testing.T) {
	const tree = `{"type": "json", "schema": {"$ref": "#/$defs/node", "$defs": {"node": {
		"type": "object", "required": ["name"],
		"properties": {"name": {"type": "string"}, "left": {"$ref": "#/$defs/node"}, "right": {"$ref": "#/$defs/node"},
			"children": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
		"additionalProperties": false}}}}`
	tests := []struct {
		name, doc string
		want      string // substring of the error, "" = accepted
	}{
		{"exponential 20", exponentialDoc(20), "expands to more than 100000 subschemas through $ref"},
		{"exponential 40", exponentialDoc(40), "expands to more than 100000 subschemas through $ref"},
		{"exponential 15", exponentialDoc(15), "expands to more than 100000"},
		{"exponential 10", exponentialDoc(10), ""},
		{"tree", tree, ""},
		{"self", `{"type": "json", "schema": {"items": {"$ref": "#"}}}`, ""},
		{"json value", `{"type": "json", "schema": {"$defs": {"v": {"anyOf": [{"type": ["string", "number", "boolean", "null"]}, {"type": "array", "items": {"$ref": "#/$defs/v"}}, {"type": "object", "additionalProperties": {"$ref": "#/$defs/v"}}]}}, "$ref": "#/$defs/v"}}`, ""},
		{"draft-07 tuple", `{"type": "json", "schema": {"$schema": "http://json-schema.org/draft-07/schema#", "definitions": {"p": {"items": [{"$ref": "#/definitions/p"}, {"$ref": "#/definitions/p"}]}}, "$ref": "#/definitions/p"}}`, ""},
		{"dynamic tree", `{"type": "json", "schema": {"$dynamicAnchor": "node", "type": "object", "properties": {"kids": {"type": "array", "items": {"$dynamicRef": "#node"}}}}}`, ""},
		{"flat", flatDoc(300, 12), ""},
		{"anchor fan-out", `{"type": "json", "schema": {"$ref": "#a0", "$defs": {` + anchorChain(20) + `}}}`, "expands to more than 100000"},
		{"branching recursion", `{"type": "json", "schema": {"$defs": {"a": {"allOf": [{"items": {"$ref": "#/$defs/a"}}, {"items": {"$ref": "#/$defs/a"}}]}}, "$ref": "#/$defs/a"}}`, `subschema "#/$defs/a" refers to itself by two paths`},
		{"same property twice", `{"type": "json", "schema": {"properties": {"x": {"$ref": "#"}}, "patternProperties": {"^x": {"$ref": "#"}}}}`, "refers to itself by two paths"},
		{"items and items of items", `{"type": "json", "schema": {"$defs": {"a": {"items": {"anyOf": [{"$ref": "#/$defs/a"}, {"items": {"$ref": "#/$defs/a"}}]}}}, "$ref": "#/$defs/a"}}`, "refers to itself by two paths"},
	}
	for _, tt := range tests {
		start := time.Now()
		sc, err := Compile([]byte(tt.doc))
		if d := time.Since(start); tt.want != "" && d > 500*time.Millisecond {
			t.Errorf("%s: Compile took %v", tt.name, d)
		}
		if tt.want == "" {
			if err != nil {
				t.Errorf("%s: Compile: %v", tt.name, err)
			} else {
				_ = sc.Validate([]byte(`{"name": "a", "left": {"name": "b"}, "kids": [{}], "children": [{"name": "c"}]}`), "")
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Compile = %v, want an error mentioning %q", tt.name, err, tt.want)
		}
	}
}

// anchorChain is exponentialDoc with plain-name anchors instead of
// pointers.
func anchorChain(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `"d%d": {"$anchor": "a%d", "anyOf": [{"$ref": "#a%d"}, {"$ref": "#a%d"}]}, `, i, i, i+1, i+1)
	}
	fmt.Fprintf(&b, `"d%d": {"$anchor": "a%d", "type": "string"}`, n, n)
	return b.String()
}
