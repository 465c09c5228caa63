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
	// A rejection shows.
	v.Reject("payments/db/timeout", "unparseable for this version")
	testkit.Eventually(t, 10*time.Second, "the rejection in confgate fleet", func() bool {
		return strings.Contains(c.ok("fleet"), "rejected=payments/db/timeout@")
	})
}
