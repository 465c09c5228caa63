package gateway

import (
	"strings"
	"testing"
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
