package gateway

import (
	"bytes"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/confgate/confgate/internal/keyspace"
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

// configData is the config page: the folders and entries right under
// Prefix, in key order, from after After.
type configData struct {
	Prefix  string
	Crumbs  []crumb
	Error   string
	Items   []configItem
	Next    string // After of the next page, "" on the last
	Clipped string // why the page ended early
	Cursor  string
}

type crumb struct{ Name, Prefix string }

type configItem struct {
	Folder string // a folder: its prefix (ends with '/')
	Name   string // the folder or key name below Prefix
	Entry  *entryView
}

type entryView struct {
	Key         string
	ContentType string
	Version     string
	Size        int
	Kind        string // json, text or binary
	Value       string
	Note        string
	Headers     []headerView
}

type headerView struct{ Key, Value string }

func (c *console) config(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	d := configData{Prefix: q.Get("prefix")}
	d.Crumbs = crumbs(d.Prefix)
	if err := keyspace.ValidatePrefix(d.Prefix); err != nil {
		d.Error = err.Error()
		w.WriteHeader(http.StatusBadRequest)
		c.render(w, "config.html", page{Title: "Config", Nav: "config", Data: d})
		return
	}
	snap, err := c.g.src.Snapshot()
	if err != nil {
		d.Error = "no snapshot yet: " + err.Error()
		c.render(w, "config.html", page{Title: "Config", Nav: "config", Data: d})
		return
	}
	d.Cursor = snap.Cursor.String()
	sel, _ := keyspace.NewSelector([]string{d.Prefix})
	after := q.Get("after")
	budget := consolePageValues
	for {
		var folder string
		done := true
		snap.ScanAfter(sel, after, func(e *store.Entry) bool {
			if len(d.Items) >= consolePageItems || budget <= 0 {
				d.Next = after
				if budget <= 0 {
					d.Clipped = fmt.Sprintf("this page ends after %d MiB of values", consolePageValues>>20)
				}
				return false
			}
			rest := e.Key[len(d.Prefix):]
			if i := strings.IndexByte(rest, '/'); i >= 0 {
				folder = d.Prefix + rest[:i+1]
				d.Items = append(d.Items, configItem{Folder: folder, Name: rest[:i+1]})
				done = false
				return false
			}
			ev := viewEntry(e)
			budget -= len(ev.Value)
			d.Items = append(d.Items, configItem{Name: rest, Entry: ev})
			after = e.Key
			return true
		})
		if done {
			break
		}
		// Skip the folder's keys: keys are UTF-8, so no key under it
		// sorts after folder+"\xff".
		after = folder + "\xff"
	}
	c.render(w, "config.html", page{Title: "Config", Nav: "config", Data: d})
}

// crumbs are the links to each folder above prefix.
func crumbs(prefix string) []crumb {
	out := []crumb{{Name: "(all)", Prefix: ""}}
	for i := 0; i < len(prefix); {
		j := strings.IndexByte(prefix[i:], '/')
		if j < 0 {
			out = append(out, crumb{Name: prefix[i:], Prefix: prefix})
			break
		}
		out = append(out, crumb{Name: prefix[i : i+j+1], Prefix: prefix[:i+j+1]})
		i += j + 1
	}
	return out
}

// viewEntry is e as the page shows it: JSON indented, text as text,
// anything else as a hex dump; at most consoleValueBytes of it.
func viewEntry(e *store.Entry) *entryView {
	v := &entryView{Key: e.Key, ContentType: e.ContentType, Version: fmt.Sprintf("%d:%d", e.Partition, e.Offset), Size: len(e.Value)}
	for _, h := range e.Headers {
		v.Headers = append(v.Headers, headerView{Key: h.Key, Value: printable(h.Value, 1024)})
	}
	ct := strings.ToLower(strings.TrimSpace(strings.SplitN(e.ContentType, ";", 2)[0]))
	isJSON := ct == "application/json" || strings.HasSuffix(ct, "+json")
	switch {
	case isJSON && len(e.Value) <= consoleValueBytes && json.Valid(e.Value):
		var b bytes.Buffer
		_ = json.Indent(&b, e.Value, "", "  ")
		v.Kind = "json"
		v.Value = b.String()
		if b.Len() > consoleValueBytes {
			v.Value = clipUTF8(v.Value, consoleValueBytes)
			v.Note = fmt.Sprintf("indented, clipped at %d KiB", consoleValueBytes>>10)
		}
	case isJSON || isTextType(ct) || looksText(e.Value):
		v.Kind = "text"
		if isJSON {
			v.Kind = "json"
			if len(e.Value) <= consoleValueBytes {
				v.Note = "not valid JSON: shown as text"
			}
		}
		v.Value = strings.ToValidUTF8(clipUTF8(string(e.Value), consoleValueBytes), "\uFFFD")
		if len(e.Value) > consoleValueBytes {
			v.Note = fmt.Sprintf("%d bytes, clipped at %d KiB", len(e.Value), consoleValueBytes>>10)
		}
	default:
		v.Kind = "binary"
		n := min(len(e.Value), 4096)
		v.Value = hex.Dump(e.Value[:n])
		v.Note = fmt.Sprintf("binary, %d bytes: a hex dump of the first %d", len(e.Value), n)
	}
	return v
}

func isTextType(ct string) bool {
	if strings.HasPrefix(ct, "text/") {
		return true
	}
	switch ct {
	case "application/yaml", "application/x-yaml", "application/toml", "application/xml", "application/javascript", "application/x-www-form-urlencoded":
		return true
	}
	return strings.HasSuffix(ct, "+xml") || strings.HasSuffix(ct, "+yaml")
}

// looksText reports whether b (untyped) reads as text: UTF-8 without
// control characters other than whitespace.
func looksText(b []byte) bool {
	if len(b) > consoleValueBytes {
		b = b[:consoleValueBytes]
		for len(b) > 0 && !utf8.Valid(b) && len(b) > consoleValueBytes-4 {
			b = b[:len(b)-1]
		}
	}
	if !utf8.Valid(b) {
		return false
	}
	for _, r := range string(b) {
		if r < 0x20 && r != '\n' && r != '\r' && r != '\t' || r == 0x7f {
			return false
		}
	}
	return true
}

// clipUTF8 is s cut to at most n bytes, not inside a character.
func clipUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// printable is b as text when it reads as text, else as hex.
func printable(b []byte, n int) string {
	if looksText(b) {
		return clipUTF8(string(b), n)
	}
	return "0x" + hex.EncodeToString(b[:min(len(b), n/2)])
}

// fleetRow is one client in the fleet table and in /console/fleet.json.
type fleetRow struct {
	ID         string            `json:"id"`
	Service    string            `json:"service"`
	Labels     map[string]string `json:"labels"`
	LabelText  string            `json:"label_text"`
	Gateway    string            `json:"gateway"`
	State      string            `json:"state"`
	Lag        int64             `json:"lag_records"`
	LastReport string            `json:"last_report"`
	Rejections int               `json:"rejections"`
}

// fleetStates are the state filter's values.
var fleetStates = []string{"in_sync", "behind", "diverged", "not_reporting", "unknown"}

func stateName(s confgatev1.FleetState) string {
	n := strings.ToLower(strings.TrimPrefix(s.String(), "FLEET_STATE_"))
	if n == "unspecified" {
		return "unknown"
	}
	return n
}

type fleetData struct {
	On       bool
	Error    string
	Service  string
	State    string
	States   []string
	Services []string
	Rows     []fleetRow
	Total    int
}

// fleetRows is the fleet view under the filters; err says why there is
// none.
func (c *console) fleetRows(service, state string) (fleetData, *confgatev1.GetFleetResponse) {
	d := fleetData{On: c.g.cfg.Fleet != nil, Service: service, State: state, States: fleetStates}
	if !d.On {
		d.Error = "this gateway keeps no fleet view (serve --fleet)"
		return d, nil
	}
	if !c.g.src.Ready() {
		d.Error = "not caught up with the topic yet"
		return d, nil
	}
	all := c.g.fleetView("", "", nil)
	for _, s := range all.GetServices() {
		d.Services = append(d.Services, s.GetService())
	}
	for _, fc := range all.GetClients() {
		d.Total++
		ci := fc.GetClient()
		st := stateName(fc.GetState())
		if service != "" && ci.GetService() != service || state != "" && st != state {
			continue
		}
		row := fleetRow{ID: ci.GetClientId(), Service: ci.GetService(), Labels: ci.GetLabels(), Gateway: fc.GetGateway(), State: st,
			Lag: fc.GetLagRecords(), Rejections: len(fc.GetRejections())}
		if row.Labels == nil {
			row.Labels = map[string]string{}
		}
		row.LabelText = labelText(row.Labels)
		row.LastReport = "never"
		if ms := fc.GetLastReportUnixMs(); ms != 0 {
			row.LastReport = time.UnixMilli(ms).UTC().Format("2006-01-02 15:04:05Z")
		}
		d.Rows = append(d.Rows, row)
	}
	slices.SortFunc(d.Rows, func(a, b fleetRow) int { return strings.Compare(a.ID, b.ID) })
	return d, all
}

func labelText(l map[string]string) string {
	ks := make([]string, 0, len(l))
	for k := range l {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	for i, k := range ks {
		ks[i] = k + "=" + l[k]
	}
	return strings.Join(ks, " ")
}

func (c *console) fleet(w http.ResponseWriter, r *http.Request) {
	d, _ := c.fleetRows(r.URL.Query().Get("service"), r.URL.Query().Get("state"))
	c.render(w, "fleet.html", page{Title: "Fleet", Nav: "fleet", Data: d})
}

func (c *console) fleetJSON(w http.ResponseWriter, r *http.Request) {
	d, _ := c.fleetRows(r.URL.Query().Get("service"), r.URL.Query().Get("state"))
	w.Header().Set("Content-Type", "application/json")
	if d.Error != "" {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	if d.Rows == nil {
		d.Rows = []fleetRow{}
	}
	_ = json.NewEncoder(w).Encode(struct {
		Error    string     `json:"error,omitempty"`
		Total    int        `json:"total"`
		Services []string   `json:"services"`
		Clients  []fleetRow `json:"clients"`
	}{d.Error, d.Total, d.Services, d.Rows})
}

type clientData struct {
	ID     string
	Error  string
	Row    fleetRow
	Client *confgatev1.FleetClient
	Cursor string
	Digest string
	Since  string
}

func (c *console) client(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("id")
	d := clientData{ID: id}
	fd, all := c.fleetRows("", "")
	switch {
	case fd.Error != "":
		d.Error = fd.Error
	default:
		for _, fc := range all.GetClients() {
			if fc.GetClient().GetClientId() == id {
				d.Client = fc
			}
		}
		for _, row := range fd.Rows {
			if row.ID == id {
				d.Row = row
			}
		}
		if d.Client == nil {
			d.Error = "no connected client has this ID"
			w.WriteHeader(http.StatusNotFound)
		} else {
			d.Cursor = base64.RawURLEncoding.EncodeToString(d.Client.GetAppliedCursor())
			d.Digest = hex.EncodeToString(d.Client.GetDigest())
			d.Since = time.UnixMilli(d.Client.GetConnectedSinceUnixMs()).UTC().Format("2006-01-02 15:04:05Z")
		}
	}
	c.render(w, "client.html", page{Title: "Client", Nav: "fleet", Data: d})
}

// serveEvents streams a "tick" every second (the overview's figures) and
// a "changed" when the store applies a batch (at most every
// consoleChangedGap), until the browser leaves or the gateway drains. At
// most consoleMaxEvents streams are open at once.
func (c *console) serveEvents(w http.ResponseWriter, r *http.Request) {
	if c.events.Add(1) > consoleMaxEvents {
		c.events.Add(-1)
		w.Header().Set("Retry-After", "10")
		http.Error(w, fmt.Sprintf("more than %d console event streams are open on this gateway", consoleMaxEvents), http.StatusServiceUnavailable)
		return
	}
	defer c.events.Add(-1)
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	send := func(event string, v any) bool {
		b, _ := json.Marshal(v)
		_ = rc.SetWriteDeadline(time.Now().Add(consoleWriteDeadline))
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	// The channel is taken before the cursor is read, so a batch applied
	// after the read closes it.
	changed := c.g.src.Changed()
	if !send("tick", c.figures()) {
		return
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var last time.Time
	for {
		select {
		case <-r.Context().Done():
			return
		case <-c.g.draining:
			return
		case <-tick.C:
			if !send("tick", c.figures()) {
				return
			}
		case <-changed:
			if wait := consoleChangedGap - time.Since(last); wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-r.Context().Done():
					t.Stop()
					return
				case <-c.g.draining:
					t.Stop()
					return
				case <-t.C:
				}
			}
			changed = c.g.src.Changed()
			last = time.Now()
			if !send("changed", map[string]string{"cursor": c.g.src.Status().Cursor.String()}) {
				return
			}
		}
	}
}
