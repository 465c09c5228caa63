package gateway_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confgate/confgate/client"
	"github.com/confgate/confgate/fleet"
	"github.com/confgate/confgate/gateway"
	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/testkit"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
)

// fleetService is a service of TestFleetViewConverges and its selector.
type fleetService struct {
	name     string
	prefixes []string
}

// fleetMember is one client process of TestFleetViewConverges, as the test
// knows it: the truth the fleet view must converge to.
type fleetMember struct {
	id      string
	svc     int
	labels  map[string]string
	gw      int // index of the gateway it is subscribed to
	corrupt bool
	view    *client.View
}

// The fleet view end to end: three gateways with the fleet on one topic, 50
// Go clients of three services spread over them; while a writer changes
// keys their selectors cover, 10 clients move to another gateway and 10
// stop for good. Every gateway's GetFleet then converges to the truth: the
// 40 live clients, each on its real gateway with its service, labels and
// the cursor its View holds, all in sync; the per-service summaries match;
// the stopped clients leave the view after the grace. A client whose
// reported digest is corrupted shows as diverged everywhere while the
// others stay in sync.
func TestFleetViewConverges(t *testing.T) {
	if testing.Short() {
		t.Skip("7 to 10s: three gateways and 51 clients")
	}
	const (
		reportEvery = 200 * time.Millisecond
		grace       = 2 * time.Second
		nClients    = 50
		nMoves      = 10
		nKills      = 10
	)
	start := time.Now()
	k := testkit.StartKafka(t)
	topic := testkit.Topic(t)
	gws := make([]*testkit.Gateway, 3)
	names := make([]string, len(gws))
	for i := range gws {
		names[i] = fmt.Sprintf("gw-%d", i)
		gws[i] = testkit.StartGateway(t, k, topic, testkit.Options{
			Gateway: gateway.Config{Name: names[i], FleetReportInterval: reportEvery},
			Fleet:   &fleet.Config{MinInterval: 200 * time.Millisecond, Heartbeat: 200 * time.Millisecond, Grace: grace},
		})
	}
	services := []fleetService{
		{"payments", []string{"pay/"}},
		{"search", []string{"common/", "search/"}},
		{"web", []string{"common/flags/", "web/"}},
	}
	// Keys the selectors cover (and one they do not), seeded before the
	// clients subscribe and changed by the writer afterwards.
	keys := []string{"pay/limits", "pay/rates/eur", "search/index", "search/boost", "common/flags/dark", "common/region", "web/theme", "web/banner", "other/unselected"}
	for i, key := range keys {
		testkit.Put(t, gws[i%len(gws)], key, "seed")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	subscribe := func(m *fleetMember) {
		t.Helper()
		cfg := client.Config{
			Addrs:          []string{gws[m.gw].Addr},
			Prefixes:       services[m.svc].prefixes,
			ClientID:       m.id,
			Service:        services[m.svc].name,
			Labels:         m.labels,
			ReportInterval: reportEvery,
			Logger:         testkit.Logger(t),
		}
		if m.corrupt {
			cfg.ReportDigestHook = func(d []byte) []byte {
				d = append([]byte(nil), d...)
				d[0] ^= 0xff
				return d
			}
		}
		v, err := client.Subscribe(ctx, cfg)
		if err != nil {
			t.Fatalf("subscribe %s: %v", m.id, err)
		}
		t.Cleanup(func() { v.Close() })
		wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
		defer wcancel()
		if err := v.WaitSynced(wctx); err != nil {
			t.Fatalf("client %s on %s not synced: %v", m.id, names[m.gw], err)
		}
		m.view = v
	}
	members := make([]*fleetMember, nClients)
	for i := range members {
		members[i] = &fleetMember{
			id:     fmt.Sprintf("client-%02d", i),
			svc:    i % len(services),
			gw:     (i / len(services)) % len(gws),
			labels: map[string]string{"zone": fmt.Sprintf("z%d", i%4), "version": fmt.Sprintf("1.%d", i%2)},
		}
		if i%5 == 0 {
			members[i].labels["canary"] = "true"
		}
	}
	var wg sync.WaitGroup
	for _, m := range members {
		wg.Go(func() { subscribe(m) })
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("%d clients subscribed to %d gateways after %v", nClients, len(gws), time.Since(start).Round(time.Millisecond))

	// A writer changes selected (and unselected) keys through every
	// gateway while clients move and stop.
	var writes atomic.Int64
	stopWriter := make(chan struct{})
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for i := 0; ; i++ {
			select {
			case <-stopWriter:
				return
			case <-time.After(10 * time.Millisecond):
			}
			pctx, pcancel := context.WithTimeout(ctx, 15*time.Second)
			_, err := gws[i%len(gws)].Client.Put(pctx, &confgatev1.PutRequest{Key: keys[i%len(keys)], Value: fmt.Appendf(nil, "v%d", i), WaitApplied: true})
			pcancel()
			if err != nil {
				t.Errorf("writer: put %s: %v", keys[i%len(keys)], err)
				return
			}
			writes.Add(1)
		}
	}()
	time.Sleep(300 * time.Millisecond)
	// Clients 0..9 move to the next gateway; 10..19 stop for good. Both
	// spread over the three services and gateways.
	live := map[string]*fleetMember{}
	for _, m := range members {
		live[m.id] = m
	}
	for i := range nMoves {
		mv, kill := members[i], members[nMoves+i]
		mv.view.Close()
		mv.gw = (mv.gw + 1) % len(gws)
		subscribe(mv)
		kill.view.Close()
		delete(live, kill.id)
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	close(stopWriter)
	<-writerDone
	if t.Failed() {
		t.FailNow()
	}
	stopped := time.Now()
	t.Logf("%d writes while %d clients moved and %d stopped", writes.Load(), nMoves, nKills)

	// Every gateway converges to the truth.
	listed, full := waitFleet(t, gws, names, services, live, stopped, 20*time.Second)
	t.Logf("every gateway lists the %d live clients, on their gateways, in sync, %v after the writes stopped; the %d stopped clients left every view after %v (grace %v)",
		len(live), listed.Round(time.Millisecond), nKills, full.Round(time.Millisecond), grace)
	// And stays there: reports keep every client in sync, none of them
	// "not reporting" in between.
	holdFleet(t, gws, names, services, live, 2*time.Second)

	// --wait-fleet: a write through one gateway, waited for through
	// another until every client selecting the key reports it. When the
	// wait returns, those clients' own views really hold it.
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	resp, err := gws[0].Client.Put(wctx, &confgatev1.PutRequest{Key: "pay/limits", Value: []byte("after"), RequestId: "fleet-e2e-wait"})
	if err != nil {
		t.Fatal(err)
	}
	waitStart := time.Now()
	prog, err := client.WaitFleet(wctx, gws[2].Client, "pay/limits", resp.GetCursor(), 1, 50*time.Millisecond)
	if err != nil {
		t.Fatalf("wait fleet: %v", err)
	}
	written, err := cursor.Decode(resp.GetCursor())
	if err != nil {
		t.Fatal(err)
	}
	payers := 0
	for _, m := range live {
		if services[m.svc].name != "payments" {
			continue
		}
		payers++
		c, err := cursor.Parse(m.view.Cursor())
		if err != nil || !c.Covers(written) {
			t.Fatalf("wait fleet returned, but %s's view is at %s, not past the write", m.id, m.view.Cursor())
		}
	}
	if prog.Total != payers || prog.Applied != payers {
		t.Fatalf("wait fleet: %d of %d applied, want all %d payments clients", prog.Applied, prog.Total, payers)
	}
	t.Logf("a write through %s was applied by all %d payments clients, as seen through %s, %v after it was acknowledged", names[0], payers, names[2], time.Since(waitStart).Round(time.Millisecond))

	// A client whose reports carry a wrong digest: diverged on every
	// gateway, the others still in sync.
	bad := &fleetMember{id: "client-diverged", svc: 0, gw: 1, corrupt: true, labels: map[string]string{"zone": "z9"}}
	subscribe(bad)
	live[bad.id] = bad
	synced := time.Now()
	took, _ := waitFleet(t, gws, names, services, live, synced, 10*time.Second)
	t.Logf("the corrupted client is diverged on every gateway %v after it synced (%.1f report intervals); the other %d in sync",
		took.Round(time.Millisecond), float64(took)/float64(reportEvery), len(live)-1)
	holdFleet(t, gws, names, services, live, time.Second)
	t.Logf("fleet e2e: %d clients, %d moves, %d kills, %d writes, %d gateways, %v in all", nClients+1, nMoves, nKills, writes.Load(), len(gws), time.Since(start).Round(time.Millisecond))
}

// waitFleet polls every gateway until its GetFleet lists exactly live, as
// checkFleet says, and its fleet view holds no other client (the stopped
// ones tombstoned). It returns how long after since each held.
func waitFleet(t *testing.T, gws []*testkit.Gateway, names []string, services []fleetService, live map[string]*fleetMember, since time.Time, bound time.Duration) (listed, full time.Duration) {
	t.Helper()
	deadline := since.Add(bound)
	for {
		err := checkFleet(t, gws, names, services, live)
		if err == nil && listed == 0 {
			listed = time.Since(since)
		}
		if err == nil {
			err = checkViewSize(t, gws, names, len(live))
		}
		if err == nil {
			return listed, time.Since(since)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the fleet view did not converge within %v: %v", bound, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// holdFleet checks for d that every gateway keeps showing the truth.
func holdFleet(t *testing.T, gws []*testkit.Gateway, names []string, services []fleetService, live map[string]*fleetMember, d time.Duration) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if err := checkFleet(t, gws, names, services, live); err != nil {
			t.Fatalf("the converged fleet view changed: %v", err)
		}
		if err := checkViewSize(t, gws, names, len(live)); err != nil {
			t.Fatalf("the converged fleet view changed: %v", err)
		}
	}
}

// checkViewSize checks every gateway's view (confgate_fleet_clients, which
// counts disconnected records too) holds n clients, besides the gateways'
// own records (one per gateway).
func checkViewSize(t *testing.T, gws []*testkit.Gateway, names []string, n int) error {
	for i, g := range gws {
		if got := testkit.Metric(t, g, "confgate_fleet_clients", ""); got != float64(n+len(gws)) {
			return fmt.Errorf("%s: the view holds %v records, want %d clients and %d gateways", names[i], got, n, len(gws))
		}
	}
	return nil
}

// checkFleet compares every gateway's GetFleet with the truth: exactly the
// live clients, each on its gateway with its service, labels and selector,
// the applied cursor its View holds, no lag, in sync (diverged for a
// corrupted one), and the per-service summaries counting them so.
func checkFleet(t *testing.T, gws []*testkit.Gateway, names []string, services []fleetService, live map[string]*fleetMember) error {
	t.Helper()
	var errs []error
	for gi, g := range gws {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := g.Client.GetFleet(ctx, &confgatev1.GetFleetRequest{})
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: GetFleet: %w", names[gi], err))
			continue
		}
		var problems []string
		seen := map[string]bool{}
		type sum struct{ inSync, diverged int }
		want := map[string]*sum{}
		for _, m := range live {
			s := want[services[m.svc].name]
			if s == nil {
				s = &sum{}
				want[services[m.svc].name] = s
			}
			if m.corrupt {
				s.diverged++
			} else {
				s.inSync++
			}
		}
		for _, fc := range resp.GetClients() {
			id := fc.GetClient().GetClientId()
			m := live[id]
			if m == nil {
				problems = append(problems, fmt.Sprintf("%s listed (%v on %s), not a live client", id, fc.GetState(), fc.GetGateway()))
				continue
			}
			if seen[id] {
				problems = append(problems, id+" listed twice")
			}
			seen[id] = true
			wantState := confgatev1.FleetState_FLEET_STATE_IN_SYNC
			if m.corrupt {
				wantState = confgatev1.FleetState_FLEET_STATE_DIVERGED
			}
			cur := base64.RawURLEncoding.EncodeToString(fc.GetAppliedCursor())
			switch {
			case fc.GetGateway() != names[m.gw]:
				problems = append(problems, fmt.Sprintf("%s on %s, want %s", id, fc.GetGateway(), names[m.gw]))
			case fc.GetClient().GetService() != services[m.svc].name:
				problems = append(problems, fmt.Sprintf("%s service %q, want %q", id, fc.GetClient().GetService(), services[m.svc].name))
			case !maps.Equal(fc.GetClient().GetLabels(), m.labels):
				problems = append(problems, fmt.Sprintf("%s labels %v, want %v", id, fc.GetClient().GetLabels(), m.labels))
			case strings.Join(fc.GetSelector().GetPrefixes(), ",") != strings.Join(services[m.svc].prefixes, ","):
				problems = append(problems, fmt.Sprintf("%s selector %v, want %v", id, fc.GetSelector().GetPrefixes(), services[m.svc].prefixes))
			case cur != m.view.Cursor():
				problems = append(problems, fmt.Sprintf("%s cursor %s, its view has %s", id, cur, m.view.Cursor()))
			case fc.GetState() != wantState:
				problems = append(problems, fmt.Sprintf("%s %v, want %v", id, fc.GetState(), wantState))
			case fc.GetLagRecords() != 0:
				problems = append(problems, fmt.Sprintf("%s %d records behind", id, fc.GetLagRecords()))
			}
		}
		for id := range live {
			if !seen[id] {
				problems = append(problems, id+" missing")
			}
		}
		got := map[string]*sum{}
		for _, s := range resp.GetServices() {
			if s.GetBehind()+s.GetNotReporting()+s.GetUnknown() != 0 {
				problems = append(problems, fmt.Sprintf("summary %s: %d behind, %d not reporting, %d unknown", s.GetService(), s.GetBehind(), s.GetNotReporting(), s.GetUnknown()))
			}
			got[s.GetService()] = &sum{int(s.GetInSync()), int(s.GetDiverged())}
		}
		if !maps.EqualFunc(got, want, func(a, b *sum) bool { return *a == *b }) {
			problems = append(problems, fmt.Sprintf("summaries %s, want %s", fmtSums(got), fmtSums(want)))
		}
		if len(problems) > 0 {
			sort.Strings(problems)
			if len(problems) > 6 {
				problems = append(problems[:6], fmt.Sprintf("and %d more", len(problems)-6))
			}
			errs = append(errs, fmt.Errorf("%s: %s", names[gi], strings.Join(problems, "; ")))
		}
	}
	return errors.Join(errs...)
}

func fmtSums[S any](m map[string]S) string {
	var out []string
	for _, k := range sortedKeys(m) {
		out = append(out, fmt.Sprintf("%s=%+v", k, m[k]))
	}
	return strings.Join(out, " ")
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
