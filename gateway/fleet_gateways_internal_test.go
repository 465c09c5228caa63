package gateway

import (
	"strings"
	"testing"
	"time"
)

func TestGatewayFleetID(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"gw-a", "gateway gw-a"},
		{"pod-7f9c.zone-b", "gateway pod-7f9c.zone-b"},
	} {
		if got := gatewayFleetID(tc.name); got != tc.want {
			t.Errorf("gatewayFleetID(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
	// Names a client ID cannot hold keep apart, and stay valid IDs.
	seen := map[string]string{}
	for _, name := range []string{"gw é", "gw è", "gw  a", strings.Repeat("g", 200), strings.Repeat("g", 201)} {
		id := gatewayFleetID(name)
		if !isGatewayRecord(id) || len(id) > 128 {
			t.Errorf("gatewayFleetID(%q) = %q: not a gateway record ID of at most 128 bytes", name, id)
		}
		if other, ok := seen[id]; ok {
			t.Errorf("%q and %q share the fleet ID %q", name, other, id)
		}
		seen[id] = name
	}
	if isGatewayRecord("client-gateway") {
		t.Error("a client ID (no spaces) taken for a gateway's")
	}
}

func TestDivergedLogThrottles(t *testing.T) {
	var d divergedLog
	t0 := time.Unix(1000, 0)
	steps := []struct {
		id     string
		at     time.Duration
		inSync bool
		want   bool
	}{
		{"a", 0, false, true},                                // first seen: logged
		{"a", 10 * time.Second, false, false},                // still diverged: quiet
		{"b", 10 * time.Second, false, true},                 // another one: logged
		{"a", divergedLogEvery, false, true},                 // a minute on: logged again
		{"a", divergedLogEvery + time.Second, true, false},   // back in sync
		{"a", divergedLogEvery + 2*time.Second, false, true}, // diverged again: at once
	}
	for i, s := range steps {
		if s.inSync {
			d.ok(s.id)
			continue
		}
		if got := d.due(s.id, t0.Add(s.at)); got != s.want {
			t.Errorf("step %d (%s at %v): due %v, want %v", i, s.id, s.at, got, s.want)
		}
	}
}
