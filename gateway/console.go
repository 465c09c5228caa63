package gateway

import (
	"bytes"
	"embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"github.com/confgate/confgate/store"
)

// The web console: read-only pages over this gateway's state on the admin
// listener, under /console/, guarded by adminAuth like /debug/state (they
// show every key and value). Templates and static files are embedded; no
// build step. See docs/console.md.
//
//	/console/               overview: status, throughput, fleet summary
//	/console/config         prefix tree and entries (?prefix=&after=)
//	/console/fleet          fleet table (?service=&state=)
//	/console/fleet.json     the same rows as JSON, for live updates
//	/console/client         one client (?id=)
//	/console/events         server-sent events: tick (1/s), changed
//	/console/static/        CSS and JS
//
// By job: this file routes, sets the security headers, measures the
// throughput and renders the shared layout and the overview;
// console_config.go is the config tree page, console_fleet.go the fleet
// and client pages and fleet.json, console_events.go the event stream and
// its bound.

//go:embed console
var consoleFS embed.FS

// Bounds of the console.
const (
	consoleMaxEvents     = 100      // open /console/events streams per gateway
	consolePageItems     = 1000     // folders and entries per config page
	consoleValueBytes    = 64 << 10 // shown of one value
	consolePageValues    = 4 << 20  // shown of all values on one page
	consoleChangedGap    = 250 * time.Millisecond
	consoleWriteDeadline = 10 * time.Second
)

var consoleTemplates = template.Must(template.New("").Funcs(template.FuncMap{
	"ms": func(ms int64) string {
		if ms == 0 {
			return "never"
		}
		return time.UnixMilli(ms).UTC().Format("2006-01-02 15:04:05Z")
	},
}).ParseFS(consoleFS, "console/*.html"))

// console is the console's state: the SSE streams open and the samples of
// the applied cursor the throughput is computed from.
type console struct {
	g      *Gateway
	events atomic.Int64

	mu      sync.Mutex
	samples []rateSample
}

type rateSample struct {
	at    time.Time
	topic string
	sum   int64
}

// rate is the records per second the cursor advanced over the last ten
// seconds or so (offsets, so control records and skipped records count);
// ok is false until two samples a moment apart exist. Sampled when asked
// (each SSE tick), so no goroutine runs while nobody looks.
func (c *console) rate(st store.Status) (float64, bool) {
	now := time.Now()
	s := rateSample{at: now, topic: st.Topic.String(), sum: st.Cursor.Sum()}
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := len(c.samples); n > 0 && c.samples[n-1].topic != s.topic {
		c.samples = c.samples[:0]
	}
	if n := len(c.samples); n == 0 || now.Sub(c.samples[n-1].at) >= 500*time.Millisecond {
		c.samples = append(c.samples, s)
	}
	for len(c.samples) > 2 && now.Sub(c.samples[0].at) > 10*time.Second {
		c.samples = c.samples[1:]
	}
	if len(c.samples) < 2 {
		return 0, false
	}
	a, b := c.samples[0], c.samples[len(c.samples)-1]
	dt := b.at.Sub(a.at).Seconds()
	if dt <= 0 {
		return 0, false
	}
	return float64(max(0, b.sum-a.sum)) / dt, true
}

// consoleHandler serves the console; AdminHandler mounts it under
// /console/ behind adminAuth.
func (g *Gateway) consoleHandler() http.Handler {
	c := &console{g: g}
	static, _ := fs.Sub(consoleFS, "console/static")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /console/{$}", c.overview)
	mux.HandleFunc("GET /console/config", c.config)
	mux.HandleFunc("GET /console/fleet", c.fleet)
	mux.HandleFunc("GET /console/fleet.json", c.fleetJSON)
	mux.HandleFunc("GET /console/client", c.client)
	mux.HandleFunc("GET /console/events", c.serveEvents)
	mux.Handle("GET /console/static/", http.StripPrefix("/console/static/", http.FileServerFS(static)))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		mux.ServeHTTP(w, r)
	})
}

// overviewData is the overview's figures, also each SSE tick's body.
type overviewData struct {
	Ready        bool    `json:"ready"`
	Stale        bool    `json:"stale"`
	LagRecords   int64   `json:"lag_records"`
	Cursor       string  `json:"cursor"`
	Offsets      string  `json:"offsets"`
	Digest       string  `json:"digest"`
	Entries      int     `json:"entries"`
	Tombstones   int     `json:"tombstones"`
	Groups       int     `json:"selector_groups"`
	Rate         string  `json:"rate"`
	RateValue    float64 `json:"rate_value"`
	HistoryFloor string  `json:"history_floor"`
	Time         string  `json:"time"`
}

func (c *console) figures() overviewData {
	st := c.g.src.Status()
	d := overviewData{
		Ready:        st.Ready,
		Stale:        st.Stale,
		LagRecords:   st.LagRecords,
		Cursor:       st.Cursor.String(),
		Offsets:      offsets(st.Cursor.Offsets),
		Digest:       base64.RawURLEncoding.EncodeToString(st.Digest),
		Entries:      st.Entries,
		Tombstones:   st.Tombstones,
		Groups:       c.g.groups.len(),
		HistoryFloor: st.HistoryFloor.String(),
		Rate:         "measuring…",
		Time:         time.Now().UTC().Format("15:04:05Z"),
	}
	if r, ok := c.rate(st); ok {
		d.RateValue = r
		d.Rate = fmt.Sprintf("%.1f records/s", r)
	}
	return d
}

// offsets is a cursor's offsets as p0:o0 p1:o1 ...
func offsets(o []int64) string {
	var b strings.Builder
	for p, off := range o {
		if p > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%d:%d", p, off)
	}
	return b.String()
}

// page is what every page's layout needs.
type page struct {
	Title string
	Nav   string
	Now   overviewData
	Fleet bool // the fleet view is on
	Data  any
}

func (c *console) render(w http.ResponseWriter, name string, p page) {
	p.Now = c.figures()
	p.Fleet = c.g.cfg.Fleet != nil
	var buf bytes.Buffer
	if err := consoleTemplates.ExecuteTemplate(&buf, name, p); err != nil {
		c.g.log.Error("console: rendering a page", "page", name, "err", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(buf.Bytes())
}

func (c *console) overview(w http.ResponseWriter, _ *http.Request) {
	var services []*confgatev1.ServiceSummary
	if c.g.cfg.Fleet != nil && c.g.src.Ready() {
		services = c.g.fleetView("", "", nil).GetServices()
	}
	c.render(w, "overview.html", page{Title: "Overview", Nav: "overview", Data: services})
}
