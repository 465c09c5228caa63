package gateway

import (
	"net/http"
	"sort"

	"github.com/confgate/confgate/internal/cursor"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/protojson"
)

// serveFleet answers /debug/fleet: GetFleet as JSON (protojson, the
// proto's field names), with the same filters as query parameters:
// prefix, service and behind (a cursor as the CLI prints it). Guarded like
// /debug/state.
func (g *Gateway) serveFleet(w http.ResponseWriter, r *http.Request) {
	if g.cfg.Fleet == nil {
		http.Error(w, "this gateway keeps no fleet view (serve --fleet)", http.StatusNotFound)
		return
	}
	if !g.src.Ready() {
		http.Error(w, "not caught up with the topic yet", http.StatusServiceUnavailable)
		return
	}
	q := r.URL.Query()
	var behind *cursor.Cursor
	if b := q.Get("behind"); b != "" {
		c, err := cursor.Parse(b)
		if err != nil {
			http.Error(w, "behind: "+err.Error(), http.StatusBadRequest)
			return
		}
		behind = &c
	}
	resp := g.fleetView(q.Get("prefix"), q.Get("service"), behind)
	b, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(resp)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

// maxFleetServices bounds the services the fleet metric names (services
// are what clients say they are): the largest by clients, the rest summed
// under "other".
const maxFleetServices = 50

var fleetClientsDesc = prometheus.NewDesc("confgate_gateway_fleet_clients",
	"Connected clients of the whole fleet (fleet view) by service and state (in_sync, behind, diverged, not_reporting, unknown), computed at scrape; the 50 largest services, the rest as service=\"other\".",
	[]string{"service", "state"}, nil)

// fleetCollector computes the fleet's states when scraped.
type fleetCollector struct{ g *Gateway }

func (fleetCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- fleetClientsDesc
	ch <- fleetGatewaysDesc
	ch <- fleetNameSharedDesc
}

func (c fleetCollector) Collect(ch chan<- prometheus.Metric) {
	c.g.collectPeers(ch)
	if !c.g.src.Ready() {
		return
	}
	sums := c.g.fleetView("", "", nil).GetServices()
	sort.Slice(sums, func(a, b int) bool { return total(sums[a]) > total(sums[b]) })
	other := &confgatev1.ServiceSummary{Service: "other"}
	for i, s := range sums {
		if i >= maxFleetServices {
			other.InSync += s.GetInSync()
			other.Behind += s.GetBehind()
			other.Diverged += s.GetDiverged()
			other.NotReporting += s.GetNotReporting()
			other.Unknown += s.GetUnknown()
			continue
		}
		emitService(ch, s)
	}
	if len(sums) > maxFleetServices {
		emitService(ch, other)
	}
}

func total(s *confgatev1.ServiceSummary) uint32 {
	return s.GetInSync() + s.GetBehind() + s.GetDiverged() + s.GetNotReporting() + s.GetUnknown()
}

func emitService(ch chan<- prometheus.Metric, s *confgatev1.ServiceSummary) {
	for state, n := range map[string]uint32{"in_sync": s.GetInSync(), "behind": s.GetBehind(), "diverged": s.GetDiverged(), "not_reporting": s.GetNotReporting(), "unknown": s.GetUnknown()} {
		ch <- prometheus.MustNewConstMetric(fleetClientsDesc, prometheus.GaugeValue, float64(n), s.GetService(), state)
	}
}
