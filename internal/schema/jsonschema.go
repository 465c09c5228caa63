package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// docURL is the location the embedded JSON Schema is compiled under. It
// is hierarchical so that relative references ("other.json") resolve to
// other URLs, which refuseLoader refuses; the .invalid domain never
// resolves anyway.
const docURL = "https://schema.confgate.invalid/document.json"

// maxExponent bounds the decimal exponent of numbers in "json" values. The
// JSON Schema library turns numbers into exact rationals, whose cost grows
// with the exponent (about 20 ms for 1e999999): without a bound a 1 MB value
// of such numbers would keep a gateway busy for minutes. float64 reaches
// about 1e308, so no real configuration needs more.
const maxExponent = 1000

// maxSchemaDepth and maxSchemaObjects bound an embedded JSON Schema. The
// library's compile time grows faster than linearly with both (at 1,000
// levels it takes a second, at 40,000 subschemas half a minute), and every
// gateway compiles every schema it applies. Real schemas stay far below:
// nest through "$defs" instead of inline, and split very large schemas
// across prefixes.
const (
	maxSchemaDepth   = 128
	maxSchemaObjects = 5000
)

var printer = message.NewPrinter(language.English)

// refuseLoader refuses every URL: schemas are self-contained, a gateway
// never reaches out to the network or the file system to compile one.
type refuseLoader struct{}

func (refuseLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf(`external references are refused, schemas must be self-contained: move the definition under "$defs" and refer to it as "#/$defs/<name>"`)
}

func compileJSON(d *decoder) (func([]byte) *Violation, error) {
	var js *jsonschema.Schema
	if raw, ok := d.fields["schema"]; ok {
		if depth, objects := shape(raw); depth > maxSchemaDepth {
			return nil, fmt.Errorf(`schema: field "schema" nests %d levels deep, more than the %d accepted; move nested schemas under "$defs" and refer to them with "$ref"`, depth, maxSchemaDepth)
		} else if objects > maxSchemaObjects {
			return nil, fmt.Errorf(`schema: field "schema" holds %d JSON objects, more than the %d accepted; split it into schemas for narrower prefixes`, objects, maxSchemaObjects)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf(`schema: field "schema" is not valid JSON: %v`, err)
		}
		c := jsonschema.NewCompiler()
		c.DefaultDraft(jsonschema.Draft2020)
		c.AssertFormat()
		c.UseLoader(refuseLoader{})
		if err := c.AddResource(docURL, doc); err != nil {
			return nil, fmt.Errorf(`schema: field "schema": %v`, err)
		}
		if js, err = c.Compile(docURL); err != nil {
			var sve *jsonschema.SchemaValidationError
			if errors.As(err, &sve) {
				if verr, ok := sve.Err.(*jsonschema.ValidationError); ok {
					v := violationOf(verr)
					return nil, fmt.Errorf(`schema: field "schema" is not a valid JSON Schema: at %s of the schema: %s (keyword %s of the metaschema)`, quote(v.Path), v.Msg, v.Rule)
				}
			}
			return nil, fmt.Errorf(`schema: field "schema" is not a valid JSON Schema: %v`, err)
		}
		if err := checkExpansion(js); err != nil {
			return nil, fmt.Errorf("schema: %v", err)
		}
	}
	return func(v []byte) *Violation {
		if !utf8.Valid(v) {
			return &Violation{Rule: "json", Msg: "value is not valid JSON: it is not UTF-8 text"}
		}
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(v))
		if err != nil {
			return &Violation{Rule: "json", Msg: fmt.Sprintf("value is not valid JSON (%v); write a JSON document", err)}
		}
		if hugeNumber(inst) {
			path, n := firstHugeNumber(inst, nil)
			return &Violation{Rule: "json", Path: path, Msg: fmt.Sprintf("number %s has an exponent beyond ±%d, which is not accepted; write it within range or as a string", clip(n.String()), maxExponent)}
		}
		if js == nil {
			return nil
		}
		err = js.Validate(inst)
		if err == nil {
			return nil
		}
		verr, ok := err.(*jsonschema.ValidationError)
		if !ok {
			return &Violation{Rule: "json", Msg: err.Error()}
		}
		return violationOf(verr)
	}, nil
}

// violationOf reports the most useful failure of a JSON Schema validation:
// the first of the deepest leaves (by instance location), that is, the one
// closest to the offending part of the value.
func violationOf(root *jsonschema.ValidationError) *Violation {
	best, bestDepth := root, -1
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) == 0 {
			if d := len(e.InstanceLocation); d > bestDepth {
				best, bestDepth = e, d
			}
			return
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(root)
	return &Violation{
		Rule: ruleOf(best.ErrorKind),
		Path: pointer(best.InstanceLocation),
		Msg:  best.ErrorKind.LocalizedString(printer),
	}
}

// ruleOf names the keyword that failed. The keyword comes first in the
// library's keyword path (dependentRequired's path goes on with the
// property name).
func ruleOf(k jsonschema.ErrorKind) string {
	if p := k.KeywordPath(); len(p) > 0 {
		return p[0]
	}
	switch k.(type) {
	case *kind.FalseSchema:
		return "false"
	case *kind.Not:
		return "not"
	case *kind.RefCycle:
		return "$ref"
	case *kind.InvalidJsonValue:
		return "json"
	}
	return "schema"
}

var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")

// pointer encodes tokens as a JSON pointer (RFC 6901).
func pointer(tokens []string) string {
	var b strings.Builder
	for _, t := range tokens {
		b.WriteByte('/')
		b.WriteString(pointerEscaper.Replace(t))
	}
	return b.String()
}

// hugeNumber reports whether v holds a number with an exponent beyond
// ±maxExponent.
func hugeNumber(v any) bool {
	switch v := v.(type) {
	case json.Number:
		return hugeExponent(string(v))
	case []any:
		return slices.ContainsFunc(v, hugeNumber)
	case map[string]any:
		for _, e := range v {
			if hugeNumber(e) {
				return true
			}
		}
	}
	return false
}

// firstHugeNumber finds the first huge number, taking object members in
// the order of their names, so every gateway names the same one.
func firstHugeNumber(v any, path []string) (string, json.Number) {
	switch v := v.(type) {
	case json.Number:
		if hugeExponent(string(v)) {
			return pointer(path), v
		}
	case []any:
		for i, e := range v {
			if p, n := firstHugeNumber(e, append(path, strconv.Itoa(i))); n != "" {
				return p, n
			}
		}
	case map[string]any:
		names := make([]string, 0, len(v))
		for name := range v {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			if p, n := firstHugeNumber(v[name], append(path, name)); n != "" {
				return p, n
			}
		}
	}
	return "", ""
}

func hugeExponent(n string) bool {
	i := strings.IndexAny(n, "eE")
	if i < 0 {
		return false
	}
	exp := strings.TrimLeft(n[i+1:], "+-")
	exp = strings.TrimLeft(exp, "0")
	if len(exp) > 6 {
		return true
	}
	e, _ := strconv.Atoi(exp)
	return e > maxExponent
}

// shape returns the nesting depth of the JSON value raw and the number of
// objects in it. raw must be valid JSON.
func shape(raw []byte) (maxDepth, objects int) {
	depth, inString, escaped := 0, false, false
	for _, c := range raw {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			if c == '{' {
				objects++
			}
			depth++
			maxDepth = max(maxDepth, depth)
		case c == '}' || c == ']':
			depth--
		}
	}
	return maxDepth, objects
}
