package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"github.com/confgate/confgate/store"
)

// The same change set, in YAML and in JSON, parses to the same operations.
func TestParseChangeSetFiles(t *testing.T) {
	var got []*changeSet
	for _, f := range []string{"testdata/changesets/deploy.yaml", "testdata/changesets/deploy.json"} {
		cs, err := readChangeSet(f, nil)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		got = append(got, cs)
	}
	for i, cs := range got {
		if cs.RequestID != "deploy-2026-11-30-1" || len(cs.Ops) != 4 {
			t.Fatalf("file %d: %+v", i, cs)
		}
		o := cs.Ops
		if o[0].Key != "payments/db/timeout" || string(o[0].Value) != "30s" || o[0].ContentType != "text/plain" ||
			o[0].Cond != (store.Cond{Kind: store.CondVersion, Partition: 0, Offset: 42}) ||
			fmt.Sprint(o[0].Headers) != fmt.Sprint([]store.Header{{Key: "team", Value: []byte("payments")}, {Key: "ticket", Value: []byte("PAY-12")}}) {
			t.Errorf("file %d op 1: %+v", i, o[0])
		}
		// value_json: compact, in file order, HTML characters as they are,
		// typed application/json.
		if string(o[1].Value) != `{"daily":5000,"currencies":["EUR","USD"],"note":"<ok> & fine"}` || o[1].ContentType != "application/json" || o[1].Cond.Kind != store.CondNone {
			t.Errorf("file %d op 2: %q %q", i, o[1].Value, o[1].ContentType)
		}
		if !bytes.Equal(o[2].Value, []byte{0x00, 0xff, 0xfe}) || o[2].Cond.Kind != store.CondAbsent || o[2].ContentType != "" {
			t.Errorf("file %d op 3: %+v", i, o[2])
		}
		if !o[3].Delete || o[3].Key != "payments/old" || o[3].Cond.String() != "1:7" || o[3].Value != nil {
			t.Errorf("file %d op 4: %+v", i, o[3])
		}
	}
	// The protocol form.
	ops := got[0].protoOps()
	if ops[0].GetPrecondition().GetVersion().GetOffset() != 42 || !ops[2].GetPrecondition().GetAbsent() || !ops[3].GetDelete() || ops[1].GetPrecondition() != nil || len(ops[0].GetHeaders()) != 2 {
		t.Errorf("protoOps: %v", ops)
	}
}

func TestParseChangeSetSniffsStdin(t *testing.T) {
	for _, in := range []string{
		`{"operations": [{"put": "a", "value": "1"}]}`,
		"operations:\n  - put: a\n    value: \"1\"\n",
		"operations: [{put: a, value: \"1\"}]", // YAML flow style is not JSON
	} {
		cs, err := readChangeSet("-", strings.NewReader(in))
		if err != nil || len(cs.Ops) != 1 || string(cs.Ops[0].Value) != "1" || cs.Name != "standard input" {
			t.Errorf("stdin %q: %+v %v", in, cs, err)
		}
	}
	if _, err := readChangeSet("testdata/changesets/nope.yaml", nil); err == nil || !strings.Contains(err.Error(), "nope.yaml") {
		t.Errorf("missing file: %v", err)
	}
}

// Every refusal of the parser, with the file and operation it names.
func TestParseChangeSetErrors(t *testing.T) {
	long := strings.Repeat("x", store.MaxRequestIDBytes+1)
	for _, tc := range []struct {
		name, format, in string
		want             []string
	}{
		{"empty yaml", "yaml", "", []string{"f: empty"}},
		{"empty json", "json", "", []string{"not valid JSON"}},
		{"not a mapping", "yaml", "- put: a\n", []string{"the top level is a list"}},
		{"json array", "json", `[1]`, []string{"the top level is a list"}},
		{"unknown top-level field", "yaml", "operation:\n  - put: a\n", []string{`line 1: unknown top-level field "operation"`}},
		{"no operations", "yaml", "request_id: x\n", []string{"no operations"}},
		{"null operations", "yaml", "operations:\n", []string{"no operations"}},
		{"operations not a list", "yaml", "operations: {put: a}\n", []string{"operations is a mapping, want a list"}},
		{"empty operations", "json", `{"operations": []}`, []string{"operations is empty"}},
		{"bad request id", "yaml", "request_id: a b\noperations: [{put: a, value: x}]\n", []string{"request_id: request ID has byte 0x20"}},
		{"long request id", "yaml", "request_id: " + long + "\noperations: [{put: a, value: x}]\n", []string{"more than 128"}},
		{"request id not a string", "yaml", "request_id: 12\noperations: [{put: a, value: x}]\n", []string{"request_id is a number (12), want a string"}},
		{"op not a mapping", "yaml", "operations:\n  - a\n", []string{"f: operation 1 (line 2): is a string, want a mapping"}},
		{"unknown op field", "yaml", "operations:\n  - put: a\n    value: \"1\"\n  - put: b\n    valu: \"2\"\n",
			[]string{"f: operation 2 (line 4): unknown field \"valu\""}},
		{"unknown op field json", "json", "{\"operations\": [\n {\"put\": \"a\", \"value\": \"1\"},\n {\"put\": \"b\", \"valu\": \"2\"}]}",
			[]string{"f: operation 2 (line 3): unknown field \"valu\""}},
		{"neither put nor delete", "yaml", "operations: [{value: x}]\n", []string{"operation 1", "neither put nor delete"}},
		{"put and delete", "yaml", "operations: [{put: a, delete: a}]\n", []string{"both put and delete"}},
		{"key not a string", "yaml", "operations: [{put: 12, value: x}]\n", []string{"put is a number (12), want a string"}},
		{"bad key", "yaml", "operations: [{put: /a, value: x}]\n", []string{"operation 1", "leading slash"}},
		{"empty key", "yaml", "operations: [{delete: \"\"}]\n", []string{"key is empty"}},
		{"no value", "yaml", "operations: [{put: a}]\n", []string{`put of "a" has no value`}},
		{"two values", "yaml", "operations: [{put: a, value: x, value_json: 1}]\n", []string{`put of "a" has value and value_json`}},
		{"value not a string", "yaml", "operations: [{put: a, value: 30}]\n", []string{"value is a number (30), want a string (quote it"}},
		{"value a bool", "yaml", "operations: [{put: a, value: true}]\n", []string{"value is a boolean (true)"}},
		{"value null", "json", `{"operations": [{"put": "a", "value": null}]}`, []string{"value is null"}},
		{"bad base64", "yaml", "operations: [{put: a, value_base64: \"!!\"}]\n", []string{"value_base64: not standard base64"}},
		{"value_json NaN", "yaml", "operations: [{put: a, value_json: .nan}]\n", []string{"value_json: NaN has no JSON form"}},
		{"value_json tag", "yaml", "operations: [{put: a, value_json: !!binary AAAA}]\n", []string{"tagged !!binary"}},
		{"delete with value", "yaml", "operations: [{delete: a, value: x, headers: {a: b}}]\n", []string{`delete of "a" has value, headers`}},
		{"delete with content type", "yaml", "operations: [{delete: a, content_type: text/plain}]\n", []string{"has content_type"}},
		{"headers not a mapping", "yaml", "operations: [{put: a, value: x, headers: [a]}]\n", []string{"headers is a list"}},
		{"header not a string", "yaml", "operations: [{put: a, value: x, headers: {n: 1}}]\n", []string{`header "n" is a number (1)`}},
		{"reserved header", "yaml", "operations: [{put: a, value: x, headers: {Confgate-Writer: me}}]\n", []string{"reserved"}},
		{"content-type header", "yaml", "operations: [{put: a, value: x, headers: {content-type: a}}]\n", []string{"give the content type as content_type"}},
		{"both preconditions", "yaml", "operations: [{put: a, value: x, if_absent: true, if_version: \"0:1\"}]\n", []string{"both if_version and if_absent"}},
		{"bad version", "yaml", "operations: [{put: a, value: x, if_version: \"0-1\"}]\n", []string{"if_version: version \"0-1\": want PARTITION:OFFSET"}},
		{"absent as version", "yaml", "operations: [{put: a, value: x, if_version: absent}]\n", []string{"write if_absent: true"}},
		{"version not quoted", "yaml", "operations: [{put: a, value: x, if_version: 42}]\n", []string{"if_version is a number (42), want a string (quote it"}},
		{"if_absent false", "yaml", "operations: [{put: a, value: x, if_absent: false}]\n", []string{"if_absent: false: leave it out"}},
		{"if_absent not a bool", "yaml", "operations: [{put: a, value: x, if_absent: \"yes\"}]\n", []string{"if_absent is a string, want true"}},
		{"key twice", "yaml", "operations:\n  - put: a\n    value: x\n  - delete: a\n", []string{"f: operation 2 (line 4): key \"a\" is already in operation 1"}},
		{"field twice yaml", "yaml", "operations:\n  - put: a\n    put: b\n", []string{`line 3: "put" is given twice`}},
		{"field twice json", "json", `{"operations": [{"put": "a", "put": "b"}]}`, []string{`"put" is given twice`}},
		{"two yaml documents", "yaml", "operations: [{put: a, value: x}]\n---\noperations: []\n", []string{"a second document"}},
		{"trailing json", "json", `{"operations": [{"put": "a", "value": "x"}]} {}`, []string{"after the top-level value"}},
		{"bad yaml", "yaml", "operations: [\n", []string{"f: not valid YAML"}},
		{"merge keys", "yaml", "x: &x {value: v}\noperations: [{put: a, <<: *x}]\n", []string{"merge keys"}},
		{"value too large", "yaml", "operations: [{put: a, value: " + strings.Repeat("v", store.MaxValueBytes+1) + "}]\n", []string{`put of "a"`, "more than the limit"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseChangeSet("f", tc.format, []byte(tc.in))
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if !strings.HasPrefix(err.Error(), "f:") {
				t.Errorf("error %q does not start with the file name", err)
			}
		})
	}
}

func TestParseChangeSetLimits(t *testing.T) {
	var b strings.Builder
	b.WriteString("operations:\n")
	for i := range store.MaxSetOps {
		fmt.Fprintf(&b, "  - {put: k/%d, value: v}\n", i)
	}
	if cs, err := parseChangeSet("f", "yaml", []byte(b.String())); err != nil || len(cs.Ops) != store.MaxSetOps {
		t.Fatalf("%d operations: %v", store.MaxSetOps, err)
	}
	b.WriteString("  - {put: one/more, value: v}\n")
	if _, err := parseChangeSet("f", "yaml", []byte(b.String())); err == nil || !strings.Contains(err.Error(), "more than the limit 1000") {
		t.Errorf("%d operations: %v", store.MaxSetOps+1, err)
	}
	// The values of all operations together are bounded too.
	b.Reset()
	b.WriteString("operations:\n")
	for i := range store.MaxSetBytes/store.MaxValueBytes + 1 {
		fmt.Fprintf(&b, "  - {put: k/%d, value: %s}\n", i, strings.Repeat("v", store.MaxValueBytes))
	}
	if _, err := parseChangeSet("f", "yaml", []byte(b.String())); err == nil || !strings.Contains(err.Error(), "more than a change set's limit") {
		t.Errorf("over MaxSetBytes: %v", err)
	}
	// YAML aliases cannot make a small file huge.
	bomb := "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n" +
		"d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n" +
		"g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\noperations: [{put: a, value_json: *g}]\n"
	if _, err := parseChangeSet("f", "yaml", []byte(bomb)); err == nil || !strings.Contains(err.Error(), "too many nodes") {
		t.Errorf("alias bomb: %v", err)
	}
}

func TestRollbackOps(t *testing.T) {
	v := func(p int32, o int64) *confgatev1.Version { return &confgatev1.Version{Partition: p, Offset: o} }
	hs := []*confgatev1.Header{
		{Key: "content-type", Value: []byte("text/plain")},
		{Key: "team", Value: []byte("payments")},
		{Key: "confgate-writer", Value: []byte("token:ci")},
		{Key: "Confgate-Gateway", Value: []byte("gw-1")},
	}
	changes := []*confgatev1.KeyDiff{
		// changed: put back the old value and headers, if still at the new version
		{Key: "a", Before: &confgatev1.Entry{Key: "a", Value: []byte("old"), Version: v(0, 1), ContentType: "text/plain", Headers: hs},
			After: &confgatev1.Entry{Key: "a", Value: []byte("new"), Version: v(0, 5)}},
		// removed: recreate it, if still absent
		{Key: "b", Before: &confgatev1.Entry{Key: "b", Value: nil, Version: v(1, 2)}},
		// added: delete it, if still at its version
		{Key: "c", After: &confgatev1.Entry{Key: "c", Value: []byte("x"), Version: v(1, 9)}},
	}
	ops := rollbackOps(changes)
	if len(ops) != 3 {
		t.Fatalf("%d ops", len(ops))
	}
	a, b, c := ops[0], ops[1], ops[2]
	if a.Delete || string(a.Value) != "old" || a.ContentType != "text/plain" || a.Cond.String() != "0:5" ||
		fmt.Sprint(a.Headers) != fmt.Sprint([]store.Header{{Key: "team", Value: []byte("payments")}}) {
		t.Errorf("a: %+v", a)
	}
	if b.Delete || b.Value == nil || len(b.Value) != 0 || b.Cond.Kind != store.CondAbsent {
		t.Errorf("b: %+v", b)
	}
	if !c.Delete || c.Cond.String() != "1:9" || c.Index != 3 {
		t.Errorf("c: %+v", c)
	}

	lines := []string{
		planLine(planOp{op: a, before: changes[0].After, holds: true}),
		planLine(planOp{op: b, holds: true}),
		planLine(planOp{op: c, before: changes[2].After, holds: true}),
	}
	want := []string{
		"~ a: new → old  (was 0:5)  [if_version 0:5: holds]",
		"+ b =   [if_absent: holds]",
		"- c  (was 1:9 = x)  [if_version 1:9: holds]",
	}
	if fmt.Sprint(lines) != fmt.Sprint(want) {
		t.Errorf("plan lines:\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	for i, want := range []string{"~ a: old → new  (0:1 → 0:5)", "- b  (was 1:2 = )", "+ c = x  (1:9)"} {
		if got := diffLine(changes[i]); got != want {
			t.Errorf("diffLine %d = %q, want %q", i, got, want)
		}
	}
}

func TestPlanLineFailingPrecondition(t *testing.T) {
	op := changeOp{Key: "k", Value: []byte("two\nlines"), Cond: store.Cond{Kind: store.CondAbsent}}
	cur := &confgatev1.Entry{Key: "k", Value: []byte{0xff}, Version: &confgatev1.Version{Partition: 2, Offset: 7}}
	po := planOp{op: op, before: cur, holds: condHolds(op.Cond, cur)}
	if got, want := planLine(po), `~ k: (base64) /w== → "two\nlines"  (was 2:7)  [if_absent: fails: the key is at 2:7]`; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	op = changeOp{Key: "k", Delete: true, Cond: store.Cond{Kind: store.CondVersion, Partition: 2, Offset: 7}}
	po = planOp{op: op, holds: condHolds(op.Cond, nil)}
	if got, want := planLine(po), `- k  (absent already)  [if_version 2:7: fails: the key is absent]`; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if !condHolds(store.Cond{Kind: store.CondVersion, Partition: 2, Offset: 7}, cur) || condHolds(store.Cond{Kind: store.CondVersion, Partition: 2, Offset: 8}, cur) || !condHolds(store.Cond{}, nil) {
		t.Error("condHolds")
	}
}
