package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/confgate/confgate/internal/keyspace"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"github.com/confgate/confgate/store"
	"go.yaml.in/yaml/v3"
)

// Change-set files, read by apply and validate. YAML (.yaml, .yml) or JSON
// (.json); any other name, and "-" (standard input), is JSON when it parses
// as JSON and YAML otherwise:
//
//	request_id: deploy-2026-11-30-1     # optional
//	operations:
//	  - put: payments/db/timeout
//	    value: "30s"                    # or value_base64, or value_json
//	    content_type: text/plain        # optional
//	    headers: {team: payments}       # optional
//	    if_version: "0:42"              # optional; or if_absent: true
//	  - delete: payments/old
//	    if_version: "1:7"
//
// A put has exactly one of value (a string, stored as its UTF-8 bytes),
// value_base64 (standard base64, for binary values) and value_json (any
// YAML or JSON document, stored as compact JSON; content_type then
// defaults to application/json). A delete has none of them, nor
// content_type or headers. Decoding is strict: an unknown field, a key
// given twice, a value of the wrong type are errors naming the file and
// the operation.

// changeSet is a parsed change-set file.
type changeSet struct {
	// Name is how messages refer to the file.
	Name      string
	RequestID string
	Ops       []changeOp
}

// changeOp is one operation of a change set.
type changeOp struct {
	// Index is the operation's place in the file, from 1.
	Index int
	// Line is where it starts in the file (0: unknown).
	Line        int
	Key         string
	Delete      bool
	Value       []byte
	ContentType string
	Headers     []store.Header
	Cond        store.Cond
}

// where names the operation in messages.
func (op changeOp) where(name string) string {
	s := fmt.Sprintf("%s: operation %d", name, op.Index)
	if op.Line > 0 {
		s += fmt.Sprintf(" (line %d)", op.Line)
	}
	return s
}

func (op changeOp) verb() string {
	if op.Delete {
		return "delete"
	}
	return "put"
}

// proto is the operation as Apply takes it.
func (op changeOp) proto() *confgatev1.Operation {
	o := &confgatev1.Operation{Key: op.Key, Delete: op.Delete, Value: op.Value, ContentType: op.ContentType,
		Precondition: condProto(op.Cond)}
	for _, h := range op.Headers {
		o.Headers = append(o.Headers, &confgatev1.Header{Key: h.Key, Value: h.Value})
	}
	return o
}

// protoOps is the change set as Apply takes it.
func (cs *changeSet) protoOps() []*confgatev1.Operation {
	out := make([]*confgatev1.Operation, len(cs.Ops))
	for i, op := range cs.Ops {
		out[i] = op.proto()
	}
	return out
}

// condProto is a precondition as the API takes it (nil for none).
func condProto(c store.Cond) *confgatev1.Precondition {
	switch c.Kind {
	case store.CondAbsent:
		return &confgatev1.Precondition{Condition: &confgatev1.Precondition_Absent{Absent: true}}
	case store.CondVersion:
		return &confgatev1.Precondition{Condition: &confgatev1.Precondition_Version{
			Version: &confgatev1.Version{Partition: c.Partition, Offset: c.Offset}}}
	}
	return nil
}

// condText describes a precondition in output: "if_version 0:42",
// "if_absent", or "" for none.
func condText(c store.Cond) string {
	switch c.Kind {
	case store.CondAbsent:
		return "if_absent"
	case store.CondVersion:
		return "if_version " + c.String()
	}
	return ""
}

// versionPO is a version as --if-version and if_version take it:
// PARTITION:OFFSET.
func versionPO(v *confgatev1.Version) string {
	return strconv.FormatInt(int64(v.GetPartition()), 10) + ":" + strconv.FormatInt(v.GetOffset(), 10)
}

// maxChangeSetFile bounds a change-set file: MaxSetBytes of values, with
// room for base64 and the YAML around them.
const maxChangeSetFile = 4 * store.MaxSetBytes

// readChangeSet reads a change-set file ("-": standard input).
func readChangeSet(path string, stdin io.Reader) (*changeSet, error) {
	var (
		data []byte
		err  error
		name = path
	)
	if path == "-" {
		name = "standard input"
		data, err = io.ReadAll(io.LimitReader(stdin, maxChangeSetFile+1))
	} else {
		var f *os.File
		if f, err = os.Open(path); err == nil {
			data, err = io.ReadAll(io.LimitReader(f, maxChangeSetFile+1))
			f.Close()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("read the change set: %w", err)
	}
	if len(data) > maxChangeSetFile {
		return nil, fmt.Errorf("%s: more than %d bytes: a change set holds at most %d bytes of entries", name, maxChangeSetFile, store.MaxSetBytes)
	}
	format := ""
	switch strings.ToLower(filepath.Ext(path)) {
	case ".json":
		format = "json"
	case ".yaml", ".yml":
		format = "yaml"
	}
	return parseChangeSet(name, format, data)
}

// parseChangeSet parses a change set; format is "json", "yaml" or ""
// (JSON when data is valid JSON, else YAML).
func parseChangeSet(name, format string, data []byte) (*changeSet, error) {
	if format == "" {
		format = "yaml"
		if json.Valid(data) {
			format = "json"
		}
	}
	var (
		root *tnode
		err  error
	)
	if format == "json" {
		root, err = treeFromJSON(data)
	} else {
		root, err = treeFromYAML(data)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: not valid %s: %w", name, strings.ToUpper(format), err)
	}
	return changeSetFromTree(name, root)
}

const changeSetShape = `want {request_id?, operations: [{put: KEY, value: ...} or {delete: KEY}, ...]}`

func changeSetFromTree(name string, root *tnode) (*changeSet, error) {
	if root == nil {
		return nil, fmt.Errorf("%s: empty: %s", name, changeSetShape)
	}
	if root.kind != tMap {
		return nil, fmt.Errorf("%s: the top level is %s: %s", name, root.describe(), changeSetShape)
	}
	cs := &changeSet{Name: name}
	var ops *tnode
	for i, k := range root.keys {
		v := root.vals[i]
		switch k {
		case "request_id":
			s, err := v.str("request_id")
			if err == nil {
				err = store.CheckRequestID(s)
			}
			if err != nil {
				return nil, fmt.Errorf("%s: request_id: %w", name, err)
			}
			cs.RequestID = s
		case "operations":
			ops = v
		default:
			return nil, fmt.Errorf("%s:%s unknown top-level field %q: %s", name, lineSuffix(root.klines[i]), k, changeSetShape)
		}
	}
	if ops == nil || (ops.kind == tScalar && ops.val == nil) {
		return nil, fmt.Errorf("%s: no operations: %s", name, changeSetShape)
	}
	if ops.kind != tList {
		return nil, fmt.Errorf("%s: operations is %s, want a list", name, ops.describe())
	}
	if len(ops.items) == 0 {
		return nil, fmt.Errorf("%s: operations is empty: a change set has at least one", name)
	}
	if len(ops.items) > store.MaxSetOps {
		return nil, fmt.Errorf("%s: %d operations, more than the limit %d: split the change set", name, len(ops.items), store.MaxSetOps)
	}
	seen := map[string]int{}
	total := 0
	for i, n := range ops.items {
		op, err := opFromTree(i+1, n)
		if err != nil {
			where := fmt.Sprintf("%s: operation %d", name, i+1)
			if n.line > 0 {
				where += fmt.Sprintf(" (line %d)", n.line)
			}
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if first, dup := seen[op.Key]; dup {
			return nil, fmt.Errorf("%s: key %s is already in operation %d: a change set writes each key at most once", op.where(name), keyspace.Quote(op.Key), first)
		}
		seen[op.Key] = op.Index
		total += len(op.Key) + len(op.Value)
		for _, h := range op.Headers {
			total += len(h.Key) + len(h.Value)
		}
		cs.Ops = append(cs.Ops, op)
	}
	if total > store.MaxSetBytes {
		return nil, fmt.Errorf("%s: the operations hold %d bytes, more than a change set's limit %d: split the change set", name, total, store.MaxSetBytes)
	}
	return cs, nil
}

var opFields = []string{"put", "delete", "value", "value_base64", "value_json", "content_type", "headers", "if_version", "if_absent"}

func opFromTree(index int, n *tnode) (changeOp, error) {
	op := changeOp{Index: index, Line: n.line}
	if n.kind != tMap {
		return op, fmt.Errorf("is %s, want a mapping such as {put: KEY, value: ...} or {delete: KEY}", n.describe())
	}
	var (
		hasPut, hasDel bool
		values         []string
		ct             *string
		headers        *tnode
		ifVersion      *tnode
		ifAbsent       *tnode
	)
	for i, k := range n.keys {
		v := n.vals[i]
		var err error
		switch k {
		case "put", "delete":
			if hasPut || hasDel {
				return op, errors.New(`has both put and delete: an operation is one of them`)
			}
			hasPut, hasDel = k == "put", k == "delete"
			op.Delete = hasDel
			if op.Key, err = v.str(k); err != nil {
				return op, err
			}
		case "value":
			var s string
			if s, err = v.str(k); err != nil {
				return op, fmt.Errorf("%w (quote it, or give a JSON document as value_json)", err)
			}
			op.Value = []byte(s)
			values = append(values, k)
		case "value_base64":
			var s string
			if s, err = v.str(k); err != nil {
				return op, err
			}
			if op.Value, err = base64.StdEncoding.DecodeString(strings.Join(strings.Fields(s), "")); err != nil {
				return op, fmt.Errorf("value_base64: not standard base64: %v", err)
			}
			if op.Value == nil {
				op.Value = []byte{}
			}
			values = append(values, k)
		case "value_json":
			var b bytes.Buffer
			if err := v.appendJSON(&b); err != nil {
				return op, fmt.Errorf("value_json: %w", err)
			}
			op.Value = b.Bytes()
			values = append(values, k)
		case "content_type":
			var s string
			if s, err = v.str(k); err != nil {
				return op, err
			}
			ct = &s
		case "headers":
			headers = v
		case "if_version":
			ifVersion = v
		case "if_absent":
			ifAbsent = v
		default:
			return op, fmt.Errorf("unknown field %q (an operation has %s)", k, strings.Join(opFields, ", "))
		}
	}
	if !hasPut && !hasDel {
		return op, errors.New(`neither put nor delete: give "put: KEY" or "delete: KEY"`)
	}
	if err := keyspace.ValidateKey(op.Key); err != nil {
		return op, err
	}
	if hasDel {
		var extra []string
		extra = append(extra, values...)
		if ct != nil {
			extra = append(extra, "content_type")
		}
		if headers != nil {
			extra = append(extra, "headers")
		}
		if len(extra) > 0 {
			return op, fmt.Errorf("delete of %s has %s: a delete carries no value, content type or headers", keyspace.Quote(op.Key), strings.Join(extra, ", "))
		}
	} else {
		switch len(values) {
		case 0:
			return op, fmt.Errorf("put of %s has no value: give value, value_base64 or value_json", keyspace.Quote(op.Key))
		case 1:
		default:
			return op, fmt.Errorf("put of %s has %s: give one of them", keyspace.Quote(op.Key), strings.Join(values, " and "))
		}
		if ct != nil {
			op.ContentType = *ct
		} else if values[0] == "value_json" {
			op.ContentType = "application/json"
		}
	}
	if headers != nil {
		hs, err := headersFromTree(headers)
		if err != nil {
			return op, err
		}
		op.Headers = hs
	}
	if ifVersion != nil && ifAbsent != nil {
		return op, errors.New("has both if_version and if_absent: give one precondition")
	}
	if ifVersion != nil {
		s, err := ifVersion.str("if_version")
		if err != nil {
			return op, fmt.Errorf(`%w (quote it: if_version: "0:42")`, err)
		}
		c, err := store.ParseCond(s)
		if err == nil && c.Kind != store.CondVersion {
			err = errors.New(`"absent" is not a version: write if_absent: true`)
		}
		if err != nil {
			return op, fmt.Errorf("if_version: %w", err)
		}
		op.Cond = c
	}
	if ifAbsent != nil {
		b, ok := ifAbsent.val.(bool)
		if ifAbsent.kind != tScalar || !ok {
			return op, fmt.Errorf("if_absent is %s, want true", ifAbsent.describe())
		}
		if !b {
			return op, errors.New("if_absent: false: leave it out for no precondition")
		}
		op.Cond = store.Cond{Kind: store.CondAbsent}
	}
	if !op.Delete {
		if err := store.CheckWrite(store.Write{Key: op.Key, Value: op.Value, ContentType: op.ContentType, Headers: op.Headers}); err != nil {
			return op, fmt.Errorf("put of %s: %w", keyspace.Quote(op.Key), err)
		}
	}
	return op, nil
}

// headersFromTree reads a headers mapping, in file order.
func headersFromTree(n *tnode) ([]store.Header, error) {
	if n.kind != tMap {
		return nil, fmt.Errorf("headers is %s, want a mapping of names to strings, such as {team: payments}", n.describe())
	}
	var out []store.Header
	for i, k := range n.keys {
		switch {
		case k == "":
			return nil, errors.New("headers: a header name is empty")
		case strings.EqualFold(k, store.ContentTypeHeader):
			return nil, fmt.Errorf("headers: a %q header: give the content type as content_type", k)
		case strings.HasPrefix(strings.ToLower(k), "confgate-"):
			return nil, fmt.Errorf("headers: %q: headers named confgate-... are reserved for the gateways", k)
		}
		s, err := n.vals[i].str("header " + strconv.Quote(k))
		if err != nil {
			return nil, fmt.Errorf("headers: %w", err)
		}
		out = append(out, store.Header{Key: k, Value: []byte(s)})
	}
	return out, nil
}

// A tnode is a parsed JSON or YAML document, the same for both, with
// mappings in file order.
type tkind uint8

const (
	tScalar tkind = iota
	tMap
	tList
)

type tnode struct {
	kind tkind
	// line is where the node starts, from 1 (0: unknown).
	line int
	// A scalar: string, bool, nil, or a number (json.Number from JSON;
	// int, uint64 or float64 from YAML).
	val any
	// A mapping, and the line of each key.
	keys   []string
	vals   []*tnode
	klines []int
	// A list.
	items []*tnode
}

func (n *tnode) describe() string {
	switch n.kind {
	case tMap:
		return "a mapping"
	case tList:
		return "a list"
	}
	switch v := n.val.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return fmt.Sprintf("a boolean (%t)", v)
	}
	return fmt.Sprintf("a number (%v)", n.val)
}

// str is the node's string, or an error naming field.
func (n *tnode) str(field string) (string, error) {
	if s, ok := n.val.(string); ok && n.kind == tScalar {
		return s, nil
	}
	return "", fmt.Errorf("%s is %s, want a string", field, n.describe())
}

// appendJSON writes the node as compact JSON.
func (n *tnode) appendJSON(b *bytes.Buffer) error {
	switch n.kind {
	case tMap:
		b.WriteByte('{')
		for i, k := range n.keys {
			if i > 0 {
				b.WriteByte(',')
			}
			writeJSONString(b, k)
			b.WriteByte(':')
			if err := n.vals[i].appendJSON(b); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	case tList:
		b.WriteByte('[')
		for i, it := range n.items {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := it.appendJSON(b); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	default:
		switch v := n.val.(type) {
		case string:
			if !utf8.ValidString(v) {
				return errors.New("a string is not valid UTF-8")
			}
			writeJSONString(b, v)
		case json.Number:
			b.WriteString(v.String())
		default:
			j, err := json.Marshal(v)
			if err != nil {
				return fmt.Errorf("%v has no JSON form", v)
			}
			b.Write(j)
		}
	}
	return nil
}

func writeJSONString(b *bytes.Buffer, s string) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	enc.Encode(s) // a string always encodes
	b.Truncate(b.Len() - 1)
}

func lineSuffix(line int) string {
	if line <= 0 {
		return ""
	}
	return fmt.Sprintf(" line %d:", line)
}

// maxTreeNodes bounds a document's nodes, YAML aliases expanded.
const maxTreeNodes = 1 << 20

// treeFromYAML parses one YAML document (nil when empty).
func treeFromYAML(data []byte) (*tnode, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, err
	}
	var more yaml.Node
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("line %d: a second document: a change set is one document", more.Line)
	}
	budget := maxTreeNodes
	return fromYAML(&doc, &budget, 0)
}

func fromYAML(n *yaml.Node, budget *int, depth int) (*tnode, error) {
	if *budget--; *budget < 0 {
		return nil, errors.New("too many nodes (aliases expand to more than a million)")
	}
	if depth > 1000 {
		return nil, fmt.Errorf("line %d: nested more than 1000 deep", n.Line)
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil, nil
		}
		return fromYAML(n.Content[0], budget, depth+1)
	case yaml.AliasNode:
		return fromYAML(n.Alias, budget, depth+1)
	case yaml.MappingNode:
		t := &tnode{kind: tMap, line: n.Line}
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind == yaml.AliasNode {
				k = k.Alias
			}
			if k.Kind != yaml.ScalarNode || k.ShortTag() == "!!null" {
				return nil, fmt.Errorf("line %d: a mapping key is not a string", k.Line)
			}
			if k.ShortTag() == "!!merge" {
				return nil, fmt.Errorf("line %d: merge keys (<<) are not supported", k.Line)
			}
			if seen[k.Value] {
				return nil, fmt.Errorf("line %d: %q is given twice in one mapping", k.Line, k.Value)
			}
			seen[k.Value] = true
			vt, err := fromYAML(v, budget, depth+1)
			if err != nil {
				return nil, err
			}
			t.keys = append(t.keys, k.Value)
			t.vals = append(t.vals, vt)
			t.klines = append(t.klines, k.Line)
		}
		return t, nil
	case yaml.SequenceNode:
		t := &tnode{kind: tList, line: n.Line}
		for _, c := range n.Content {
			ct, err := fromYAML(c, budget, depth+1)
			if err != nil {
				return nil, err
			}
			t.items = append(t.items, ct)
		}
		return t, nil
	case yaml.ScalarNode:
		t := &tnode{kind: tScalar, line: n.Line}
		switch tag := n.ShortTag(); tag {
		case "!!str":
			t.val = n.Value
		case "!!null":
		case "!!bool", "!!int", "!!float":
			if err := n.Decode(&t.val); err != nil {
				return nil, fmt.Errorf("line %d: %v", n.Line, err)
			}
		default:
			return nil, fmt.Errorf("line %d: values tagged %s are not supported", n.Line, tag)
		}
		return t, nil
	}
	return nil, fmt.Errorf("line %d: unsupported YAML node", n.Line)
}

// treeFromJSON parses one JSON document.
func treeFromJSON(data []byte) (*tnode, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	p := &jsonTree{dec: dec, data: data}
	t, err := p.value(0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("unexpected data after the top-level value")
	}
	return t, nil
}

type jsonTree struct {
	dec  *json.Decoder
	data []byte
}

// line is the line of the next token.
func (p *jsonTree) line() int {
	off := int(p.dec.InputOffset())
	for off < len(p.data) && strings.IndexByte(" \t\r\n,:", p.data[off]) >= 0 {
		off++
	}
	return 1 + bytes.Count(p.data[:min(off, len(p.data))], []byte{'\n'})
}

func (p *jsonTree) value(depth int) (*tnode, error) {
	if depth > 1000 {
		return nil, errors.New("nested more than 1000 deep")
	}
	line := p.line()
	tok, err := p.dec.Token()
	if err != nil {
		return nil, err
	}
	switch tok := tok.(type) {
	case json.Delim:
		switch tok {
		case '{':
			t := &tnode{kind: tMap, line: line}
			seen := map[string]bool{}
			for p.dec.More() {
				kline := p.line()
				kt, err := p.dec.Token()
				if err != nil {
					return nil, err
				}
				k := kt.(string)
				if seen[k] {
					return nil, fmt.Errorf("line %d: %q is given twice in one object", kline, k)
				}
				seen[k] = true
				v, err := p.value(depth + 1)
				if err != nil {
					return nil, err
				}
				t.keys = append(t.keys, k)
				t.vals = append(t.vals, v)
				t.klines = append(t.klines, kline)
			}
			_, err := p.dec.Token()
			return t, err
		case '[':
			t := &tnode{kind: tList, line: line}
			for p.dec.More() {
				v, err := p.value(depth + 1)
				if err != nil {
					return nil, err
				}
				t.items = append(t.items, v)
			}
			_, err := p.dec.Token()
			return t, err
		}
		return nil, fmt.Errorf("line %d: unexpected %v", line, tok)
	default:
		return &tnode{kind: tScalar, line: line, val: tok}, nil
	}
}
