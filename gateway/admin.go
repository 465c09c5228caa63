package gateway

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/pprof"

	"github.com/confgate/confgate/internal/keyspace"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
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

// debugStateJSON is the body of /debug/state: the status, and the
// applied entries that break their schema (foreign writes: the gateways
// refuse such writes) and schema documents that do not compile, by key,
// with the rule broken. The endpoint is guarded like /metrics: a caller
// that may read every key.
type debugStateJSON struct {
	stateJSON
	SchemaViolations map[string]string `json:"schema_violations,omitempty"`
	InvalidSchemas   map[string]string `json:"invalid_schemas,omitempty"`
}

// AdminHandler serves /healthz (alive, with status), /readyz (200 only
// when caught up; a stale gateway stays ready and serves its last state),
// /debug/state (cursor and digest, to compare gateways), /metrics and
// /debug/pprof/ (Go's profiles).
//
// The open endpoints say nothing the ACL guards: no key, no value, no
// principal (counts, cursors and the state digest only; the digest sums
// per-entry hashes of the whole state, so it confirms no single value).
// /debug/state also names the keys whose applied value breaks its schema. With an
// Authenticator configured, /debug/state and /metrics also require a
// caller it accepts (a bearer token in the Authorization header, or a
// verified client certificate when the admin listener serves TLS, see
// Config.AdminTLS) that, when a policy is set, may read every key; and
// /healthz and /readyz, which load balancers probe without credentials,
// say only ready and stale.
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
	guarded := g.cfg.Authenticator != nil && !g.cfg.Authenticator.Open()
	// probe is what the open endpoints show.
	probe := func() any {
		st := state()
		if guarded {
			return struct {
				Ready bool `json:"ready"`
				Stale bool `json:"stale"`
			}{st.Ready, st.Stale}
		}
		return st
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		write(w, http.StatusOK, probe())
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
		if guarded {
			write(w, code, probe())
			return
		}
		write(w, code, st)
	})
	mux.Handle("GET /debug/state", g.adminAuth(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		values, schemas := g.src.SchemaProblems()
		write(w, http.StatusOK, debugStateJSON{state(), values, schemas})
	})))
	mux.Handle("GET /debug/fleet", g.adminAuth(http.HandlerFunc(g.serveFleet)))
	mux.Handle("GET /console/", g.adminAuth(g.consoleHandler())) // the web console (console.go)
	if g.cfg.Gatherer != nil {
		mux.Handle("GET /metrics", g.adminAuth(promhttp.HandlerFor(g.cfg.Gatherer, promhttp.HandlerOpts{})))
	}
	// Go's profiles, to see where CPU and memory go under load (the load
	// tool's figures in docs/benchmarks.md were read this way). Stacks
	// only, never a key or value; guarded like /metrics.
	mux.Handle("GET /debug/pprof/", g.adminAuth(http.HandlerFunc(pprof.Index)))
	mux.Handle("GET /debug/pprof/cmdline", g.adminAuth(http.HandlerFunc(pprof.Cmdline)))
	mux.Handle("GET /debug/pprof/profile", g.adminAuth(http.HandlerFunc(pprof.Profile)))
	mux.Handle("GET /debug/pprof/symbol", g.adminAuth(http.HandlerFunc(pprof.Symbol)))
	mux.Handle("GET /debug/pprof/trace", g.adminAuth(http.HandlerFunc(pprof.Trace)))
	return mux
}

// adminAuth lets a request through when no Authenticator is configured, or
// when its credentials (Authorization: Bearer, or a verified client
// certificate) name a non-anonymous principal that, under the policy, may
// read every key: these endpoints describe the whole state.
func (g *Gateway) adminAuth(next http.Handler) http.Handler {
	a := g.cfg.Authenticator
	if a == nil || a.Open() {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if h := r.Header.Values("Authorization"); len(h) > 0 {
			ctx = metadata.NewIncomingContext(ctx, metadata.MD{"authorization": h})
		}
		if r.TLS != nil {
			ctx = peer.NewContext(ctx, &peer.Peer{AuthInfo: credentials.TLSInfo{State: *r.TLS}})
		}
		p, err := a.Authenticate(ctx)
		if err == nil && p.IsAnonymous() {
			err = errors.New("the admin endpoints need a credential: anonymous callers are not let in")
		}
		if err != nil {
			g.m.authFailures.WithLabelValues("admin").Inc()
			w.Header().Set("WWW-Authenticate", `Bearer realm="confgate-admin"`)
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		if pw := g.cfg.Policy; pw != nil {
			if err := pw.Policy().CanRead(p, keyspace.Selector{}); err != nil {
				g.m.denied.WithLabelValues(r.URL.Path).Inc()
				http.Error(w, fmt.Sprintf("%v: the admin endpoints describe the whole state, so they need read access to every key", err), http.StatusForbidden)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}
