package gateway_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confgate/confgate/fleet"
	"github.com/confgate/confgate/gateway"
	"github.com/confgate/confgate/internal/testkit"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// memFleet is a FleetView that keeps what this gateway publishes, as if
// read back from the fleet topic at once.
type memFleet struct {
	mu   sync.Mutex
	recs map[string]fleet.Record
}

func (m *memFleet) Connected(id string, r fleet.Record) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.recs == nil {
		m.recs = map[string]fleet.Record{}
	}
	r.Gateway = "g1"
	m.recs[id] = r
}

func (m *memFleet) Report(r fleet.Record) {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.recs[r.ClientID]
	r.Gateway, r.ConnectedSince = "g1", old.ConnectedSince
	m.recs[r.ClientID] = r
}

func (m *memFleet) Disconnected(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.recs[id]
	r.Connected = false
	m.recs[id] = r
}

func (m *memFleet) Snapshot() []fleet.Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []fleet.Record
	for _, r := range m.recs {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b fleet.Record) int {
		if a.ClientID < b.ClientID {
			return -1
		}
		return 1
	})
	return out
}

func (m *memFleet) get(id string) (fleet.Record, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.recs[id]
	return r, ok
}

// The fleet view's states: in sync, behind, diverged, not reporting; a
// client's stream registers it and its end unregisters it.
func TestFleetStates(t *testing.T) {
	k := testkit.StartKafka(t)
	mf := &memFleet{}
	g := testkit.StartGateway(t, k, testkit.Topic(t), testkit.Options{Gateway: gateway.Config{Fleet: mf, FleetReportInterval: time.Hour}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := g.Client
	if _, err := c.Put(ctx, &confgatev1.PutRequest{Key: "pay/a", Value: []byte("1"), WaitApplied: true}); err != nil {
		t.Fatal(err)
	}
	// A subscribed client, registered with its identity.
	sctx, scancel := context.WithCancel(ctx)
	st, err := c.Subscribe(sctx, &confgatev1.SubscribeRequest{Selector: &confgatev1.Selector{Prefixes: []string{"pay/"}},
		Client: &confgatev1.ClientInfo{ClientId: "c-1", Service: "payments", Labels: map[string]string{"zone": "a"}}})
	if err != nil {
		t.Fatal(err)
	}
	var end *confgatev1.SnapshotEnd
	for end == nil {
		m, err := st.Recv()
		if err != nil {
			t.Fatalf("snapshot: %v", err)
		}
		end = m.GetSnapshotEnd()
	}
	if r, ok := mf.get("c-1"); !ok || !r.Connected || r.Service != "payments" || r.Labels["zone"] != "a" {
		t.Fatalf("registered %+v %v", r, ok)
	}
	report := func(id string, cur, dig []byte) {
		t.Helper()
		if _, err := c.Report(ctx, &confgatev1.ReportRequest{Client: &confgatev1.ClientInfo{ClientId: id, Service: "payments"},
			Selector: &confgatev1.Selector{Prefixes: []string{"pay/"}}, AppliedCursor: cur, Digest: dig}); err != nil {
			t.Fatalf("report: %v", err)
		}
	}
	states := func() map[string]confgatev1.FleetState {
		t.Helper()
		resp, err := c.GetFleet(ctx, &confgatev1.GetFleetRequest{})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]confgatev1.FleetState{}
		for _, fc := range resp.GetClients() {
			out[fc.GetClient().GetClientId()] = fc.GetState()
		}
		return out
	}
	if s := states()["c-1"]; s != confgatev1.FleetState_FLEET_STATE_NOT_REPORTING {
		t.Fatalf("before any report: %v", s)
	}
	report("c-1", end.GetCursor(), end.GetDigest())
	if s := states()["c-1"]; s != confgatev1.FleetState_FLEET_STATE_IN_SYNC {
		t.Fatalf("after an exact report: %v", s)
	}
	// An unselected change: still in sync. A selected one: behind.
	if _, err := c.Put(ctx, &confgatev1.PutRequest{Key: "other/x", Value: []byte("1"), WaitApplied: true}); err != nil {
		t.Fatal(err)
	}
	if s := states()["c-1"]; s != confgatev1.FleetState_FLEET_STATE_IN_SYNC {
		t.Fatalf("after an unselected change: %v", s)
	}
	if _, err := c.Put(ctx, &confgatev1.PutRequest{Key: "pay/b", Value: []byte("1"), WaitApplied: true}); err != nil {
		t.Fatal(err)
	}
	if s := states()["c-1"]; s != confgatev1.FleetState_FLEET_STATE_BEHIND {
		t.Fatalf("after a selected change: %v", s)
	}
	// A wrong digest: diverged.
	bad := append([]byte(nil), end.GetDigest()...)
	bad[0] ^= 1
	report("c-1", end.GetCursor(), bad)
	if s := states()["c-1"]; s != confgatev1.FleetState_FLEET_STATE_DIVERGED {
		t.Fatalf("after a wrong digest: %v", s)
	}
	resp, err := c.GetFleet(ctx, &confgatev1.GetFleetRequest{Service: "payments"})
	if err != nil || len(resp.GetServices()) != 1 || resp.GetServices()[0].GetDiverged() != 1 {
		t.Fatalf("summary %v %v", resp.GetServices(), err)
	}
	if resp, err := c.GetFleet(ctx, &confgatev1.GetFleetRequest{Prefix: "other/"}); err != nil || len(resp.GetClients()) != 0 {
		t.Fatalf("prefix other/ lists %v %v", resp.GetClients(), err)
	}
	// The same as JSON on the admin listener.
	hr, err := http.Get("http://" + g.Admin + "/debug/fleet?service=payments")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(hr.Body)
	hr.Body.Close()
	var fj struct {
		Clients []struct {
			State  string `json:"state"`
			Client struct {
				ClientID string `json:"client_id"`
			} `json:"client"`
		} `json:"clients"`
	}
	if err := json.Unmarshal(body, &fj); err != nil || len(fj.Clients) != 1 || fj.Clients[0].Client.ClientID != "c-1" || fj.Clients[0].State != "FLEET_STATE_DIVERGED" {
		t.Fatalf("/debug/fleet: %s (%v)", body, err)
	}
	if n := testkit.Metric(t, g, "confgate_gateway_fleet_clients", "diverged"); n != 1 {
		t.Fatalf("confgate_gateway_fleet_clients{state=diverged} = %v", n)
	}
	// A stream that does not say who it is shows as not reporting, named
	// after the gateway, with its peer address.
	actx, acancel := context.WithCancel(ctx)
	anon, err := c.Subscribe(actx, &confgatev1.SubscribeRequest{Selector: &confgatev1.Selector{Prefixes: []string{"pay/"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := anon.Recv(); err != nil {
		t.Fatal(err)
	}
	resp, err = c.GetFleet(ctx, &confgatev1.GetFleetRequest{})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, fc := range resp.GetClients() {
		if strings.HasPrefix(fc.GetClient().GetClientId(), "anonymous-") {
			found = fc.GetState() == confgatev1.FleetState_FLEET_STATE_NOT_REPORTING && fc.GetClient().GetLabels()["peer"] != ""
		}
	}
	if !found {
		t.Fatalf("a stream without client info is not listed as not reporting: %v", resp.GetClients())
	}
	acancel()
	// The stream ends: the client is no longer listed.
	scancel()
	testkit.Eventually(t, 5*time.Second, "the client unregistered", func() bool {
		r, _ := mf.get("c-1")
		return !r.Connected
	})
	if _, ok := states()["c-1"]; ok {
		t.Fatal("a disconnected client is still listed")
	}
	// Bad reports are refused precisely.
	for name, req := range map[string]*confgatev1.ReportRequest{
		"no client id": {Client: &confgatev1.ClientInfo{}},
		"bad id":       {Client: &confgatev1.ClientInfo{ClientId: "a b"}},
		"digest size":  {Client: &confgatev1.ClientInfo{ClientId: "x"}, Digest: []byte{1, 2}},
		"bad cursor":   {Client: &confgatev1.ClientInfo{ClientId: "x"}, AppliedCursor: []byte{9, 9}},
	} {
		if _, err := c.Report(ctx, req); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v", name, err)
		}
	}
}
