package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/confgate/confgate/client"
	"github.com/confgate/confgate/internal/testkit"
)

// confgate fleet (on a dev gateway with --fleet) lists a Go client
// subscribed with its identity: in sync once it reported, filtered by
// prefix and service, in text and JSON, with the value it rejected.
func TestFleetCommand(t *testing.T) {
	t.Parallel()
	_, c := startDev(t, "--fleet", "--fleet-report-interval", "200ms")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v, err := client.Subscribe(ctx, client.Config{Addrs: []string{c.addr}, Prefixes: []string{"payments/"},
		ClientID: "pay-1", Service: "payments", Labels: map[string]string{"zone": "eu-1"}, ReportInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if err := v.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "the client in sync in confgate fleet", func() bool {
		out := c.ok("fleet", "payments/")
		return strings.Contains(out, "payments pay-1 in_sync") && strings.Contains(out, "zone=eu-1") &&
			strings.Contains(out, "# service payments: 1 in sync")
	})
	lines := jsonLines(t, c.ok("fleet", "-o", "json", "--service", "payments"))
	if len(lines) != 1 {
		t.Fatalf("fleet -o json printed %d lines", len(lines))
	}
	clients, _ := lines[0]["clients"].([]any)
	if len(clients) != 1 || clients[0].(map[string]any)["state"] != "in_sync" {
		t.Fatalf("fleet -o json: %v", lines[0])
	}
	// A prefix the client does not select lists nobody.
	if out := c.ok("fleet", "checkout/"); !strings.Contains(out, "# 0 clients") {
		t.Fatalf("fleet checkout/: %s", out)
	}
	// --wait-fleet: the client applies the write and reports it.
	r := c.run("put", "payments/db/timeout", "9s", "--wait-fleet", "100%", "--wait-fleet-timeout", "10s")
	if r.code != 0 || !strings.Contains(r.stderr, "1 of 1 clients whose selector covers payments/db/timeout applied the write (100%)") {
		t.Fatalf("put --wait-fleet 100%%: exit %d, stderr %q", r.code, r.stderr)
	}
	// A client that does not report keeps 100% from being reached: the
	// put fails at the timeout, naming it.
	quiet, err := client.Subscribe(ctx, client.Config{Addrs: []string{c.addr}, Prefixes: []string{"payments/db/"},
		ClientID: "pay-quiet", Service: "payments", ReportInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer quiet.Close()
	testkit.Eventually(t, 10*time.Second, "the quiet client listed", func() bool {
		return strings.Contains(c.ok("fleet"), "pay-quiet not_reporting")
	})
	r = c.run("put", "payments/db/timeout", "8s", "--wait-fleet", "100%", "--wait-fleet-timeout", "4s")
	if r.code == 0 || !strings.Contains(r.stderr, "1 of 2 clients applied it") || !strings.Contains(r.stderr, "pay-quiet") {
		t.Fatalf("put --wait-fleet 100%% with a quiet client: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := c.run("put", "payments/db/timeout", "8s", "--wait-fleet", "50%"); r.code != 0 {
		t.Fatalf("put --wait-fleet 50%%: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := c.run("put", "payments/db/timeout", "8s", "--wait-fleet", "150%"); r.code == 0 || !strings.Contains(r.stderr, "at most 100%") {
		t.Fatalf("put --wait-fleet 150%%: exit %d, stderr %q", r.code, r.stderr)
	}
	// confgate watch reports too, as its --service.
	w := c.start("watch", "payments/", "--client-id", "ops-watch", "--label", "who=alice")
	testkit.Eventually(t, 10*time.Second, "the watch in confgate fleet", func() bool {
		out := c.ok("fleet", "--service", "confgate-watch")
		return strings.Contains(out, "confgate-watch ops-watch in_sync") && strings.Contains(out, "who=alice")
	})
	w.cancel()
	// A rejection shows.
	v.Reject("payments/db/timeout", "unparseable for this version")
	testkit.Eventually(t, 10*time.Second, "the rejection in confgate fleet", func() bool {
		return strings.Contains(c.ok("fleet"), "rejected=payments/db/timeout@")
	})
}
