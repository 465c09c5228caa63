package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Flag mistakes of the write verbs are found before any gateway is called.
func TestWriteFlagsUsage(t *testing.T) {
	t.Parallel()
	c := cli{t: t, addr: closedPort(t)}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"put", "k", "v", "--if-absent", "--if-version", "0:1"}, "--if-absent and --if-version are exclusive"},
		{[]string{"delete", "k", "--if-absent", "--if-version", "0:1"}, "--if-absent and --if-version are exclusive"},
		{[]string{"put", "k", "v", "--if-version", "0"}, "--if-version: version \"0\": want PARTITION:OFFSET"},
		{[]string{"put", "k", "v", "--if-version", "absent"}, "use --if-absent"},
		{[]string{"delete", "k", "--if-version", "-1:3"}, "--if-version: version"},
		{[]string{"put", "k", "v", "--request-id", ""}, "--request-id is empty"},
		{[]string{"put", "k", "v", "--request-id", "a b"}, "--request-id: request ID has byte 0x20"},
		{[]string{"delete", "k", "--request-id", strings.Repeat("x", 129)}, "more than 128"},
		{[]string{"apply", "testdata/changesets/deploy.yaml", "--request-id", ""}, "--request-id is empty"},
		{[]string{"apply", "testdata/changesets/unknown_field.yaml"}, `testdata/changesets/unknown_field.yaml: operation 2 (line 4): unknown field "valu"`},
		{[]string{"apply"}, "usage: confgate apply FILE"},
		{[]string{"diff", "p/"}, "--from is required"},
		{[]string{"diff", "p/", "--from", "nope!"}, "--from"},
		{[]string{"diff", "/p", "--from", "x"}, "PREFIX"},
		{[]string{"rollback", "p/"}, "--to is required"},
		{[]string{"rollback", "p/", "--to", "nope!"}, "--to"},
		{[]string{"rollback", "--to", "x"}, "usage: confgate rollback PREFIX --to CURSOR"},
	} {
		r := c.run(tc.args...)
		if r.code != exitFailure || !strings.Contains(r.stderr, tc.want) || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("%v: code %d stderr %q, want %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
}

func TestNewRequestID(t *testing.T) {
	a, b := newRequestID(), newRequestID()
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(a) || a == b {
		t.Errorf("request IDs %q %q", a, b)
	}
}

// A FAILED_PRECONDITION answer's detail says where each key is.
func TestPreconditionFailureMessage(t *testing.T) {
	st, err := status.New(codes.FailedPrecondition, "precondition failed").WithDetails(&confgatev1.PreconditionFailure{Keys: []*confgatev1.KeyVersion{
		{Key: "payments/limit", Version: &confgatev1.Version{Partition: 0, Offset: 42}},
		{Key: "payments/new"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	var f failedKeys
	f.note(status.Error(codes.Unavailable, "x"))
	if f.pf != nil {
		t.Fatal("noted an UNAVAILABLE error")
	}
	f.note(st.Err())
	out := &syncBuffer{}
	g := &globals{env: &Env{Stdout: out}, output: "text"}
	werr := g.writeError(&rpcError{codes.FailedPrecondition, "precondition failed"}, f, "")
	if got, want := werr.Error(), "precondition failed: payments/limit is at 0:42, payments/new is absent"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if errCode(werr) != codes.FailedPrecondition || out.String() != "" {
		t.Errorf("code %v, stdout %q", errCode(werr), out)
	}
	if got, want := f.err("the prefix changed since the diff; run rollback again").Error(),
		"the prefix changed since the diff; run rollback again (payments/limit is at 0:42, payments/new is absent)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	// A key required absent but reported without a version was decided in
	// a concurrent write's transaction.
	pending := failedKeys{pf: f.pf}
	pending.expectAbsent("payments/new", &confgatev1.Precondition{Condition: &confgatev1.Precondition_Absent{Absent: true}})
	if got, want := pending.err("").Error(), "precondition failed: payments/limit is at 0:42, payments/new is being written by a concurrent write (no version yet)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if js := pending.jsonOut(); !js[1].Pending || js[0].Pending {
		t.Errorf("pending in JSON: %+v", js)
	}
	g.output = "json"
	g.writeError(&rpcError{codes.FailedPrecondition, "x"}, f, "")
	if got, want := out.String(), `{"precondition_failed":[{"key":"payments/limit","version":{"partition":0,"offset":42}},{"key":"payments/new","version":null}]}`+"\n"; got != want {
		t.Errorf("JSON: %s, want %s", got, want)
	}
	// Another error, or no detail, is passed on as it is.
	other := &rpcError{codes.InvalidArgument, "bad"}
	if g.writeError(other, f, "") != other || g.writeError(&rpcError{codes.FailedPrecondition, "y"}, failedKeys{}, "").Error() != "y" {
		t.Error("writeError changed an error it has nothing to add to")
	}
}

// vtext is a JSON version {partition, offset} as PARTITION:OFFSET.
func vtext(t *testing.T, v any) string {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("not a version: %v", v)
	}
	return fmt.Sprintf("%v:%v", m["partition"], m["offset"])
}

// writeVersion runs a write verb with -o json and returns the version it
// printed.
func writeVersion(t *testing.T, c cli, args ...string) string {
	t.Helper()
	out := jsonLines(t, c.ok(append(args, "-o", "json")...))
	if len(out) != 1 {
		t.Fatalf("%v printed %d lines", args, len(out))
	}
	return vtext(t, out[0]["version"])
}

// changeFile writes a change-set file and returns its path.
func changeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Of two conditional puts racing on a key, exactly one wins; the other
// writes nothing and says where the key is.
func TestConditionalPutRace(t *testing.T) {
	t.Parallel()
	_, c := startDev(t, "--no-seed")
	const key = "race/limit"
	v0 := writeVersion(t, c, "put", key, "v0")

	for _, cond := range [][]string{{"--if-version", v0}, {"--if-absent"}} {
		k := key
		if cond[0] == "--if-absent" {
			k = key + "-new"
		}
		var (
			wg      sync.WaitGroup
			results [4]result
		)
		for i := range results {
			wg.Go(func() { results[i] = c.run(append([]string{"put", k, fmt.Sprintf("writer-%d", i)}, cond...)...) })
		}
		wg.Wait()
		var win string
		wins := 0
		for _, r := range results {
			if r.code == 0 {
				wins++
				m := writeLine.FindStringSubmatch(r.stdout)
				if m == nil {
					t.Fatalf("winner printed %q", r.stdout)
				}
				win = m[1] + ":" + m[2]
			}
		}
		if wins != 1 {
			t.Fatalf("%v: %d winners: %+v", cond, wins, results)
		}
		for _, r := range results {
			if r.code == 0 {
				continue
			}
			// The winner's version; or none yet when the gateway decided
			// the loser in the winner's transaction.
			pending := "confgate: precondition failed: " + k + " is being written by a concurrent write (no version yet)\n"
			if cond[0] == "--if-version" {
				pending = "confgate: precondition failed: " + k + " is absent (or being written by a concurrent write, no version yet)\n"
			}
			if r.code != exitFailure || (r.stderr != "confgate: precondition failed: "+k+" is at "+win+"\n" && r.stderr != pending) {
				t.Errorf("%v loser: code %d stderr %q, winner at %s", cond, r.code, r.stderr, win)
			}
		}
		// A late writer learns the winner's version, in text and JSON.
		r := c.run(append([]string{"put", k, "late"}, cond...)...)
		if r.code != exitFailure || r.stderr != "confgate: precondition failed: "+k+" is at "+win+"\n" || r.stdout != "" {
			t.Errorf("late writer: code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
		}
		r = c.run(append([]string{"put", "-o", "json", k, "late"}, cond...)...)
		pf := jsonLines(t, r.stdout)
		if r.code != exitFailure || len(pf) != 1 || fmt.Sprint(pf[0]["precondition_failed"]) != fmt.Sprintf("[map[key:%s version:%v]]", k, jsonVersion(win)) {
			t.Errorf("late writer -o json: code %d stdout %q", r.code, r.stdout)
		}
		if got := c.ok("get", k); !strings.HasPrefix(got, "writer-") {
			t.Errorf("%s = %q after the race", k, got)
		}
	}

	// Compare-and-set: the current version wins; a delete that requires
	// the key absent fails; one at the current version deletes it; then
	// --if-absent succeeds.
	v1 := vtext(t, jsonLines(t, c.ok("get", "-o", "json", key))[0]["version"])
	v2 := writeVersion(t, c, "put", key, "next", "--if-version", v1)
	r := c.run("delete", key, "--if-absent")
	if r.code != exitFailure || !strings.Contains(r.stderr, "precondition failed: "+key+" is at "+v2) {
		t.Errorf("delete --if-absent of a live key: %d %q", r.code, r.stderr)
	}
	writeVersion(t, c, "delete", key, "--if-version", v2)
	r = c.run("delete", key, "--if-version", v2)
	if r.code != exitFailure || r.stderr != "confgate: precondition failed: "+key+" is absent (or being written by a concurrent write, no version yet)\n" {
		t.Errorf("delete --if-version of a deleted key: %d %q", r.code, r.stderr)
	}
	writeVersion(t, c, "put", key, "again", "--if-absent")
}

// jsonVersion is PARTITION:OFFSET as the JSON output's version prints
// through fmt.
func jsonVersion(po string) string {
	p, o, _ := strings.Cut(po, ":")
	return fmt.Sprintf("map[offset:%s partition:%s]", o, p)
}

// A write whose request ID already landed writes nothing and answers the
// original version, marked duplicate.
func TestRequestIDDuplicate(t *testing.T) {
	t.Parallel()
	_, c := startDev(t, "--no-seed")
	first := jsonLines(t, c.ok("put", "-o", "json", "dup/k", "one", "--request-id", "req-1"))[0]
	if first["request_id"] != "req-1" || first["duplicate"] != nil {
		t.Fatalf("first put: %v", first)
	}
	r := c.run("put", "-o", "json", "dup/k", "one", "--request-id", "req-1")
	again := jsonLines(t, r.stdout)
	if r.code != 0 || len(again) != 1 || again[0]["duplicate"] != true || fmt.Sprint(again[0]["version"]) != fmt.Sprint(first["version"]) ||
		!strings.Contains(r.stderr, "request ID req-1 had already landed") {
		t.Fatalf("retried put: %d %q %q", r.code, r.stdout, r.stderr)
	}
	r = c.run("put", "dup/k", "one", "--request-id", "req-1")
	if r.code != 0 || !strings.HasSuffix(r.stdout, " duplicate\n") || !strings.HasPrefix(r.stdout, "partition=") {
		t.Errorf("retried put, text: %d %q", r.code, r.stdout)
	}
	// Written once: the entry is the first write.
	g := jsonLines(t, c.ok("get", "-o", "json", "dup/k", "--min-cursor", first["cursor"].(string)))[0]
	if fmt.Sprint(g["version"]) != fmt.Sprint(first["version"]) {
		t.Errorf("version after retries %v, want %v", g["version"], first["version"])
	}
	// Generated IDs differ: the same put again is a new write.
	a := jsonLines(t, c.ok("put", "-o", "json", "dup/k", "one"))[0]
	if a["duplicate"] != nil || fmt.Sprint(a["version"]) == fmt.Sprint(first["version"]) || len(a["request_id"].(string)) != 32 {
		t.Errorf("put without --request-id: %v", a)
	}
	// Deletes too.
	d1 := writeVersion(t, c, "delete", "dup/k", "--request-id", "req-2")
	d2 := jsonLines(t, c.ok("delete", "-o", "json", "dup/k", "--request-id", "req-2"))[0]
	if d2["duplicate"] != true || vtext(t, d2["version"]) != d1 {
		t.Errorf("retried delete: %v, first at %s", d2, d1)
	}
	// An ID reused for another write is refused.
	r = c.run("put", "dup/other", "x", "--request-id", "req-1")
	if r.code != exitFailure || r.stdout != "" {
		t.Errorf("request ID reused for another key: %d %q %q", r.code, r.stdout, r.stderr)
	}
}

func TestApplyAndDryRun(t *testing.T) {
	t.Parallel()
	_, c := startDev(t, "--no-seed")
	vx := writeVersion(t, c, "put", "app/x", "1")
	writeVersion(t, c, "put", "app/z", "gone soon", "--wait")
	f := changeFile(t, "set.yaml", `request_id: apply-1
operations:
  - put: app/x
    value: "2"
    if_version: "`+vx+`"
  - put: app/y
    value_json: {n: 1}
    headers: {team: app}
    if_absent: true
  - delete: app/z
  - delete: app/never
`)
	// A dry run shows the changes and the gateway's verdict, and writes
	// nothing.
	out := c.ok("apply", f, "--dry-run")
	for _, want := range []string{
		"~ app/x: 1 → 2  (was " + vx + ")  [if_version " + vx + ": holds]\n",
		`+ app/y = {"n":1}  [if_absent: holds]` + "\n",
		"- app/z  (was ",
		"- app/never  (absent already)\n",
		"would apply 4 operations (dry run: nothing written)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run lacks %q:\n%s", want, out)
		}
	}
	dry := jsonLines(t, c.ok("apply", f, "--dry-run", "-o", "json"))
	if len(dry) != 1 || dry[0]["valid"] != true || len(dry[0]["operations"].([]any)) != 4 || dry[0]["request_id"] != "apply-1" {
		t.Errorf("dry run -o json: %v", dry)
	}
	if got := c.ok("get", "app/x"); got != "1\n" {
		t.Fatalf("the dry run wrote: app/x = %q", got)
	}

	// Applied: every operation's version and one cursor.
	res := jsonLines(t, c.ok("apply", f, "-o", "json"))
	if len(res) != 1 || len(res[0]["operations"].([]any)) != 4 || res[0]["request_id"] != "apply-1" || res[0]["duplicate"] != nil {
		t.Fatalf("apply -o json: %v", res)
	}
	cur := res[0]["cursor"].(string)
	y := jsonLines(t, c.ok("get", "-o", "json", "app/y", "--min-cursor", cur))[0]
	if y["value"] != `{"n":1}` || y["content_type"] != "application/json" {
		t.Errorf("app/y: %v", y)
	}
	if got := c.ok("get", "app/x", "--min-cursor", cur); got != "2\n" {
		t.Errorf("app/x = %q", got)
	}
	if r := c.run("get", "app/z", "--min-cursor", cur); r.code != exitNotFound {
		t.Errorf("app/z after its delete: %d %q", r.code, r.stdout)
	}

	// The same change set again (its request_id): nothing written.
	r := c.run("apply", f)
	if r.code != 0 || !strings.Contains(r.stdout, "applied 4 operations: cursor=") || !strings.HasSuffix(r.stdout, "request_id=apply-1 duplicate\n") {
		t.Errorf("apply again: %d %q %q", r.code, r.stdout, r.stderr)
	}
	// Under a new request ID its preconditions fail, all or nothing.
	r = c.run("apply", f, "--request-id", "apply-2")
	if r.code != exitFailure || !strings.Contains(r.stderr, "precondition failed: ") || !strings.Contains(r.stderr, "app/x is at ") || r.stdout != "" {
		t.Errorf("stale apply: %d %q %q", r.code, r.stdout, r.stderr)
	}
	r = c.run("apply", f, "--request-id", "apply-3", "--dry-run")
	if r.code != exitFailure || !strings.Contains(r.stdout, "[if_version "+vx+": fails: the key is at ") ||
		!strings.Contains(r.stderr, "the gateway would refuse the change set: precondition failed: ") {
		t.Errorf("stale dry run: %d %q %q", r.code, r.stdout, r.stderr)
	}
	if got := c.ok("get", "app/x"); got != "2\n" {
		t.Errorf("a failed apply wrote: app/x = %q", got)
	}

	// From standard input, JSON.
	r = c.runIn([]byte(`{"operations": [{"put": "app/stdin", "value": "s"}]}`), "apply", "-", "--wait")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "put    app/stdin  ") {
		t.Errorf("apply -: %d %q %q", r.code, r.stdout, r.stderr)
	}
}

// unavailableGateway answers every write UNAVAILABLE (a gateway draining,
// or one that lost Kafka mid-write) and records the request IDs it got.
type unavailableGateway struct {
	confgatev1.UnimplementedConfigServiceServer
	mu  sync.Mutex
	ids []string
}

func (u *unavailableGateway) note(id string) error {
	u.mu.Lock()
	u.ids = append(u.ids, id)
	u.mu.Unlock()
	return status.Error(codes.Unavailable, "draining")
}

func (u *unavailableGateway) Put(_ context.Context, r *confgatev1.PutRequest) (*confgatev1.PutResponse, error) {
	return nil, u.note(r.GetRequestId())
}

func (u *unavailableGateway) Delete(_ context.Context, r *confgatev1.DeleteRequest) (*confgatev1.DeleteResponse, error) {
	return nil, u.note(r.GetRequestId())
}

func (u *unavailableGateway) Apply(_ context.Context, r *confgatev1.ApplyRequest) (*confgatev1.ApplyResponse, error) {
	return nil, u.note(r.GetRequestId())
}

// A write that fails UNAVAILABLE is retried on the next address with the
// same request ID: safe, since a copy that landed would be answered as a
// duplicate.
func TestWriteRetriedOnNextGateway(t *testing.T) {
	t.Parallel()
	_, good := startDev(t, "--no-seed")
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &unavailableGateway{}
	srv := grpc.NewServer()
	confgatev1.RegisterConfigServiceServer(srv, u)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	c := cli{t: t, addr: lis.Addr().String() + "," + good.addr}

	r := c.run("put", "-o", "json", "retry/k", "v")
	w := jsonLines(t, r.stdout)
	if r.code != 0 || len(w) != 1 || !strings.Contains(r.stderr, "draining; trying the next address") {
		t.Fatalf("put: %d %q %q", r.code, r.stdout, r.stderr)
	}
	f := changeFile(t, "s.json", `{"request_id": "set-1", "operations": [{"put": "retry/s", "value": "x"}]}`)
	c.ok("apply", f)
	c.ok("delete", "retry/k", "--request-id", "del-1")
	u.mu.Lock()
	ids := fmt.Sprint(u.ids)
	u.mu.Unlock()
	if want := fmt.Sprint([]string{w[0]["request_id"].(string), "set-1", "del-1"}); ids != want {
		t.Errorf("the first gateway got request IDs %s, want %s", ids, want)
	}
	if got := good.ok("get", "retry/s"); got != "x\n" {
		t.Errorf("retry/s = %q", got)
	}
}
