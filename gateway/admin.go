package gateway

import (
	"encoding/base64"
	"encoding/json"
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// stateJSON is the body of /healthz, /readyz and /debug/state.
type stateJSON struct {
	Ready        bool   `json:"ready"`
	Stale        bool   `json:"stale"`
	Topic        string `json:"topic_id"`
	Cursor       string `json:"cursor"`
	LagRecords   int64  `json:"lag_records"`
	Entries      int    `json:"entries"`
	Tombstones   int    `json:"tombstones"`
	Digest       string `json:"digest"`
	HistoryFloor string `json:"history_floor"`
	Subscribers  int    `json:"selector_groups"`
}

// AdminHandler serves /healthz (alive, with status), /readyz (200 only
// when caught up; a stale gateway stays ready and serves its last state),
// /debug/state (cursor and digest, to compare gateways) and /metrics.
//
// The admin listener has no authentication, so none of it may say
// anything the ACL guards: no key, no value, no principal (counts,
// cursors and the state digest only; the digest sums per-entry hashes of
// the whole state, so it confirms no single value). Operators bind it to
// loopback or a private network all the same.
func (g *Gateway) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	state := func() stateJSON {
		st := g.src.Status()
		return stateJSON{
			Ready:        st.Ready,
			Stale:        st.Stale,
			Topic:        st.Topic.String(),
			Cursor:       st.Cursor.String(),
			LagRecords:   st.LagRecords,
			Entries:      st.Entries,
			Tombstones:   st.Tombstones,
			Digest:       base64.RawURLEncoding.EncodeToString(st.Digest),
			HistoryFloor: st.HistoryFloor.String(),
			Subscribers:  g.groups.len(),
		}
	}
	write := func(w http.ResponseWriter, code int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		write(w, http.StatusOK, state())
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		st := state()
		code := http.StatusOK
		if !st.Ready {
			code = http.StatusServiceUnavailable
		}
		select {
		case <-g.draining:
			code = http.StatusServiceUnavailable
		default:
		}
		write(w, code, st)
	})
	mux.HandleFunc("GET /debug/state", func(w http.ResponseWriter, _ *http.Request) {
		write(w, http.StatusOK, state())
	})
	if g.cfg.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(g.cfg.Gatherer, promhttp.HandlerOpts{}))
	}
	return mux
}
