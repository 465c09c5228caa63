package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Schema is a compiled schema document. It is immutable and safe for
// concurrent use, so a gateway validates many writes with one Schema.
type Schema struct {
	contentType string // "" when any content type is accepted
	minBytes    int64  // -1 when unbounded
	maxBytes    int64  // -1 when unbounded
	check       func(value []byte) *Violation
}

// Violation says why a value does not satisfy its schema. Validate returns
// it as its error, so callers can name the rule and the path to the writer.
type Violation struct {
	// Rule is the rule that failed: "type", "min", "max", "minBytes",
	// "maxBytes", "contentType", "enum", "pattern" or "json" for the
	// document's own rules, or the JSON Schema keyword that failed (e.g.
	// "required", "maximum"; "false" for a false schema, "not", "$ref"
	// for a reference cycle). "internal" when validation itself failed;
	// the value is then refused.
	Rule string
	// Path is the JSON pointer (RFC 6901) of the offending part of the
	// value; "" is the whole value.
	Path string
	// Msg says what is wrong and what would fix it.
	Msg string
}

// Error returns "rule <Rule> at <Path>: <Msg>", without " at <Path>" when
// the whole value is at fault.
func (v *Violation) Error() string {
	if v.Path == "" {
		return "rule " + v.Rule + ": " + v.Msg
	}
	return "rule " + v.Rule + " at " + v.Path + ": " + v.Msg
}

// Validate checks a value and its content type against the schema: first
// the content type, then the size bounds, then the type's own rules. It
// returns nil or a *Violation, never another error. A panic inside the
// JSON Schema library becomes a Violation with Rule "internal", so a
// hostile value cannot take a gateway down.
func (s *Schema) Validate(value []byte, contentType string) (err error) {
	if s.contentType != "" && contentType != s.contentType {
		return &Violation{Rule: "contentType", Msg: fmt.Sprintf("content type %s is not the required %s", quote(contentType), quote(s.contentType))}
	}
	if n := int64(len(value)); s.maxBytes >= 0 && n > s.maxBytes {
		return &Violation{Rule: "maxBytes", Msg: fmt.Sprintf("value is %d bytes, more than the maximum %d", n, s.maxBytes)}
	} else if s.minBytes >= 0 && n < s.minBytes {
		return &Violation{Rule: "minBytes", Msg: fmt.Sprintf("value is %d bytes, fewer than the minimum %d", n, s.minBytes)}
	}
	defer func() {
		if r := recover(); r != nil {
			err = &Violation{Rule: "internal", Msg: fmt.Sprintf("validation failed unexpectedly (%v); the value is refused", r)}
		}
	}()
	if v := s.check(value); v != nil {
		return v
	}
	return nil
}

// Compile parses and compiles a schema document (the value of a schema
// key). Its errors name the field at fault and say how to fix it. A panic
// while compiling (a hostile embedded JSON Schema) becomes an error.
func Compile(doc []byte) (sc *Schema, err error) {
	defer func() {
		if r := recover(); r != nil {
			sc, err = nil, fmt.Errorf("schema: the document could not be compiled (%v); simplify it", r)
		}
	}()
	fields, err := decodeObject(doc)
	if err != nil {
		return nil, err
	}
	d := &decoder{fields: fields}
	typ, ok := fields["type"]
	if !ok {
		return nil, fmt.Errorf(`schema: field "type" is missing; set it to one of %s`, typeList)
	}
	var t string
	if err := json.Unmarshal(typ, &t); err != nil {
		return nil, fmt.Errorf(`schema: field "type" must be a JSON string, one of %s`, typeList)
	}
	compile, ok := types[t]
	if !ok {
		return nil, fmt.Errorf(`schema: field "type": unknown type %s; use one of %s`, quote(t), typeList)
	}
	allowed := append([]string{"type", "minBytes", "maxBytes", "contentType", "description"}, compile.fields...)
	for name := range fields {
		if !contains(allowed, name) {
			return nil, fmt.Errorf("schema: unknown field %s for type %s; the fields allowed are %s", quote(name), quote(t), strings.Join(allowed, ", "))
		}
	}
	sc = &Schema{minBytes: -1, maxBytes: -1}
	if err := d.nonNegInt("minBytes", &sc.minBytes); err != nil {
		return nil, err
	}
	if err := d.nonNegInt("maxBytes", &sc.maxBytes); err != nil {
		return nil, err
	}
	if sc.minBytes >= 0 && sc.maxBytes >= 0 && sc.minBytes > sc.maxBytes {
		return nil, fmt.Errorf(`schema: field "minBytes" (%d) is more than field "maxBytes" (%d); make minBytes at most maxBytes`, sc.minBytes, sc.maxBytes)
	}
	if _, err := d.str("contentType", &sc.contentType); err != nil {
		return nil, err
	} else if _, ok := fields["contentType"]; ok && sc.contentType == "" {
		return nil, errors.New(`schema: field "contentType" is empty; name the required content type, or leave the field out to accept any`)
	}
	var desc string
	if _, err := d.str("description", &desc); err != nil {
		return nil, err
	}
	if sc.check, err = compile.fn(d); err != nil {
		return nil, err
	}
	return sc, nil
}

type typeCompiler struct {
	fields []string // the type's own fields
	fn     func(d *decoder) (func([]byte) *Violation, error)
}

var types = map[string]typeCompiler{
	"json":     {[]string{"schema"}, compileJSON},
	"int":      {[]string{"min", "max"}, compileInt},
	"float":    {[]string{"min", "max"}, compileFloat},
	"bool":     {nil, compileBool},
	"duration": {[]string{"min", "max"}, compileDuration},
	"enum":     {[]string{"values"}, compileEnum},
	"regex":    {[]string{"pattern"}, compileRegex},
	"string":   {nil, compileString},
}

const typeList = "json, int, float, bool, duration, enum, regex, string"

// decodeObject decodes a JSON object into its members, refusing duplicate
// members and anything after the object.
func decodeObject(doc []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.New("schema: the document must be a JSON object, such as {\"type\": \"string\"}")
	}
	fields := make(map[string]json.RawMessage)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("schema: the document is not valid JSON: %v", err)
		}
		name, _ := tok.(string)
		if _, dup := fields[name]; dup {
			return nil, fmt.Errorf("schema: field %s appears twice; keep one", quote(name))
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("schema: field %s: the document is not valid JSON: %v", quote(name), err)
		}
		fields[name] = raw
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("schema: the document is not valid JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("schema: the document has data after its JSON object; remove it")
	}
	return fields, nil
}

// decoder reads typed fields of a schema document, with errors that name
// the field.
type decoder struct {
	fields map[string]json.RawMessage
}

func (d *decoder) str(name string, out *string) (bool, error) {
	raw, ok := d.fields[name]
	if !ok {
		return false, nil
	}
	if err := json.Unmarshal(raw, out); err != nil || raw[0] != '"' {
		return false, fmt.Errorf("schema: field %s must be a JSON string", quote(name))
	}
	return true, nil
}

func (d *decoder) nonNegInt(name string, out *int64) error {
	raw, ok := d.fields[name]
	if !ok {
		return nil
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("schema: field %s must be a non-negative JSON integer, such as 1024 (got %s)", quote(name), clip(string(raw)))
	}
	*out = n
	return nil
}

func (d *decoder) int(name string) (int64, bool, error) {
	raw, ok := d.fields[name]
	if !ok {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("schema: field %s must be a JSON integer within the int64 range, such as 100 (got %s)", quote(name), clip(string(raw)))
	}
	return n, true, nil
}

func (d *decoder) float(name string) (float64, bool, error) {
	raw, ok := d.fields[name]
	if !ok {
		return 0, false, nil
	}
	var x float64
	if err := json.Unmarshal(raw, &x); err != nil || !isNumber(raw) {
		return 0, false, fmt.Errorf("schema: field %s must be a finite JSON number, such as 0.5 (got %s)", quote(name), clip(string(raw)))
	}
	return x, true, nil
}

func (d *decoder) duration(name string) (time.Duration, string, bool, error) {
	var s string
	ok, err := d.str(name, &s)
	if err != nil || !ok {
		if err != nil {
			err = fmt.Errorf(`schema: field %s must be a JSON string holding a Go duration, such as "250ms" or "1h30m"`, quote(name))
		}
		return 0, "", false, err
	}
	dur, err := time.ParseDuration(s)
	if err != nil {
		return 0, "", false, fmt.Errorf(`schema: field %s: %s is not a Go duration; write one such as "250ms" or "1h30m"`, quote(name), quote(s))
	}
	return dur, s, true, nil
}

func compileInt(d *decoder) (func([]byte) *Violation, error) {
	lo, hasLo, err := d.int("min")
	if err != nil {
		return nil, err
	}
	hi, hasHi, err := d.int("max")
	if err != nil {
		return nil, err
	}
	if hasLo && hasHi && lo > hi {
		return nil, fmt.Errorf(`schema: field "min" (%d) is more than field "max" (%d); make min at most max`, lo, hi)
	}
	return func(v []byte) *Violation {
		n, err := strconv.ParseInt(string(v), 10, 64)
		if errors.Is(err, strconv.ErrRange) {
			return &Violation{Rule: "type", Msg: fmt.Sprintf("value %s is outside the int64 range", quote(string(v)))}
		} else if err != nil {
			return &Violation{Rule: "type", Msg: fmt.Sprintf("value %s is not a base-10 integer; write one such as 42 or -7", quote(string(v)))}
		}
		if hasLo && n < lo {
			return &Violation{Rule: "min", Msg: fmt.Sprintf("value %d is less than the minimum %d", n, lo)}
		}
		if hasHi && n > hi {
			return &Violation{Rule: "max", Msg: fmt.Sprintf("value %d is more than the maximum %d", n, hi)}
		}
		return nil
	}, nil
}

func compileFloat(d *decoder) (func([]byte) *Violation, error) {
	lo, hasLo, err := d.float("min")
	if err != nil {
		return nil, err
	}
	hi, hasHi, err := d.float("max")
	if err != nil {
		return nil, err
	}
	if hasLo && hasHi && lo > hi {
		return nil, fmt.Errorf(`schema: field "min" (%s) is more than field "max" (%s); make min at most max`, fmtFloat(lo), fmtFloat(hi))
	}
	return func(v []byte) *Violation {
		x, err := strconv.ParseFloat(string(v), 64)
		if err != nil || math.IsInf(x, 0) || math.IsNaN(x) {
			return &Violation{Rule: "type", Msg: fmt.Sprintf("value %s is not a finite number; write one such as 0.25 or -1e3", quote(string(v)))}
		}
		if hasLo && x < lo {
			return &Violation{Rule: "min", Msg: fmt.Sprintf("value %s is less than the minimum %s", fmtFloat(x), fmtFloat(lo))}
		}
		if hasHi && x > hi {
			return &Violation{Rule: "max", Msg: fmt.Sprintf("value %s is more than the maximum %s", fmtFloat(x), fmtFloat(hi))}
		}
		return nil
	}, nil
}

func compileBool(*decoder) (func([]byte) *Violation, error) {
	return func(v []byte) *Violation {
		if s := string(v); s != "true" && s != "false" {
			return &Violation{Rule: "type", Msg: fmt.Sprintf(`value %s is not a boolean; write "true" or "false"`, quote(s))}
		}
		return nil
	}, nil
}

func compileDuration(d *decoder) (func([]byte) *Violation, error) {
	lo, loText, hasLo, err := d.duration("min")
	if err != nil {
		return nil, err
	}
	hi, hiText, hasHi, err := d.duration("max")
	if err != nil {
		return nil, err
	}
	if hasLo && hasHi && lo > hi {
		return nil, fmt.Errorf(`schema: field "min" (%s) is more than field "max" (%s); make min at most max`, loText, hiText)
	}
	return func(v []byte) *Violation {
		dur, err := time.ParseDuration(string(v))
		if err != nil {
			return &Violation{Rule: "type", Msg: fmt.Sprintf(`value %s is not a Go duration; write one such as "250ms" or "1h30m"`, quote(string(v)))}
		}
		if hasLo && dur < lo {
			return &Violation{Rule: "min", Msg: fmt.Sprintf("value %s is less than the minimum %s", quote(string(v)), loText)}
		}
		if hasHi && dur > hi {
			return &Violation{Rule: "max", Msg: fmt.Sprintf("value %s is more than the maximum %s", quote(string(v)), hiText)}
		}
		return nil
	}, nil
}

func compileEnum(d *decoder) (func([]byte) *Violation, error) {
	raw, ok := d.fields["values"]
	if !ok {
		return nil, errors.New(`schema: field "values" is missing; list the accepted values, such as ["debug", "info"]`)
	}
	var values []string
	if err := json.Unmarshal(raw, &values); err != nil || raw[0] != '[' {
		return nil, errors.New(`schema: field "values" must be a JSON array of strings, such as ["debug", "info"]`)
	}
	if len(values) == 0 {
		return nil, errors.New(`schema: field "values" is empty, so no value could be written; list at least one`)
	}
	set := make(map[string]struct{}, len(values))
	for _, v := range values {
		set[v] = struct{}{}
	}
	list := make([]string, 0, min(len(values), 10))
	for _, v := range values[:cap(list)] {
		list = append(list, quote(v))
	}
	shown := strings.Join(list, ", ")
	if len(values) > len(list) {
		shown += fmt.Sprintf(", … (%d in all)", len(values))
	}
	return func(v []byte) *Violation {
		if _, ok := set[string(v)]; !ok {
			return &Violation{Rule: "enum", Msg: fmt.Sprintf("value %s is not one of %s", quote(string(v)), shown)}
		}
		return nil
	}, nil
}

func compileRegex(d *decoder) (func([]byte) *Violation, error) {
	var pattern string
	if ok, err := d.str("pattern", &pattern); err != nil {
		return nil, err
	} else if !ok {
		return nil, errors.New(`schema: field "pattern" is missing; give a Go (RE2) regular expression the whole value must match, such as "[a-z]+"`)
	}
	if _, err := regexp.Compile(pattern); err != nil {
		return nil, fmt.Errorf(`schema: field "pattern" is not a valid Go (RE2) regular expression: %v`, err)
	}
	// The whole value must match: anchor at both ends of the text, whatever
	// flags the pattern sets inside.
	re, err := regexp.Compile(`\A(?:` + pattern + `)\z`)
	if err != nil {
		return nil, fmt.Errorf(`schema: field "pattern" cannot be anchored to the whole value: %v`, err)
	}
	return func(v []byte) *Violation {
		if !re.Match(v) {
			return &Violation{Rule: "pattern", Msg: fmt.Sprintf("value %s does not match the pattern %s as a whole", quote(string(v)), quote(pattern))}
		}
		return nil
	}, nil
}

func compileString(*decoder) (func([]byte) *Violation, error) {
	return func(v []byte) *Violation {
		if !utf8.Valid(v) {
			return &Violation{Rule: "type", Msg: "value is not valid UTF-8 text"}
		}
		return nil
	}, nil
}

// isNumber reports whether raw, a valid JSON value, is a number.
func isNumber(raw []byte) bool { return raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9' }

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func fmtFloat(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }

// clip shortens s for a message.
func clip(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// quote quotes s for a message, shortened.
func quote(s string) string {
	if len(s) > 64 {
		return strconv.Quote(clip(s)) + fmt.Sprintf(" (%d bytes)", len(s))
	}
	return strconv.Quote(s)
}
