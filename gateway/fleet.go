package gateway

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/confgate/confgate/fleet"
	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/keyspace"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"github.com/confgate/confgate/store"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// FleetView is the fleet topic as a gateway uses it (fleet.Fleet): it
// publishes its own clients and reads everyone's.
type FleetView interface {
	Connected(clientID string, r fleet.Record)
	Report(r fleet.Record)
	Disconnected(clientID string)
	Snapshot() []fleet.Record
}

// Bounds of what a client says about itself.
const (
	maxClientIDBytes   = 128
	maxServiceBytes    = 128
	maxLabels          = 16
	maxLabelBytes      = 128
	maxRejections      = 100
	maxRejectionReason = 1024
)

// fleetClients counts each client's open streams on this gateway, so the
// fleet hears of it when its first opens and its last closes.
type fleetClients struct {
	anonSeq atomic.Uint64 // numbers the streams that do not say who they are
	mu      sync.Mutex
	streams map[string]int
	// diverged throttles the log of diverged clients and gateways.
	diverged divergedLog
}

// checkClientInfo validates what a client says about itself.
func checkClientInfo(field string, ci *confgatev1.ClientInfo) error {
	if ci == nil {
		return nil
	}
	if err := store.CheckRequestID(ci.GetClientId()); err != nil || len(ci.GetClientId()) > maxClientIDBytes {
		return invalidArg(field+".client_id", fmt.Sprintf("%q: use up to %d printable ASCII characters without spaces", clip(ci.GetClientId()), maxClientIDBytes))
	}
	if len(ci.GetService()) > maxServiceBytes || !visibleText(ci.GetService()) {
		return invalidArg(field+".service", fmt.Sprintf("use up to %d bytes of visible text", maxServiceBytes))
	}
	if len(ci.GetLabels()) > maxLabels {
		return invalidArg(field+".labels", fmt.Sprintf("%d labels, more than %d", len(ci.GetLabels()), maxLabels))
	}
	for k, v := range ci.GetLabels() {
		if k == "" || len(k) > maxLabelBytes || len(v) > maxLabelBytes || !visibleText(k) || !visibleText(v) {
			return invalidArg(field+".labels", fmt.Sprintf("label %q: keys (non-empty) and values are up to %d bytes of visible text", clip(k), maxLabelBytes))
		}
	}
	return nil
}

// visibleText reports whether s is UTF-8 without control, invisible or
// formatting characters (the key rules' characters).
func visibleText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if keyspace.Hidden(r) {
			return false
		}
	}
	return true
}

// idText keeps what a client ID may hold (printable ASCII without spaces)
// of s, at most 64 bytes.
func idText(s string) string {
	b := make([]byte, 0, min(len(s), 64))
	for i := 0; i < len(s) && len(b) < 64; i++ {
		if s[i] > ' ' && s[i] <= '~' {
			b = append(b, s[i])
		}
	}
	return string(b)
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// fleetRecord is what a client said, as the fleet topic holds it.
func fleetRecord(ci *confgatev1.ClientInfo, sel keyspace.Selector) fleet.Record {
	return fleet.Record{ClientID: ci.GetClientId(), Service: ci.GetService(), Labels: maps.Clone(ci.GetLabels()), Selector: sel.Prefixes()}
}

// clientStream tells the fleet that a client's stream opened; the
// returned func, called when it closes, tells it the stream closed.
//
// A stream that does not say who it is (an old or hand-written client) is
// listed too, under an ID made from this gateway's name and the stream's
// number, with its peer address as a label: it shows as not reporting.
func (g *Gateway) clientStream(ctx context.Context, ci *confgatev1.ClientInfo, sel keyspace.Selector) func() {
	if g.cfg.Fleet == nil {
		return func() {}
	}
	if ci.GetClientId() == "" {
		anon := &confgatev1.ClientInfo{ClientId: fmt.Sprintf("anonymous-%s-%d", idText(g.cfg.Name), g.fleetClients.anonSeq.Add(1)), Service: ci.GetService(), Labels: ci.GetLabels()}
		if p, ok := peer.FromContext(ctx); ok && p.Addr != nil && len(anon.Labels) < maxLabels {
			anon.Labels = maps.Clone(anon.Labels)
			if anon.Labels == nil {
				anon.Labels = map[string]string{}
			}
			anon.Labels["peer"] = p.Addr.String()
		}
		ci = anon
	}
	id := ci.GetClientId()
	fc := &g.fleetClients
	fc.mu.Lock()
	if fc.streams == nil {
		fc.streams = map[string]int{}
	}
	fc.streams[id]++
	first := fc.streams[id] == 1
	fc.mu.Unlock()
	if first {
		r := fleetRecord(ci, sel)
		r.ConnectedSince = time.Now()
		r.Connected = true
		g.cfg.Fleet.Connected(id, r)
	}
	return func() {
		fc.mu.Lock()
		fc.streams[id]--
		last := fc.streams[id] == 0
		if last {
			delete(fc.streams, id)
		}
		fc.mu.Unlock()
		if last {
			g.cfg.Fleet.Disconnected(id)
		}
	}
}

// Report records what a client applied.
func (g *Gateway) Report(ctx context.Context, req *confgatev1.ReportRequest) (*confgatev1.ReportResponse, error) {
	if g.cfg.Fleet == nil {
		return nil, status.Error(codes.Unimplemented, "this gateway keeps no fleet view (--fleet=false)")
	}
	ci := req.GetClient()
	if ci.GetClientId() == "" {
		return nil, invalidArg("client.client_id", "required: the ID the client subscribed with")
	}
	if err := checkClientInfo("client", ci); err != nil {
		return nil, err
	}
	sel, err := g.parseSelector(req.GetSelector())
	if err != nil {
		return nil, err
	}
	guard, err := g.authorizeRead(ctx, methodReport, sel)
	if err != nil {
		return nil, err
	}
	guard.stop()
	if len(req.GetAppliedCursor()) > 0 {
		if _, err := parseCursor("applied_cursor", req.GetAppliedCursor()); err != nil {
			return nil, err
		}
	}
	if n := len(req.GetDigest()); n != 0 && n != 16 {
		return nil, invalidArg("digest", fmt.Sprintf("is %d bytes, want 16 (SnapshotEnd.digest)", n))
	}
	if n := len(req.GetRejections()); n > maxRejections {
		return nil, invalidArg("rejections", fmt.Sprintf("%d, more than %d: report the latest per key", n, maxRejections))
	}
	r := fleetRecord(ci, sel)
	r.Connected = true
	r.LastReport = time.Now()
	r.AppliedCursor = bytes.Clone(req.GetAppliedCursor())
	r.Digest = bytes.Clone(req.GetDigest())
	for i, rj := range req.GetRejections() {
		if err := keyspace.ValidateKey(rj.GetKey()); err != nil {
			return nil, invalidArg(fmt.Sprintf("rejections[%d].key", i), err.Error())
		}
		if len(rj.GetReason()) > maxRejectionReason || !visibleText(rj.GetReason()) {
			return nil, invalidArg(fmt.Sprintf("rejections[%d].reason", i), fmt.Sprintf("up to %d bytes of visible text", maxRejectionReason))
		}
		r.Rejections = append(r.Rejections, fleet.Rejection{Key: rj.GetKey(), Partition: rj.GetVersion().GetPartition(), Offset: rj.GetVersion().GetOffset(), Reason: rj.GetReason()})
	}
	g.cfg.Fleet.Report(r)
	return &confgatev1.ReportResponse{}, nil
}

// GetFleet lists the fleet with each client's state.
func (g *Gateway) GetFleet(ctx context.Context, req *confgatev1.GetFleetRequest) (*confgatev1.GetFleetResponse, error) {
	if g.cfg.Fleet == nil {
		return nil, status.Error(codes.Unimplemented, "this gateway keeps no fleet view (--fleet=false)")
	}
	if req.GetPrefix() != "" {
		if err := keyspace.ValidatePrefix(req.GetPrefix()); err != nil {
			return nil, invalidArg("prefix", err.Error())
		}
	}
	sel, _ := keyspace.NewSelector([]string{req.GetPrefix()})
	guard, err := g.authorizeRead(ctx, methodGetFleet, sel)
	if err != nil {
		return nil, err
	}
	guard.stop()
	var behind *cursor.Cursor
	if len(req.GetBehindCursor()) > 0 {
		c, err := parseCursor("behind_cursor", req.GetBehindCursor())
		if err != nil {
			return nil, err
		}
		behind = &c
	}
	if !g.src.Ready() {
		return nil, errNotReady
	}
	return g.fleetView(req.GetPrefix(), req.GetService(), behind), nil
}

// fleetView computes every connected client's state against this
// gateway's config state.
func (g *Gateway) fleetView(prefix, service string, behind *cursor.Cursor) *confgatev1.GetFleetResponse {
	recs := g.cfg.Fleet.Snapshot()
	head := g.src.Status().Cursor
	out := &confgatev1.GetFleetResponse{Cursor: head.Encode()}
	// One digest computation per distinct selector, for all its cursors.
	type job struct {
		sel  keyspace.Selector
		idx  []int
		recs []fleet.Record
		curs []cursor.Cursor
	}
	jobs := map[string]*job{}
	states := make([]confgatev1.FleetState, len(recs))
	curs := make([]cursor.Cursor, len(recs))
	stale := time.Now().Add(-3 * g.cfg.FleetReportInterval)
	keep := make([]bool, len(recs))
	for i, r := range recs {
		if !r.Connected || isGatewayRecord(r.ClientID) || (service != "" && r.Service != service) {
			continue
		}
		sel, err := keyspace.NewSelector(r.Selector)
		if err != nil {
			continue
		}
		if prefix != "" && !selects(sel, prefix) {
			continue
		}
		c, err := cursor.Decode(r.AppliedCursor)
		if behind != nil && err == nil && c.Covers(*behind) {
			continue
		}
		keep[i] = true
		curs[i] = c
		var judged bool
		if states[i], judged = reportState(r, err, stale); !judged {
			continue
		}
		j := jobs[sel.Key()]
		if j == nil {
			j = &job{sel: sel}
			jobs[sel.Key()] = j
		}
		j.idx = append(j.idx, i)
		j.recs = append(j.recs, r)
		j.curs = append(j.curs, c)
	}
	for _, j := range jobs {
		for k, st := range g.judgeDigests(j.sel, j.recs, j.curs, g.logDiverged) {
			states[j.idx[k]] = st
		}
	}
	sums := map[string]*confgatev1.ServiceSummary{}
	for i, r := range recs {
		if !keep[i] {
			continue
		}
		fc := &confgatev1.FleetClient{
			Client:               &confgatev1.ClientInfo{ClientId: r.ClientID, Service: r.Service, Labels: r.Labels},
			Selector:             &confgatev1.Selector{Prefixes: r.Selector},
			Gateway:              r.Gateway,
			ConnectedSinceUnixMs: r.ConnectedSince.UnixMilli(),
			AppliedCursor:        r.AppliedCursor,
			Digest:               r.Digest,
			State:                states[i],
		}
		if !r.LastReport.IsZero() {
			fc.LastReportUnixMs = r.LastReport.UnixMilli()
		}
		if curs[i].Topic == head.Topic {
			for p, off := range head.Offsets {
				fc.LagRecords += max(0, off-curs[i].Offset(int32(p)))
			}
		}
		for _, rj := range r.Rejections {
			fc.Rejections = append(fc.Rejections, &confgatev1.Rejection{Key: rj.Key, Version: &confgatev1.Version{Partition: rj.Partition, Offset: rj.Offset}, Reason: rj.Reason})
		}
		out.Clients = append(out.Clients, fc)
		s := sums[r.Service]
		if s == nil {
			s = &confgatev1.ServiceSummary{Service: r.Service}
			sums[r.Service] = s
		}
		switch states[i] {
		case confgatev1.FleetState_FLEET_STATE_IN_SYNC:
			s.InSync++
		case confgatev1.FleetState_FLEET_STATE_BEHIND:
			s.Behind++
		case confgatev1.FleetState_FLEET_STATE_DIVERGED:
			s.Diverged++
		case confgatev1.FleetState_FLEET_STATE_NOT_REPORTING:
			s.NotReporting++
		default:
			s.Unknown++
		}
	}
	for _, s := range sums {
		out.Services = append(out.Services, s)
	}
	sort.Slice(out.Services, func(a, b int) bool { return out.Services[a].Service < out.Services[b].Service })
	return out
}

// fleetStates are the states' names in metrics, the console and its
// filters, in the order they are listed.
var fleetStates = []string{"in_sync", "behind", "diverged", "not_reporting", "unknown"}

// stateName names a state as fleetStates does.
func stateName(s confgatev1.FleetState) string {
	n := strings.ToLower(strings.TrimPrefix(s.String(), "FLEET_STATE_"))
	if n == "unspecified" {
		return "unknown"
	}
	return n
}

// reportState is the state of a connected client (or gateway) that its
// digest cannot decide: not reporting (no report, or none for three
// report intervals: before stale), or unknown (cerr: its cursor does not
// decode). judged is true when neither holds: judgeDigests decides.
func reportState(r fleet.Record, cerr error, stale time.Time) (st confgatev1.FleetState, judged bool) {
	switch {
	case len(r.AppliedCursor) == 0 || len(r.Digest) == 0 || r.LastReport.Before(stale):
		return confgatev1.FleetState_FLEET_STATE_NOT_REPORTING, false
	case cerr != nil:
		return confgatev1.FleetState_FLEET_STATE_UNKNOWN, false
	}
	return confgatev1.FleetState_FLEET_STATE_UNSPECIFIED, true
}

// judgeDigests compares each record's reported digest with this gateway's
// state for sel at the record's cursor (one scan for all): in sync,
// behind (changes since), diverged (logged through logDiverged, which
// throttles) or unknown (a cursor this gateway cannot answer for).
func (g *Gateway) judgeDigests(sel keyspace.Selector, recs []fleet.Record, curs []cursor.Cursor, logDiverged func(r fleet.Record, want []byte)) []confgatev1.FleetState {
	out := make([]confgatev1.FleetState, len(recs))
	at, ok := g.src.DigestsAt(sel, curs)
	for i, r := range recs {
		switch {
		case !ok[i]:
			out[i] = confgatev1.FleetState_FLEET_STATE_UNKNOWN
		case !bytes.Equal(at[i].Digest, r.Digest):
			out[i] = confgatev1.FleetState_FLEET_STATE_DIVERGED
			logDiverged(r, at[i].Digest)
		case at[i].ChangedSince:
			out[i] = confgatev1.FleetState_FLEET_STATE_BEHIND
		default:
			out[i] = confgatev1.FleetState_FLEET_STATE_IN_SYNC
			g.fleetClients.diverged.ok(r.ClientID)
		}
	}
	return out
}

// selects reports whether sel selects some key under prefix.
func selects(sel keyspace.Selector, prefix string) bool {
	if sel.All() {
		return true
	}
	for _, p := range sel.Prefixes() {
		if strings.HasPrefix(prefix, p) || strings.HasPrefix(p, prefix) {
			return true
		}
	}
	return false
}

// logDiverged logs a diverged client: the first time, then at most every
// minute while it stays diverged.
func (g *Gateway) logDiverged(r fleet.Record, want []byte) {
	if g.fleetClients.diverged.due(r.ClientID, time.Now()) {
		g.log.Warn("a client's view differs from the config at its cursor", "client_id", r.ClientID, "service", r.Service, "gateway", r.Gateway, "cursor", fmt.Sprintf("%x", r.AppliedCursor), "client_digest", fmt.Sprintf("%x", r.Digest), "config_digest", fmt.Sprintf("%x", want))
	}
}
