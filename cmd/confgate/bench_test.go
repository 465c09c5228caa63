package main

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// bench broadcast against a dev node: the table, then -o json.
func TestBenchBroadcast(t *testing.T) {
	_, c := startDev(t)
	pid := strconv.Itoa(os.Getpid()) // the dev node runs in this process
	args := []string{"bench", "broadcast", "--subscribers", "10", "--rate", "20", "--duration", "1s",
		"--warmup", "200ms", "--drain", "10s", "--server-pid", pid, "--log-level", "warn"}

	out := c.ok(args...)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "TARGET") || !strings.Contains(lines[0], "ALL-HAVE P99") {
		t.Fatalf("table:\n%s", out)
	}
	row := strings.Fields(lines[1])
	if row[0] != "confgate" || row[1] != "10×20/s" || !strings.Contains(lines[1], "100.00%") {
		t.Fatalf("row: %q", lines[1])
	}

	js := jsonLines(t, c.ok(append(args, "-o", "json", "--mode", "client", "--key-prefix", "bench-json/")...))
	if len(js) != 1 {
		t.Fatalf("%d JSON lines", len(js))
	}
	m := js[0]
	for k, want := range map[string]float64{"subscribers": 10, "rate": 20, "writes": 20, "expected": 200, "delivered": 200, "duplicates": 0, "delivered_pct": 100, "prefixes": 1, "keys": 100, "size": 1024} {
		if got, ok := m[k].(float64); !ok || got != want {
			t.Errorf("%s = %v, want %v", k, m[k], want)
		}
	}
	if m["target"] != "confgate (client)" {
		t.Errorf("target = %v", m["target"])
	}
	for _, k := range []string{"delivery_p50_ms", "delivery_p99_ms", "delivery_p999_ms", "delivery_max_ms", "all_have_p99_ms", "put_p50_ms", "put_p99_ms", "server_cpu_s", "server_rss_per_sub_kib", "server_rss_idle_bytes"} {
		if _, ok := m[k].(float64); !ok {
			t.Errorf("%s = %v, want a number", k, m[k])
		}
	}
}

func TestBenchUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bench", "fanout", "--mode", "bogus"}, "--mode"},
		{[]string{"bench", "fanout", "--subscribers", "0"}, "--subscribers"},
		{[]string{"bench", "sharded", "--rate", "0"}, "--rate"},
		{[]string{"bench", "broadcast", "--size", "8"}, "--size"},
		{[]string{"bench", "fanout", "--token", "a", "--token-file", "b"}, "exclude each other"},
	} {
		c := cli{t: t, addr: closedPort(t)}
		r := c.run(tc.args...)
		if r.code != exitFailure || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d mentioning %q", tc.args, r.code, r.stderr, exitFailure, tc.want)
		}
	}
	// No gateway: a clear error, quickly.
	c := cli{t: t, addr: closedPort(t)}
	if r := c.run("bench", "fanout", "--timeout", "2s"); r.code != exitFailure || !strings.Contains(r.stderr, "connect") {
		t.Errorf("no gateway: exit %d, stderr %q", r.code, r.stderr)
	}
}
