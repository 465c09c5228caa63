package gateway

import (
	"net/http"

	"github.com/confgate/confgate/internal/cursor"
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
