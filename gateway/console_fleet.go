package gateway

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"

	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
)

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
