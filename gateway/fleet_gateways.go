package gateway

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/confgate/confgate/fleet"
	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/keyspace"
	"github.com/confgate/confgate/store"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/zeebo/xxh3"
)

// Gateways judge each other through the fleet topic: each reports its own
// applied cursor and the digest of its whole state there, as a client
// would, and every gateway compares each peer's digest with its own state
// at the peer's cursor (store.DigestsAt). Two gateways that applied the
// same log must agree; a "diverged" peer means a bug or a corrupted
// state, whichever of the two holds it, and is what the digest alert
// watches (confgate_gateway_fleet_gateways{state="diverged"}).
//
// The records live beside the clients' under IDs a client cannot take:
// client IDs have no spaces (ClientInfo.client_id), these start with
// "gateway ". The fleet's client listings leave them out.

// gatewayIDPrefix starts the fleet ID of a gateway's own record.
const gatewayIDPrefix = "gateway "

// gatewayService is the service gateways report under.
const gatewayService = "confgate-gateway"

// isGatewayRecord says whether a fleet record is a gateway's own.
func isGatewayRecord(id string) bool { return strings.HasPrefix(id, gatewayIDPrefix) }

// gatewayFleetID is the fleet ID of the gateway named name: the name as
// far as a client ID may hold it (printable ASCII), and a hash of the
// whole name when that dropped or cut anything, so names that differ
// only in other characters stay apart.
func gatewayFleetID(name string) string {
	id := idText(name)
	if id != name {
		id = fmt.Sprintf("%s~%016x", id, xxh3.HashString(name))
	}
	return gatewayIDPrefix + id
}

var fleetGatewaysDesc = prometheus.NewDesc("confgate_gateway_fleet_gateways",
	"Other gateways of the topic as this one judges them from the fleet topic, by state: in_sync (same digest at their cursor, nothing changed since), behind, diverged (a different digest at the same cursor: two gateways disagree on the config), not_reporting, unknown (their cursor is ahead of this gateway or older than its history).",
	[]string{"state"}, nil)

var fleetNameSharedDesc = prometheus.NewDesc("confgate_gateway_fleet_name_shared",
	"1 when another running process reports to the fleet under this gateway's name (--gateway-name): the two overwrite each other's record and the gateways' digest check misses them; give every gateway its own name.",
	nil, nil)

// processLabel labels a gateway's own fleet record with a number drawn
// at start, so a second process under the same name shows.
const processLabel = "process"

// peerStates is the last judgement of the other gateways.
type peerStates struct {
	mu     sync.Mutex
	counts map[string]int
	// sharedAt: when another process last showed under this gateway's
	// ID. The view holds whichever of the two wrote last, so each sees the
	// other only some of the time: the gauge holds for sharedHold.
	sharedAt time.Time
}

// sharedHold is how long, in report intervals, a gateway says its name is
// shared after it last saw the other process.
const sharedHold = 10

// selfRecord is this gateway's own fleet record; st, when set, gives
// the report: its applied cursor and the digest of its whole state.
func (g *Gateway) selfRecord(st *store.Status) fleet.Record {
	r := fleet.Record{
		ClientID: g.selfID,
		Service:  gatewayService,
		Labels:   map[string]string{processLabel: g.selfNonce},
		Selector: []string{""},
	}
	if st != nil {
		r.AppliedCursor, r.Digest = st.Cursor.Encode(), st.Digest
	}
	return r
}

// judgeGateways computes the other gateways' states for the metric, and
// logs the diverged ones (throttled) and another process under this
// gateway's name.
func (g *Gateway) judgeGateways() {
	counts := map[string]int{}
	for _, s := range fleetStates {
		counts[s] = 0
	}
	stale := time.Now().Add(-3 * g.cfg.FleetReportInterval)
	var peers []fleet.Record
	var curs []cursor.Cursor
	shared := false
	for _, r := range g.cfg.Fleet.Snapshot() {
		if r.ClientID == g.selfID && r.Connected && r.Labels[processLabel] != g.selfNonce && !r.LastReport.Before(stale) {
			shared = true
			if g.fleetClients.diverged.due("name "+r.ClientID, time.Now()) {
				g.log.Error("another process reports to the fleet under this gateway's name: the two overwrite each other's record and are not checked against each other; give every gateway its own --gateway-name",
					"gateway_name", g.cfg.Name, "other_process", r.Labels[processLabel], "process", g.selfNonce)
			}
		}
		if !isGatewayRecord(r.ClientID) || r.ClientID == g.selfID || !r.Connected {
			continue
		}
		c, err := cursor.Decode(r.AppliedCursor)
		if st, judged := reportState(r, err, stale); !judged {
			counts[stateName(st)]++
			continue
		}
		peers = append(peers, r)
		curs = append(curs, c)
	}
	if len(peers) > 0 {
		all, _ := keyspace.NewSelector(nil)
		for _, st := range g.judgeDigests(all, peers, curs, g.logPeerDiverged) {
			counts[stateName(st)]++
		}
	}
	g.peers.mu.Lock()
	g.peers.counts = counts
	if shared {
		g.peers.sharedAt = time.Now()
	}
	g.peers.mu.Unlock()
}

func (g *Gateway) logPeerDiverged(r fleet.Record, mine []byte) {
	if g.fleetClients.diverged.due(r.ClientID, time.Now()) {
		g.log.Error("another gateway's config differs from this one's at the same cursor: one of the two holds a wrong state; restart the one whose digest differs from the majority's",
			"peer", r.Gateway, "cursor", fmt.Sprintf("%x", r.AppliedCursor), "peer_digest", fmt.Sprintf("%x", r.Digest), "digest", fmt.Sprintf("%x", mine))
	}
}

// collectPeers emits the last judgement (none before the first).
func (g *Gateway) collectPeers(ch chan<- prometheus.Metric) {
	g.peers.mu.Lock()
	counts := g.peers.counts
	shared := !g.peers.sharedAt.IsZero() && time.Since(g.peers.sharedAt) < sharedHold*g.cfg.FleetReportInterval
	g.peers.mu.Unlock()
	if counts == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(fleetNameSharedDesc, prometheus.GaugeValue, map[bool]float64{true: 1}[shared])
	for _, s := range fleetStates {
		ch <- prometheus.MustNewConstMetric(fleetGatewaysDesc, prometheus.GaugeValue, float64(counts[s]), s)
	}
}

// watchFleet reports this gateway to the fleet every report interval
// (once caught up), and every two intervals judges the clients (so a
// diverged one is logged whether or not anyone asks) and the other
// gateways. When ctx ends it says this gateway left.
func (g *Gateway) watchFleet(ctx context.Context) {
	if err := g.src.WaitReady(ctx); err != nil {
		return
	}
	g.cfg.Fleet.Connected(g.selfID, g.selfRecord(nil))
	defer g.cfg.Fleet.Disconnected(g.selfID)
	t := time.NewTicker(g.cfg.FleetReportInterval)
	defer t.Stop()
	for n := 0; ; n++ {
		st := g.src.Status()
		g.cfg.Fleet.Report(g.selfRecord(&st))
		if n%2 == 1 {
			g.fleetView("", "", nil)
			g.judgeGateways()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
