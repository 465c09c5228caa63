package monitoringcheck

import (
	"encoding/json"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"
)

// wantProblems fails unless problems are exactly one per want, each
// containing it, in order; no want, no problem.
func wantProblems(t *testing.T, problems []string, want ...string) {
	t.Helper()
	ok := len(problems) == len(want)
	for i := 0; ok && i < len(want); i++ {
		ok = strings.Contains(problems[i], want[i])
	}
	if !ok {
		t.Errorf("problems:\n  %s\nwant (containing, in order):\n  %s", strings.Join(problems, "\n  "), strings.Join(want, "\n  "))
	}
}

// describedOnly finds the vectors without series, with their label
// names (constant, variable, constrained), and leaves out what the
// registry gathers.
func TestDescribedOnly(t *testing.T) {
	reg := prometheus.NewRegistry()
	gathered := prometheus.NewCounter(prometheus.CounterOpts{Name: "confgate_a_total", Help: "h"})
	reg.MustRegister(
		gathered,
		prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "confgate_b", Help: `with "quotes", }, variableLabels: {x} and = signs`, ConstLabels: prometheus.Labels{"c": `v"},`}}, []string{"x", "y"}),
		prometheus.V2.NewCounterVec(prometheus.CounterVecOpts{
			CounterOpts:    prometheus.CounterOpts{Name: "confgate_c_total", Help: "h"},
			VariableLabels: prometheus.ConstrainedLabels{{Name: "m", Constraint: strings.ToLower}},
		}),
		prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "confgate_d_seconds", Help: "h"}, []string{"method"}),
	)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]*family{}
	for _, mf := range mfs {
		have[mf.GetName()] = &family{}
	}
	got, err := describedOnly(reg, have)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{"confgate_b": {"c", "x", "y"}, "confgate_c_total": {"m"}, "confgate_d_seconds": {"method"}}
	if len(got) != len(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for name, ls := range want {
		if g := slices.Sorted(maps.Keys(got[name])); !slices.Equal(g, ls) {
			t.Errorf("%s: labels %v, want %v", name, g, ls)
		}
	}
}

// The checker on expressions over the real inventory.
func TestChecker(t *testing.T) {
	c := newChecker(exported)
	for _, tc := range []struct {
		name, expr string
		want       []string
	}{
		{"counter rate by a label of the scrape", `sum by (instance) (rate(confgate_store_records_applied_total{job=~"$job"}[$__rate_interval]))`, nil},
		{"scrape labels", `confgate_store_ready{namespace="a", pod="b", topic="c"}`, nil},
		{"group_left a label of the right side", `confgate_store_ready * on (job, instance) group_left (version) confgate_build_info`, nil},
		{"quantile keeping le", `histogram_quantile(0.9, sum by (le, method) (rate(confgate_gateway_request_seconds_bucket[5m])))`, nil},
		{"subquery", `max_over_time(rate(confgate_store_records_applied_total[5m])[1h:1m])`, nil},
		{"unknown metric", `confgate_store_nope`, []string{"no gateway exports a metric confgate_store_nope"}},
		{"a histogram's family name", `confgate_gateway_request_seconds`, []string{"no gateway exports"}},
		{"buckets of a gauge", `confgate_store_ready_bucket`, []string{"no gateway exports"}},
		{"unknown label", `confgate_store_ready{partition="0"}`, []string{`has no label "partition"`}},
		{"le on a count", `confgate_gateway_request_seconds_count{le="1"}`, []string{`has no label "le"`}},
		{"grouping by a label it lacks", `sum by (reason) (confgate_store_lag_records)`, []string{`names label "reason"`}},
		{"matching on a label neither side has", `confgate_store_ready * on (partition) confgate_store_stale`, []string{`vector matching names label "partition"`}},
		{"rate of a gauge", `rate(confgate_store_ready[5m])`, []string{"rate takes a counter"}},
		{"deriv of a counter", `deriv(confgate_store_fetch_errors_total[5m])`, []string{"deriv takes a gauge"}},
		{"quantile dropping le", `histogram_quantile(0.9, sum by (method) (rate(confgate_gateway_request_seconds_bucket[5m])))`, []string{"must keep le"}},
		{"quantile of counts", `histogram_quantile(0.9, rate(confgate_gateway_request_seconds_count[5m]))`, []string{"needs a histogram's _bucket"}},
		{"label_replace", `label_replace(confgate_store_ready, "x", "$1", "job", "(.*)")`, []string{"cannot follow"}},
		{"no metric name", `{job="confgate"}`, []string{"must name one metric"}},
		{"syntax", `sum(`, []string{"does not parse"}},
		// Label values.
		{"any value of an open label", `confgate_store_lag_records{partition="7"}`, nil},
		{"a derived value the exercise did not produce", `confgate_gateway_snapshots_total{reason="slow_subscriber"}`, nil},
		{"listed values, dots escaped", `confgate_gateway_requests_total{method=~"/confgate\\.v1\\.ConfigService/(Put|Apply)", code!~"OK|Canceled"}`, nil},
		{"a value no gateway gives", `confgate_gateway_resumes_total{outcome="resets"}`, []string{`no gateway gives confgate_gateway_resumes_total the outcome value "resets"`}},
		{"a code spelled as the API docs spell it", `confgate_gateway_requests_total{code="UNAVAILABLE"}`, []string{`the code value "UNAVAILABLE"`}},
		{"a negative matcher on a value that never occurs", `confgate_gateway_fleet_clients{state!="insync"}`, []string{`the state value "insync"`}},
		{"a listed value no gateway gives", `confgate_gateway_requests_total{method=~"/confgate\\.v1\\.ConfigService/(Put|Delet)"}`, []string{`the method value "/confgate.v1.ConfigService/Delet"`}},
		{"a regular expression that lists no values", `confgate_gateway_requests_total{method=~"/confgate.v1.ConfigService/Put"}`, []string{"must list its values"}},
		{"a label with no value known", `confgate_gateway_panics_total{method="/confgate.v1.ConfigService/Put"}`, []string{`no value of confgate_gateway_panics_total's label "method" is known`}},
	} {
		t.Run(tc.name, func(t *testing.T) { wantProblems(t, c.check(tc.expr), tc.want...) })
	}
}

// The dashboard checks find each kind of problem in a copy of the real
// dashboard changed in one place.
func TestDashboardChecks(t *testing.T) {
	raw := read(t, dashboardFile)
	c := newChecker(exported)
	// panels[0] is the first row, panels[1] and [2] its first two panels.
	panel := func(d map[string]any, i int) map[string]any { return d["panels"].([]any)[i].(map[string]any) }
	target := func(d map[string]any, i int) map[string]any {
		return panel(d, i)["targets"].([]any)[0].(map[string]any)
	}
	variable := func(d map[string]any, i int) map[string]any {
		return d["templating"].(map[string]any)["list"].([]any)[i].(map[string]any)
	}
	for _, tc := range []struct {
		name   string
		change func(d map[string]any)
		want   []string
	}{
		{"as it is", func(map[string]any) {}, nil},
		{"duplicate id", func(d map[string]any) { panel(d, 2)["id"] = panel(d, 1)["id"] }, []string{"is also panel"}},
		{"no datasource", func(d map[string]any) { delete(panel(d, 1), "datasource") }, []string{"its datasource must be the ${datasource} variable"}},
		{"a fixed datasource on a query", func(d map[string]any) {
			target(d, 1)["datasource"] = map[string]any{"type": "prometheus", "uid": "P1809F7CD0C75ACF3"}
		}, []string{"target A: its datasource"}},
		{"no targets", func(d map[string]any) { panel(d, 1)["targets"] = []any{} }, []string{"no targets"}},
		{"no description", func(d map[string]any) { delete(panel(d, 1), "description") }, []string{"needs a title and a description"}},
		{"overlapping panels", func(d map[string]any) { panel(d, 2)["gridPos"] = panel(d, 1)["gridPos"] }, []string{"overlaps panel"}},
		{"off the grid", func(d map[string]any) {
			// Stale gateways at x=22, w=4: also over Build versions (16 to 24).
			panel(d, 2)["gridPos"].(map[string]any)["x"] = 22
		}, []string{"inside the 24 columns", `panel 6 "Build versions" overlaps panel 3`}},
		{"an unknown option", func(d map[string]any) { panel(d, 1)["options"].(map[string]any)["legendd"] = true }, []string{"not a valid Grafana dashboard"}},
		{"a selector without the instance filter", func(d map[string]any) {
			target(d, 1)["expr"] = `sum(confgate_store_ready{job=~"$job", topic=~"$topic"})`
		}, []string{`does not filter by [instance=~"$instance"]`}},
		{"an unknown metric", func(d map[string]any) {
			target(d, 1)["expr"] = `sum(confgate_store_readiness{job=~"$job", topic=~"$topic", instance=~"$instance"})`
		}, []string{"no gateway exports a metric confgate_store_readiness"}},
		{"no instance variable", func(d map[string]any) {
			l := d["templating"].(map[string]any)
			l["list"] = l["list"].([]any)[:3]
		}, []string{"no instance variable"}},
		{"a variable of a label the metric lacks", func(d map[string]any) {
			q := `label_values(confgate_build_info{job=~"$job"}, reason)`
			variable(d, 2)["definition"] = q
			variable(d, 2)["query"].(map[string]any)["query"] = q
		}, []string{`confgate_build_info has no label "reason"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d map[string]any
			if err := json.Unmarshal(raw, &d); err != nil {
				t.Fatal(err)
			}
			tc.change(d)
			b, err := json.Marshal(d)
			if err != nil {
				t.Fatal(err)
			}
			problems, _ := checkDashboard(b, c)
			wantProblems(t, problems, tc.want...)
		})
	}
}

// The rule checks find each kind of problem in a copy of the real rules
// changed in one place.
func TestRuleChecks(t *testing.T) {
	raw := string(read(t, filepath.Join(rulesDir, rulesName)))
	anchors := anchorsOf(string(read(t, alertsDoc)))
	c := newChecker(exported)
	for _, tc := range []struct {
		name      string
		old, new  string // replaced once in the rules
		noAnchors bool   // docs/alerts.md without the stale section
		want      []string
	}{
		{name: "as they are"},
		{name: "unknown severity", old: "severity: critical", new: "severity: page", want: []string{`ConfgateNoGatewayReady: severity "page"`}},
		{name: "runbook elsewhere", old: "alerts.md#confgatelaggrowing", new: "alerts.md#lag", want: []string{"ConfgateLagGrowing: runbook_url must be"}},
		{name: "runbook section missing", noAnchors: true, want: []string{"ConfgateGatewayStale: runbook_url must be"}},
		{name: "no summary", old: `summary: "confgate gateway {{ $labels.instance }} is stale"`, new: "", want: []string{"ConfgateGatewayStale: no summary annotation"}},
		{name: "label the metric lacks", old: `{outcome="reset"}`, new: `{result="reset"}`, want: []string{`has no label "result"`}},
		{name: "a value no gateway gives", old: `{outcome="reset"}`, new: `{outcome="rest"}`, want: []string{`the outcome value "rest"`}},
		{name: "a regular expression with unescaped dots", old: `method=~"/confgate\\.v1\\.ConfigService/(Put|Delete|Apply)", code=~"Unavailable`,
			new: `method=~"/confgate.v1.ConfigService/(Put|Delete|Apply)", code=~"Unavailable`, want: []string{"must list its values"}},
		{name: "unknown field", old: "for: 15m", new: "fore: 15m", want: []string{"field fore not found"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rules := raw
			if tc.old != "" {
				if !strings.Contains(rules, tc.old) {
					t.Fatalf("the rules do not contain %q", tc.old)
				}
				rules = strings.Replace(rules, tc.old, tc.new, 1)
			}
			a := anchors
			if tc.noAnchors {
				a = map[string]bool{}
				for k := range anchors {
					a[k] = k != "confgategatewaystale"
				}
			}
			_, problems := checkRules([]byte(rules), a, c)
			wantProblems(t, problems, tc.want...)
		})
	}
}

// The rule-test checks find each kind of gap in a copy of the real
// rules' tests changed in one place.
func TestRuleTestChecks(t *testing.T) {
	c := newChecker(exported)
	rules, problems := checkRules(read(t, filepath.Join(rulesDir, rulesName)), anchorsOf(string(read(t, alertsDoc))), c)
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	raw := read(t, filepath.Join(rulesDir, rulesTestName))
	// each calls f on every alert test of alert.
	each := func(rt *ruleTests, alert string, f func(*ruleTestCase)) {
		for i := range rt.Tests {
			for j := range rt.Tests[i].AlertRuleTest {
				if a := &rt.Tests[i].AlertRuleTest[j]; a.Alertname == alert {
					f(a)
				}
			}
		}
	}
	for _, tc := range []struct {
		name   string
		change func(rt *ruleTests)
		want   []string
	}{
		{"as they are", func(*ruleTests) {}, nil},
		{"no firing case", func(rt *ruleTests) {
			each(rt, "ConfgateGatewayStale", func(a *ruleTestCase) { a.ExpAlerts = nil })
		}, []string{"ConfgateGatewayStale: no test where it fires"}},
		{"quiet only while pending", func(rt *ruleTests) {
			each(rt, "ConfgateGatewayStale", func(a *ruleTestCase) {
				if len(a.ExpAlerts) == 0 {
					a.EvalTime = 60e9 // 1m, inside the 5m for
				}
			})
		}, []string{"ConfgateGatewayStale: no test where it must not fire"}},
		{"another severity", func(rt *ruleTests) {
			each(rt, "ConfgateGatewayStale", func(a *ruleTestCase) {
				for _, e := range a.ExpAlerts {
					e.ExpLabels["severity"] = "critical"
				}
			})
		}, []string{`ConfgateGatewayStale fires with severity "critical"`}},
		{"an annotation untested", func(rt *ruleTests) {
			each(rt, "ConfgateGatewayStale", func(a *ruleTestCase) {
				for _, e := range a.ExpAlerts {
					delete(e.ExpAnnotations, "runbook_url")
				}
			})
		}, []string{"exp_annotations has [description summary]"}},
		{"a series label the metric lacks", func(rt *ruleTests) {
			rt.Tests[0].InputSeries[0].Series = `confgate_store_ready{job="confgate", reason="x"}`
		}, []string{`confgate_store_ready has no label "reason"`}},
		{"a series value no gateway gives", func(rt *ruleTests) {
			rt.Tests[0].InputSeries[0].Series = `confgate_gateway_resumes_total{job="confgate", outcome="resumed"}`
		}, []string{`the outcome value "resumed"`}},
		{"an alert that does not exist", func(rt *ruleTests) {
			rt.Tests[0].AlertRuleTest[0].Alertname = "ConfgateNope"
		}, []string{"no alert ConfgateNope"}},
		{"other rule files", func(rt *ruleTests) { rt.RuleFiles = []string{"other.yaml"} }, []string{"rule_files must be"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rt ruleTests
			if err := yaml.Unmarshal(raw, &rt); err != nil {
				t.Fatal(err)
			}
			tc.change(&rt)
			b, err := yaml.Marshal(&rt)
			if err != nil {
				t.Fatal(err)
			}
			wantProblems(t, checkRuleTests(b, rulesName, rules, c), tc.want...)
		})
	}
}

func TestAnchorsOf(t *testing.T) {
	got := anchorsOf("# Alerts and the Grafana dashboard\n\n### ConfgateLagGrowing\n\n## `topic`, the label!\n\n## Notes\n\n## Notes\n\ntext # not a heading\n")
	want := []string{"alerts-and-the-grafana-dashboard", "confgatelaggrowing", "notes", "notes-1", "topic-the-label"}
	if keys := slices.Sorted(maps.Keys(got)); !slices.Equal(keys, want) {
		t.Errorf("anchors %v, want %v", keys, want)
	}
}
