package main

import (
	"encoding/base64"
	"fmt"
	"github.com/confgate/confgate/internal/testkit"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/confgate/confgate/examples/seed"
	"github.com/confgate/confgate/internal/cursor"
	"github.com/twmb/franz-go/pkg/kfake"
)

var writeLine = regexp.MustCompile(`^partition=(\d+) offset=(\d+) cursor=([A-Za-z0-9_-]+)\n$`)

// putCursor runs put and returns the cursor it printed.
func putCursor(t *testing.T, c cli, args ...string) string {
	t.Helper()
	out := c.ok(append([]string{"put"}, args...)...)
	m := writeLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("put printed %q, want partition=P offset=O cursor=C", out)
	}
	return m[3]
}

func TestDevLoadsSeed(t *testing.T) {
	t.Parallel()
	n, c := startDev(t)
	writes, err := parseSeed("sample", seed.Sample)
	if err != nil {
		t.Fatal(err)
	}
	if len(writes) < 30 || len(writes) > 45 {
		t.Errorf("sample has %d entries, want 30-45", len(writes))
	}
	// The sample's schemas are in force: a value they refuse is not
	// written, and the error names the rule.
	if r := c.run("put", "payments/db/timeout", "2h"); r.code == 0 || !strings.Contains(r.stderr, "rule max") || !strings.Contains(r.stderr, "_confgate/schemas/payments/db/timeout") {
		t.Errorf("a timeout over the sample schema's max: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := c.run("put", "payments/retry/policy", `{"max_attempts": 50}`); r.code == 0 || !strings.Contains(r.stderr, "/max_attempts") {
		t.Errorf("a retry policy over the sample schema's maximum: exit %d, stderr %q", r.code, r.stderr)
	}
	want := map[string]string{}
	for _, w := range writes {
		want[w.Key] = string(w.Value)
	}

	lines := jsonLines(t, c.ok("snapshot", "-o", "json"))
	if len(lines) == 0 {
		t.Fatal("empty snapshot output")
	}
	end := lines[len(lines)-1]
	entries := lines[:len(lines)-1]
	if got := end["entry_count"]; got != float64(len(want)) || len(entries) != len(want) {
		t.Fatalf("snapshot: %d entry lines, entry_count %v; want %d", len(entries), got, len(want))
	}
	if _, err := cursor.Parse(end["cursor"].(string)); err != nil {
		t.Fatalf("final cursor: %v", err)
	}
	for _, e := range entries {
		k := e["key"].(string)
		if want[k] != e["value"] {
			t.Errorf("%s = %v, want %q", k, e["value"], want[k])
		}
	}
	// JSON documents are stored compact, typed application/json.
	for _, e := range entries {
		if e["key"] == "checkout/feature-flags/new-cart" {
			if e["content_type"] != "application/json" || !strings.HasPrefix(e["value"].(string), `{"enabled":true`) {
				t.Errorf("new-cart: %v", e)
			}
		}
	}

	text := c.ok("snapshot", "payments/")
	if !strings.Contains(text, "payments/db/timeout = 5s\n") {
		t.Errorf("text snapshot lacks the timeout:\n%s", text)
	}
	if !regexp.MustCompile(`(?m)^# 10 entries at cursor \S+ digest \S+$`).MatchString(text) {
		t.Errorf("text snapshot summary:\n%s", text)
	}

	banner := n.stdout.String()
	for _, s := range []string{"get payments/db/timeout", "watch payments/", "put payments/db/timeout 7s", n.GRPC} {
		if !strings.Contains(banner, s) {
			t.Errorf("banner lacks %q:\n%s", s, banner)
		}
	}
	if !strings.Contains(n.stderr.String(), "development only") {
		t.Errorf("no development-only warning in the log:\n%s", n.stderr)
	}
	resp, err := http.Get("http://" + n.Admin + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/readyz: %s", resp.Status)
	}
}

func TestPutGetRoundTrip(t *testing.T) {
	t.Parallel()
	_, c := startDev(t, "--no-seed")

	cur := putCursor(t, c, "payments/db/timeout", "7s")
	if got := c.ok("get", "payments/db/timeout", "--min-cursor", cur); got != "7s\n" {
		t.Errorf("get = %q, want %q", got, "7s\n")
	}

	out := c.ok("put", "-o", "json", "svc/doc", `{"a":1}`, "--content-type", "application/json", "--header", "owner=team-a")
	w := jsonLines(t, out)
	if len(w) != 1 || w[0]["key"] != "svc/doc" || w[0]["cursor"] == "" || w[0]["version"] == nil {
		t.Fatalf("put -o json: %s", out)
	}
	g := jsonLines(t, c.ok("get", "-o", "json", "svc/doc", "--min-cursor", w[0]["cursor"].(string)))
	if len(g) != 1 {
		t.Fatalf("get -o json printed %d lines", len(g))
	}
	e := g[0]
	if e["key"] != "svc/doc" || e["value"] != `{"a":1}` || e["content_type"] != "application/json" || e["value_encoding"] != nil {
		t.Errorf("get -o json: %v", e)
	}
	if fmt.Sprint(e["version"]) != fmt.Sprint(w[0]["version"]) {
		t.Errorf("get version %v, put version %v", e["version"], w[0]["version"])
	}
	// The request's headers, then the audit headers the gateway adds to
	// every write (who wrote it, through which gateway).
	var own []any
	audit := map[string]bool{}
	for _, h := range e["headers"].([]any) {
		k := h.(map[string]any)["key"].(string)
		if strings.HasPrefix(k, "confgate-") {
			audit[k] = true
			continue
		}
		own = append(own, h)
	}
	if fmt.Sprint(own) != fmt.Sprint([]any{map[string]any{"key": "owner", "value": "team-a"}}) || !audit["confgate-writer"] || !audit["confgate-gateway"] {
		t.Errorf("headers: %v", e["headers"])
	}

	// A binary value, from stdin, comes back flagged base64 in JSON and
	// byte for byte (no newline) in text.
	bin := []byte{0x00, 0xff, 0xfe, '\n', 0x80}
	r := c.runIn(bin, "put", "svc/blob", "-", "--wait")
	if r.code != 0 {
		t.Fatalf("put -: %d %s", r.code, r.stderr)
	}
	g = jsonLines(t, c.ok("get", "-o", "json", "svc/blob"))
	if g[0]["value_encoding"] != "base64" || g[0]["value"] != base64.StdEncoding.EncodeToString(bin) {
		t.Errorf("binary get -o json: %v", g[0])
	}
	if got := c.ok("get", "svc/blob"); got != string(bin) {
		t.Errorf("binary get = %q, want %q", got, bin)
	}
	if snap := c.ok("snapshot", "svc/blob"); !strings.HasPrefix(snap, "svc/blob = (base64) "+base64.StdEncoding.EncodeToString(bin)+"\n") {
		t.Errorf("binary snapshot line: %q", snap)
	}
}

func TestGetMissingKey(t *testing.T) {
	t.Parallel()
	_, c := startDev(t, "--no-seed")
	r := c.run("get", "nope/nothing")
	if r.code != 1 || r.stderr != "confgate: key \"nope/nothing\" not found\n" || r.stdout != "" {
		t.Fatalf("get missing: code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
}

func TestDeleteThenGet(t *testing.T) {
	t.Parallel()
	_, c := startDev(t)
	if got := c.ok("get", "auth/session/ttl"); got != "12h\n" {
		t.Fatalf("seeded auth/session/ttl = %q", got)
	}
	out := c.ok("delete", "auth/session/ttl")
	m := writeLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("delete printed %q", out)
	}
	r := c.run("get", "auth/session/ttl", "--min-cursor", m[3])
	if r.code != 1 || !strings.Contains(r.stderr, `key "auth/session/ttl" not found`) {
		t.Fatalf("get after delete: code %d stderr %q", r.code, r.stderr)
	}
	d := jsonLines(t, c.ok("delete", "-o", "json", "auth/session/ttl"))
	if d[0]["key"] != "auth/session/ttl" || d[0]["cursor"] == "" {
		t.Errorf("delete -o json: %v", d)
	}
}

func TestWatchPutAndFrom(t *testing.T) {
	t.Parallel()
	_, c := startDev(t)

	// A live watch: the snapshot of an empty prefix, then the put, carrying
	// the put's cursor.
	w := c.start("watch", "-o", "json", "watched/", "--count", "1")
	testkit.Eventually(t, 10*time.Second, "the watch's snapshot end", func() bool {
		return strings.Contains(w.stdout.String(), `"op":"snapshot_end"`)
	})
	c1 := putCursor(t, c, "watched/a", "one")
	if code := w.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("watch exited %d: %s", code, w.stderr)
	}
	lines := jsonLines(t, w.stdout.String())
	if len(lines) != 2 {
		t.Fatalf("watch printed %d lines, want snapshot_end and one put:\n%s", len(lines), w.stdout)
	}
	if lines[0]["op"] != "snapshot_end" || lines[0]["reason"] != "initial" || lines[0]["entry_count"] != float64(0) || lines[0]["reset"] != false {
		t.Errorf("snapshot_end line: %v", lines[0])
	}
	put := lines[1]
	if put["op"] != "put" || put["key"] != "watched/a" || put["value"] != "one" || !coversCursor(t, put["cursor"], c1) {
		t.Errorf("put event: %v, want a cursor covering %s", put, c1)
	}

	// Resuming from the first put's cursor shows only what came after it.
	c2 := putCursor(t, c, "watched/b", "two")
	c3 := putCursor(t, c, "watched/c", "three")
	r := c.run("watch", "-o", "json", "watched/", "--from", c1, "--count", "2")
	if r.code != 0 {
		t.Fatalf("watch --from: %d %s", r.code, r.stderr)
	}
	lines = jsonLines(t, r.stdout)
	if len(lines) != 2 || lines[0]["key"] != "watched/b" || lines[1]["key"] != "watched/c" {
		t.Fatalf("watch --from %s:\n%s", c1, r.stdout)
	}
	// Each event carries the cursor of its delta: at or past its put.
	for i, want := range []string{c2, c3} {
		got, err := cursor.Parse(lines[i]["cursor"].(string))
		if err != nil {
			t.Fatal(err)
		}
		wc, _ := cursor.Parse(want)
		if !got.Covers(wc) {
			t.Errorf("event %d cursor %s does not cover its put's %s", i, lines[i]["cursor"], want)
		}
	}
	if !coversCursor(t, lines[1]["cursor"], c3) {
		t.Errorf("last event cursor %v, want one covering the last put's %s", lines[1]["cursor"], c3)
	}

	// Text mode, from a cursor: one line per change and a cursor line.
	r = c.run("watch", "watched/", "--from", c2, "--duration", "8s") // ample for one delta on a loaded machine (3 s failed once)
	if r.code != 0 {
		t.Fatalf("watch --duration: %d %s", r.code, r.stderr)
	}
	if !strings.Contains(r.stdout, "PUT watched/c = three  (p") || !strings.Contains(r.stdout, "# cursor "+c3+"\n") || strings.Contains(r.stdout, "watched/b") {
		t.Errorf("text watch --from:\n%s", r.stdout)
	}

	// Snapshot entries count towards --count and carry the snapshot's cursor.
	r = c.run("watch", "-o", "json", "payments/db/", "--count", "3")
	lines = jsonLines(t, r.stdout)
	if r.code != 0 || len(lines) != 3 {
		t.Fatalf("watch --count 3 of a snapshot: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, l := range lines {
		if l["op"] != "snapshot" || !strings.HasPrefix(l["key"].(string), "payments/db/") || l["cursor"] == "" {
			t.Errorf("snapshot event: %v", l)
		}
	}
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	_, c := startDev(t, "--no-seed")
	r := c.run("put", "/bad", "x")
	if r.code != exitFailure || !strings.Contains(r.stderr, "leading slash") || !strings.HasPrefix(r.stderr, "confgate: ") {
		t.Errorf("put /bad: code %d stderr %q", r.code, r.stderr)
	}
	r = c.run("watch", "/bad")
	if r.code != exitFailure || !strings.Contains(r.stderr, "leading slash") {
		t.Errorf("watch /bad: code %d stderr %q", r.code, r.stderr)
	}
	r = c.run("get", "k", "--min-cursor", "not-a-cursor!")
	if r.code != exitFailure || !strings.Contains(r.stderr, "--min-cursor") {
		t.Errorf("bad --min-cursor: code %d stderr %q", r.code, r.stderr)
	}
	r = c.run("get")
	if r.code != exitFailure || !strings.Contains(r.stderr, "usage: confgate get KEY") {
		t.Errorf("get without key: code %d stderr %q", r.code, r.stderr)
	}
	r = c.run("get", "k", "-o", "yaml")
	if r.code != exitFailure || !strings.Contains(r.stderr, "want text or json") {
		t.Errorf("-o yaml: code %d stderr %q", r.code, r.stderr)
	}
	for _, r := range []result{r, c.run("put", "k", "v", "--header", "novalue")} {
		if strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("error is not one line: %q", r.stderr)
		}
	}
}

func TestUnreachable(t *testing.T) {
	t.Parallel()
	closed := closedPort(t)
	c := cli{t: t, addr: closed}
	want := fmt.Sprintf("confgate: no gateway reachable at %s (is `confgate dev` running?)\n", closed)
	for _, args := range [][]string{{"get", "x"}, {"put", "x", "y"}, {"snapshot"}, {"watch"}} {
		r := c.run(args...)
		if r.code != exitFailure || r.stderr != want {
			t.Errorf("%v with nothing listening: code %d stderr %q, want %q", args, r.code, r.stderr, want)
		}
	}
}

func TestAddrListUsesFirstReachable(t *testing.T) {
	t.Parallel()
	_, good := startDev(t)
	c := cli{t: t, addr: closedPort(t) + "," + good.addr}
	if got := c.ok("get", "payments/db/timeout"); got != "5s\n" {
		t.Errorf("get via a list: %q", got)
	}
	r := c.run("watch", "payments/db/timeout", "--count", "1")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "SNAPSHOT payments/db/timeout = 5s  (p") {
		t.Errorf("watch via a list: %d %q %q", r.code, r.stdout, r.stderr)
	}
}

// Two gateways on one topic: a watch moves from the first to the second
// when the first shuts down, resuming from its cursor with nothing missed
// or repeated.
func TestServeAndWatchFailover(t *testing.T) {
	t.Parallel()
	k, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	brokers := strings.Join(k.ListenAddrs(), ",")
	common := []string{"--brokers", brokers, "--topic", "cfg", "--listen", "127.0.0.1:0", "--admin-listen", "",
		"--probe-interval", "200ms", "--fetch-max-wait", "100ms", "--shutdown-grace", "2s", "--log-level", "warn"}

	// Without --create-topic a missing topic is a clear error at start.
	r := cli{t: t}.run(append([]string{"serve"}, common...)...)
	if r.code != exitFailure || !strings.Contains(r.stderr, "--create-topic") || !strings.Contains(r.stderr, `"cfg"`) {
		t.Fatalf("serve on a missing topic: code %d stderr %q", r.code, r.stderr)
	}

	a := startNodeCmd(t, append([]string{"serve", "--create-topic"}, common...)...)
	b := startNodeCmd(t, append([]string{"serve"}, common...)...)
	if a.Admin != "" {
		t.Errorf("--admin-listen \"\" still serves admin on %s", a.Admin)
	}
	ca, cb := cli{t: t, addr: a.GRPC}, cli{t: t, addr: b.GRPC}

	w := cli{t: t, addr: a.GRPC + "," + b.GRPC}.start("watch", "-o", "json", "rc/", "--count", "2")
	testkit.Eventually(t, 10*time.Second, "the watch's snapshot", func() bool {
		return strings.Contains(w.stdout.String(), `"op":"snapshot_end"`)
	})
	c1 := putCursor(t, ca, "rc/one", "1")
	testkit.Eventually(t, 10*time.Second, "the first put in the watch", func() bool {
		return strings.Contains(w.stdout.String(), `"key":"rc/one"`)
	})
	if code := a.stop(); code != 0 {
		t.Fatalf("serve exited %d after SIGINT-like stop: %s", code, a.stderr)
	}
	c2 := putCursor(t, cb, "rc/two", "2")
	if code := w.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("watch exited %d: %s", code, w.stderr)
	}
	lines := jsonLines(t, w.stdout.String())
	if len(lines) != 3 || lines[0]["op"] != "snapshot_end" || lines[1]["key"] != "rc/one" || lines[2]["key"] != "rc/two" {
		t.Fatalf("watch across failover:\n%s", w.stdout)
	}
	if !coversCursor(t, lines[1]["cursor"], c1) {
		t.Errorf("first event cursor %v, want one covering %s", lines[1]["cursor"], c1)
	}
	// The second gateway's answer to the put may predate its applying
	// rc/one; the event's cursor covers it either way.
	got, err := cursor.Parse(lines[2]["cursor"].(string))
	if err != nil {
		t.Fatal(err)
	}
	if wc, _ := cursor.Parse(c2); !got.Covers(wc) {
		t.Errorf("second event cursor %v does not cover its put's %s", lines[2]["cursor"], c2)
	}
	if !strings.Contains(w.stderr.String(), "reconnecting") {
		t.Errorf("no reconnect note on stderr: %q", w.stderr)
	}
}

// coversCursor reports whether the event cursor got covers the put's
// cursor want. A put's cursor ends right after its record; a watcher's may
// also be past the transaction's commit marker (CLI writes carry a request
// ID, so they are transactional), one offset further.
func coversCursor(t *testing.T, got any, want string) bool {
	t.Helper()
	gs, _ := got.(string)
	g, err := cursor.Parse(gs)
	if err != nil {
		t.Errorf("event cursor %v: %v", got, err)
		return false
	}
	w, err := cursor.Parse(want)
	if err != nil {
		t.Fatalf("put cursor %q: %v", want, err)
	}
	return g.Covers(w)
}
