package monitoringcheck

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	promds "github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// datasourceUID is how every panel and query names its datasource: the
// dashboard's datasource variable, so an import picks the Prometheus.
const datasourceUID = "${datasource}"

// filters are the matchers every selector of a panel carries, so that the
// dashboard's variables narrow every panel.
var filters = map[string]string{"job": "$job", "topic": "$topic", "instance": "$instance"}

// gridColumns is the width of Grafana's grid.
const gridColumns = 24

func init() {
	// Panel options, field configs and queries are decoded by their
	// plugin's schema (timeseries, stat, table, prometheus, ...).
	plugins.RegisterDefaultPlugins()
}

// strictErr is the error of a strict decode, nil when there is none:
// the SDK returns its error list as a typed nil when it is empty.
func strictErr(err error) error {
	var be cog.BuildErrors
	if errors.As(err, &be) && len(be) == 0 {
		return nil
	}
	return err
}

// panelInfo is one panel of the dashboard, rows included.
type panelInfo struct {
	id       uint32
	title    string
	row      bool
	nested   bool // inside a row's panels (a collapsed row)
	grid     *dashboard.GridPos
	problems []string // what the panel lacks that every panel needs
	panel    *dashboard.Panel
}

// checkDashboard returns what is wrong with a dashboard's JSON, and the
// titles of its panels (rows left out).
func checkDashboard(raw []byte, c *checker) (problems, titles []string) {
	report := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	var strict dashboard.Dashboard
	if err := strictErr(strict.UnmarshalJSONStrict(raw)); err != nil {
		report("not a valid Grafana dashboard: %v", err)
		return problems, nil
	}
	// The strict decode checks every panel but, in SDK v0.0.22, leaves
	// each one out of the result (a panel's empty error list comes back as
	// a non-nil error, and the panel is dropped on it): the checks below
	// read the panels of the plain decode.
	var d dashboard.Dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		report("not a valid Grafana dashboard: %v", err)
		return problems, nil
	}
	if err := d.Validate(); err != nil {
		report("not a valid Grafana dashboard: %v", err)
	}
	if d.Uid == nil || *d.Uid == "" || d.Title == nil || *d.Title == "" {
		report("the dashboard needs a uid and a title")
	}
	checkVariables(d.Templating.List, c, report)

	var panels []panelInfo
	for _, p := range d.Panels {
		switch {
		case p.RowPanel != nil:
			r := p.RowPanel
			panels = append(panels, panelInfo{id: r.Id, title: deref(r.Title), row: true, grid: r.GridPos})
			for i := range r.Panels {
				panels = append(panels, panelOf(&r.Panels[i], true))
			}
		case p.Panel != nil:
			panels = append(panels, panelOf(p.Panel, false))
		}
	}
	if len(panels) == 0 {
		report("the dashboard has no panels")
	}
	ids := map[uint32]string{}
	for i, p := range panels {
		name := fmt.Sprintf("panel %d %q", p.id, p.title)
		for _, pr := range p.problems {
			report("%s: %s", name, pr)
		}
		if other, dup := ids[p.id]; dup {
			report("%s: id %d is also panel %q's", name, p.id, other)
		}
		ids[p.id] = p.title
		if p.grid == nil || p.grid.W == 0 || p.grid.H == 0 || p.grid.X+p.grid.W > gridColumns {
			report("%s: gridPos must be inside the %d columns, with a size", name, gridColumns)
		} else if !p.nested {
			// Panels of a collapsed row are hidden: only the visible
			// layout must not overlap.
			for _, q := range panels[:i] {
				if !q.nested && q.grid != nil && overlap(p.grid, q.grid) {
					report("%s overlaps panel %d %q", name, q.id, q.title)
				}
			}
		}
		if p.row {
			continue
		}
		titles = append(titles, p.title)
		checkPanel(name, p.panel, c, report)
	}
	return problems, titles
}

func panelOf(p *dashboard.Panel, nested bool) panelInfo {
	pi := panelInfo{title: deref(p.Title), nested: nested, grid: p.GridPos, panel: p}
	if p.Id != nil {
		pi.id = *p.Id
	} else {
		pi.problems = append(pi.problems, "no id")
	}
	if pi.title == "" || deref(p.Description) == "" {
		pi.problems = append(pi.problems, "every panel needs a title and a description (the panel's help)")
	}
	return pi
}

func checkPanel(name string, p *dashboard.Panel, c *checker, report func(string, ...any)) {
	if !isOurDatasource(p.Datasource) {
		report("%s: its datasource must be the %s variable of type prometheus", name, datasourceUID)
	}
	if len(p.Targets) == 0 {
		report("%s: no targets", name)
	}
	refIDs := map[string]bool{}
	for i, t := range p.Targets {
		q, ok := t.(*promds.Dataquery)
		if !ok {
			report("%s: target %d is not a Prometheus query (%T)", name, i, t)
			continue
		}
		ref := deref(q.RefId)
		if ref == "" || refIDs[ref] {
			report("%s: target %d needs a refId of its own", name, i)
		}
		refIDs[ref] = true
		if !isOurDatasource(q.Datasource) {
			report("%s: target %s: its datasource must be the %s variable", name, ref, datasourceUID)
		}
		if q.Expr == "" {
			report("%s: target %s has no expression", name, ref)
			continue
		}
		for _, pr := range c.check(q.Expr) {
			report("%s: target %s: %s", name, ref, pr)
		}
		if e, err := c.parse(q.Expr); err == nil {
			for _, vs := range selectorsIn(e) {
				if missing := missingFilters(vs.LabelMatchers); len(missing) > 0 {
					report("%s: target %s: %s does not filter by %v", name, ref, vs, missing)
				}
			}
		}
	}
}

// missingFilters lists the dashboard filters a selector's matchers lack.
func missingFilters(ms []*labels.Matcher) []string {
	var missing []string
	for l, v := range filters {
		if !slices.ContainsFunc(ms, func(m *labels.Matcher) bool {
			return m.Name == l && m.Type == labels.MatchRegexp && m.Value == v
		}) {
			missing = append(missing, fmt.Sprintf("%s=~%q", l, v))
		}
	}
	slices.Sort(missing)
	return missing
}

// labelValues is the one variable query form the dashboard uses.
var labelValues = regexp.MustCompile(`^label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$`)

// checkVariables wants the datasource variable and the job, topic and
// instance filters, each a label_values query of an exported metric and
// one of its labels.
func checkVariables(vars []dashboard.VariableModel, c *checker, report func(string, ...any)) {
	seen := map[string]bool{}
	for _, v := range vars {
		seen[v.Name] = true
		switch v.Type {
		case dashboard.VariableTypeDatasource:
			if v.Name != "datasource" || v.Query == nil || deref(v.Query.String) != "prometheus" {
				report("variable %s: the datasource variable must be named datasource and list prometheus datasources", v.Name)
			}
		case dashboard.VariableTypeQuery:
			checkQueryVariable(v, c, report)
		default:
			report("variable %s: unexpected type %s", v.Name, v.Type)
		}
	}
	for _, want := range []string{"datasource", "job", "topic", "instance"} {
		if !seen[want] {
			report("no %s variable", want)
		}
	}
}

func checkQueryVariable(v dashboard.VariableModel, c *checker, report func(string, ...any)) {
	if !isOurDatasource(v.Datasource) {
		report("variable %s: its datasource must be the %s variable", v.Name, datasourceUID)
	}
	var query string
	if v.Query != nil {
		if q, ok := v.Query.Map["query"].(string); ok {
			query = q
		} else {
			query = deref(v.Query.String)
		}
	}
	if query == "" || query != deref(v.Definition) {
		report("variable %s: its query and definition must be the same label_values query", v.Name)
		return
	}
	m := labelValues.FindStringSubmatch(query)
	if m == nil {
		report("variable %s: %q is not label_values(selector, label)", v.Name, query)
		return
	}
	for _, pr := range c.check(m[1]) {
		report("variable %s: %s", v.Name, pr)
	}
	e, err := c.parse(m[1])
	if err != nil {
		return
	}
	vs, ok := e.(*parser.VectorSelector)
	if !ok {
		report("variable %s: %s is not a selector", v.Name, m[1])
		return
	}
	if s, ok := c.inv[metricName(vs)]; ok && !s.labels[m[2]] && targetLabels[m[2]] == "" {
		report("variable %s: %s has no label %q", v.Name, metricName(vs), m[2])
	}
}

func isOurDatasource(ref *dashboard.DataSourceRef) bool {
	return ref != nil && deref(ref.Type) == "prometheus" && deref(ref.Uid) == datasourceUID
}

func overlap(a, b *dashboard.GridPos) bool {
	return a.X < b.X+b.W && b.X < a.X+a.W && a.Y < b.Y+b.H && b.Y < a.Y+a.H
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
