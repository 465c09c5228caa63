package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/confgate/confgate/internal/schema"
)

// validate checks puts against the schemas as they would be after the
// change set: the gateway's, overlaid with the file's schema puts and
// deletes.
func TestValidateChangeSetOffline(t *testing.T) {
	set := &schema.Set{}
	for k, doc := range map[string]string{
		schema.KeyPrefix + "payments/limit": `{"type": "int", "min": 1, "max": 100}`,
		schema.KeyPrefix + "payments/db/*":  `{"type": "duration"}`,
		schema.KeyPrefix + "search/*":       `{"type": "bool"}`,
	} {
		sc, err := schema.Compile([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		set.Put(k, sc)
	}
	cs, err := parseChangeSet("f", "yaml", []byte(`operations:
  - put: payments/limit
    value: "500"
  - put: payments/db/timeout
    value: "30s"
  - put: payments/db/pool
    value: "many"
  - put: _confgate/schemas/checkout/*
    value_json: {type: enum, values: [on, off]}
  - put: checkout/flag
    value: maybe
  - delete: _confgate/schemas/search/*
  - put: search/x
    value: "not a bool, but no longer governed"
  - put: _confgate/schemas/bad
    value_json: {type: nope}
  - put: _confgate/other
    value: x
  - put: free/key
    value: anything
`))
	if err != nil {
		t.Fatal(err)
	}
	v := validateChangeSet(cs, set)
	var got []string
	for _, p := range v.problems {
		got = append(got, p.text())
	}
	want := []string{
		`operation 8: _confgate/schemas/bad: rule schema: schema: field "type": unknown type`,
		`operation 9: _confgate/other: rule reserved`,
		`operation 1: payments/limit: rule max`,
		`operation 3: payments/db/pool: rule type`,
		`operation 5: checkout/flag: rule enum`,
	}
	if len(got) != len(want) {
		t.Fatalf("problems:\n%s", strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("problem %d: %s\nwant prefix %s", i, got[i], want[i])
		}
	}
	if !strings.HasSuffix(got[2], "(schema _confgate/schemas/payments/limit)") {
		t.Errorf("problem names no schema: %s", got[2])
	}
	// Checked: limit, timeout, pool, checkout/flag; unchecked: search/x, free/key.
	if v.checked != 4 || v.unchecked != 2 || v.schemas != 3 {
		t.Errorf("checked %d unchecked %d schemas %d", v.checked, v.unchecked, v.schemas)
	}
	// The gateway's set is left as it was.
	if _, _, ok := set.For("search/x"); !ok {
		t.Error("validateChangeSet changed the gateway's set")
	}
}

// snapshotState is the entries under a prefix as "key=value ct headers"
// lines, without versions or the gateway's confgate-... headers.
func snapshotState(t *testing.T, c cli, prefix, minCursor string) string {
	t.Helper()
	args := []string{"snapshot", "-o", "json", prefix}
	if minCursor != "" {
		args = append(args, "--min-cursor", minCursor)
	}
	lines := jsonLines(t, c.ok(args...))
	var out []string
	for _, e := range lines[:len(lines)-1] {
		var hs []string
		if h, ok := e["headers"].([]any); ok {
			for _, h := range h {
				m := h.(map[string]any)
				if !strings.HasPrefix(m["key"].(string), "confgate-") {
					hs = append(hs, m["key"].(string)+":"+m["value"].(string))
				}
			}
		}
		out = append(out, fmt.Sprintf("%s=%s %s %v", e["key"], e["value"], e["content_type"], hs))
	}
	return strings.Join(out, "\n")
}

func TestDiffBetweenCursors(t *testing.T) {
	t.Parallel()
	_, c := startDev(t, "--no-seed")
	putCursor(t, c, "d/a", "1")
	c0 := putCursor(t, c, "d/b", "1", "--wait")
	putCursor(t, c, "d/a", "2")
	c.ok("delete", "d/b")
	putCursor(t, c, "other/x", "1")
	c1 := putCursor(t, c, "d/c", "3", "--wait")

	out := c.ok("diff", "d/", "--from", c0, "--to", c1)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "~ d/a: 1 → 2  (") || !strings.HasPrefix(lines[1], "- d/b  (was ") ||
		!strings.HasPrefix(lines[2], "+ d/c = 3  (") || !strings.HasPrefix(lines[3], `# 3 changes under "d/" from `) {
		t.Fatalf("diff:\n%s", out)
	}
	// JSON, to the current cursor.
	js := jsonLines(t, c.ok("diff", "-o", "json", "d/", "--from", c0))
	if len(js) != 4 || js[0]["op"] != "changed" || js[1]["op"] != "removed" || js[1]["after"] != nil || js[2]["op"] != "added" || js[2]["before"] != nil ||
		js[0]["before"].(map[string]any)["value"] != "1" || js[0]["after"].(map[string]any)["value"] != "2" || js[3]["changes"] != float64(3) {
		t.Errorf("diff -o json: %v", js)
	}
	// Everything: other/x too; nothing under another prefix.
	if out := c.ok("diff", "", "--from", c0, "--to", c1); !strings.Contains(out, "+ other/x = 1") || !strings.Contains(out, "# 4 changes") {
		t.Errorf("diff of everything:\n%s", out)
	}
	if out := c.ok("diff", "none/", "--from", c0, "--to", c1); !strings.HasPrefix(out, `# 0 changes under "none/"`) {
		t.Errorf("diff of nothing:\n%s", out)
	}
	// --to older than --from is refused by the gateway.
	if r := c.run("diff", "d/", "--from", c1, "--to", c0); r.code != exitFailure {
		t.Errorf("diff backwards: %d %q %q", r.code, r.stdout, r.stderr)
	}
}

func TestRollbackEndToEnd(t *testing.T) {
	_, c := startDev(t, "--no-seed")
	putCursor(t, c, "rb/a", "1", "--header", "team=x")
	c0 := putCursor(t, c, "rb/b", `{"b":1}`, "--content-type", "application/json", "--header", "owner=me", "--wait")
	putCursor(t, c, "rb/keep", "same")
	c0 = putCursor(t, c, "rb/keep", "same", "--wait") // written again, same content: nothing to restore
	original := snapshotState(t, c, "rb/", c0)

	putCursor(t, c, "rb/a", "2")
	c.ok("delete", "rb/b")
	putCursor(t, c, "rb/c", "3")
	putCursor(t, c, "rb/keep", "same", "--wait")

	// A dry run shows the change set and writes nothing.
	out := c.ok("rollback", "rb/", "--to", c0, "--dry-run")
	for _, want := range []string{"~ rb/a: 2 → 1  (was ", `+ rb/b = {"b":1}  [if_absent: holds]`, "- rb/c  (was ", "# dry run: 3 operations, nothing written"} {
		if !strings.Contains(out, want) {
			t.Errorf("rollback --dry-run lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "rb/keep") {
		t.Errorf("rollback restores a key with the same content:\n%s", out)
	}
	if got := c.ok("get", "rb/a"); got != "2\n" {
		t.Fatalf("the dry run wrote: rb/a = %q", got)
	}

	// A change between the rollback's diff and its Apply fails its
	// preconditions: nothing is written.
	rollbackHook = func() { putCursor(t, c, "rb/c", "changed meanwhile", "--wait") }
	r := c.run("rollback", "rb/", "--to", c0)
	rollbackHook = nil
	if r.code != exitFailure || !strings.Contains(r.stderr, "the prefix changed since the diff; run rollback again (rb/c is at ") {
		t.Fatalf("racing rollback: %d %q %q", r.code, r.stdout, r.stderr)
	}
	if got := c.ok("get", "rb/a"); got != "2\n" {
		t.Fatalf("a failed rollback wrote: rb/a = %q", got)
	}

	// Rolled back: the state equals the original (versions aside).
	res := jsonLines(t, c.ok("rollback", "-o", "json", "rb/", "--to", c0))
	if len(res) != 2 || len(res[0]["operations"].([]any)) != 3 || len(res[1]["operations"].([]any)) != 3 {
		t.Fatalf("rollback -o json: %v", res)
	}
	if got := snapshotState(t, c, "rb/", res[1]["cursor"].(string)); got != original {
		t.Errorf("after rollback:\n%s\nwant\n%s", got, original)
	}
	// Nothing left to do.
	if out := c.ok("rollback", "rb/", "--to", c0); !strings.HasPrefix(out, `nothing to roll back: no key under "rb/" changed since that cursor`) {
		t.Errorf("second rollback: %q", out)
	}
}

func TestValidateAgainstGatewaySchemas(t *testing.T) {
	t.Parallel()
	_, c := startDev(t, "--no-seed")
	putCursor(t, c, schema.KeyPrefix+"v/*", `{"type": "int", "min": 1, "max": 10}`, "--content-type", "application/json", "--wait")

	bad := changeFile(t, "bad.yaml", "operations:\n  - put: v/a\n    value: \"5\"\n  - put: v/b\n    value: \"50\"\n  - put: free\n    value: x\n")
	r := c.run("validate", bad)
	if r.code != exitFailure || !strings.HasPrefix(r.stdout, "operation 2: v/b: rule max: ") || !strings.Contains(r.stdout, "(schema _confgate/schemas/v/*)") ||
		!strings.Contains(r.stdout, "# 3 operations: 2 puts checked against 1 schema, 1 governed by none; 1 violation\n") ||
		!strings.Contains(r.stderr, "bad.yaml: 1 violation") {
		t.Errorf("validate: %d %q %q", r.code, r.stdout, r.stderr)
	}
	js := jsonLines(t, c.run("validate", "-o", "json", bad).stdout)
	if len(js) != 2 || js[0]["key"] != "v/b" || js[0]["rule"] != "max" || js[0]["operation"] != float64(2) || js[1]["valid"] != false {
		t.Errorf("validate -o json: %v", js)
	}
	// The gateway refuses it the same way.
	if r := c.run("apply", bad); r.code != exitFailure || !strings.Contains(r.stderr, "v/b") {
		t.Errorf("apply of a violating change set: %d %q", r.code, r.stderr)
	}
	// A file that widens the schema and writes the value together is valid.
	good := changeFile(t, "good.yaml", "operations:\n  - put: "+schema.KeyPrefix+"v/*\n    value_json: {type: int, min: 1, max: 100}\n  - put: v/b\n    value: \"50\"\n")
	if out := c.ok("validate", good); !strings.Contains(out, "1 put checked against 1 schema, 0 governed by none; 0 violations") {
		t.Errorf("validate good: %q", out)
	}
	c.ok("apply", good)
}

// A gateway whose history does not reach back to --from says how far
// back it does.
func TestDiffOutOfRange(t *testing.T) {
	t.Parallel()
	_, c := startDev(t, "--no-seed", "--history-batches", "2")
	c0 := putCursor(t, c, "o/a", "0", "--wait")
	for i := range 6 {
		putCursor(t, c, "o/a", fmt.Sprint(i+1), "--wait")
	}
	for _, args := range [][]string{{"diff", "o/", "--from", c0}, {"rollback", "o/", "--to", c0}} {
		r := c.run(args...)
		if r.code != exitFailure || !strings.HasPrefix(r.stderr, "confgate: cannot diff from that cursor: this gateway's change history does not reach back") ||
			!strings.Contains(r.stderr, "oldest cursor") || r.stdout != "" {
			t.Errorf("%v: %d %q %q", args, r.code, r.stdout, r.stderr)
		}
	}
}
