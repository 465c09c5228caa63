package monitoringcheck

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// targetLabels are labels Prometheus puts on every series of a target at
// scrape time, which no gateway exports itself.
var targetLabels = map[string]string{
	"job":      "every scrape",
	"instance": "every scrape",
	// Kubernetes service discovery, as prometheus-operator's ServiceMonitor
	// and the usual kubernetes_sd relabelling set them.
	"namespace": "Kubernetes service discovery",
	"pod":       "Kubernetes service discovery",
	// The gateway's --topic, which the scrape configuration sets (see
	// docs/alerts.md); where it is not set, selectors on it match "".
	"topic": "the scrape configuration",
}

// openLabels are labels whose values are data rather than names the
// gateway's code picks; the check takes any value of them. Every other
// label's values in a selector or a test series must be ones the gateway
// produced (or can produce, see inventory.derive).
var openLabels = map[string]string{
	"partition":  "a partition number of the topic",
	"service":    "what a client calls itself",
	"version":    "the build",
	"commit":     "the build",
	"go_version": "the build",
	"le":         "a histogram's bucket bound",
	"quantile":   "a summary's quantile",
}

// grafanaIntervals replaces Grafana's built-in interval variables with a
// duration, so that a panel's expression parses; other variables ($job)
// appear only inside label matchers' strings, where they parse as they are.
var grafanaIntervals = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h")

// checker checks PromQL expressions against an inventory.
type checker struct {
	inv    inventory
	parser parser.Parser
}

func newChecker(inv inventory) *checker {
	return &checker{inv: inv, parser: parser.NewParser(parser.Options{})}
}

// parse parses expr, Grafana's interval variables replaced.
func (c *checker) parse(expr string) (parser.Expr, error) {
	return c.parser.ParseExpr(grafanaIntervals.Replace(expr))
}

// check returns what is wrong with expr, nothing when it is right: it
// must parse; every selector must name a metric the gateway exports and
// only labels that metric (or the scrape) has, matched against values
// the gateway produces (checkValues); grouping and vector
// matching may name only labels of the metrics they act on; and rate,
// deriv and histogram_quantile must get the type of series they expect.
func (c *checker) check(expr string) []string {
	e, err := c.parse(expr)
	if err != nil {
		return []string{fmt.Sprintf("does not parse: %v", err)}
	}
	var problems []string
	report := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.VectorSelector:
			c.checkSelector(n, report)
		case *parser.AggregateExpr:
			if n.Op == parser.COUNT_VALUES {
				report("%s: count_values adds a label this check cannot follow", n)
			}
			c.checkLabels(fmt.Sprintf("%s grouping", n.Op), n.Grouping, report, n.Expr)
		case *parser.BinaryExpr:
			if vm := n.VectorMatching; vm != nil {
				c.checkLabels("vector matching", vm.MatchingLabels, report, n.LHS, n.RHS)
				c.checkLabels("group_left/group_right", vm.Include, report, n.LHS, n.RHS)
			}
		case *parser.Call:
			c.checkCall(n, report)
		}
		return nil
	})
	return problems
}

// metricName is the metric a selector names, "" for none.
func metricName(vs *parser.VectorSelector) string {
	if vs.Name != "" {
		return vs.Name
	}
	for _, m := range vs.LabelMatchers {
		if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
			return m.Value
		}
	}
	return ""
}

func (c *checker) checkSelector(vs *parser.VectorSelector, report func(string, ...any)) {
	name := metricName(vs)
	if name == "" {
		report("%s: a selector must name one metric", vs)
		return
	}
	s, ok := c.inv[name]
	if !ok {
		report("%s: no gateway exports a metric %s", vs, name)
		return
	}
	for _, m := range vs.LabelMatchers {
		if m.Name == labels.MetricName {
			continue
		}
		if !s.labels[m.Name] && targetLabels[m.Name] == "" {
			report("%s: %s has no label %q (it has %s)", vs, name, m.Name, c.labelList(s))
			continue
		}
		if pr := checkValues(name, s, m); pr != "" {
			report("%s: %s", vs, pr)
		}
	}
}

// checkValues returns what is wrong with a matcher's values, "" when
// nothing is: each value it names (=, !=, and each alternative of a =~ or
// !~ that lists its values, a|b|c) must be one the gateway produces for
// that label. A matcher on a value that never occurs selects nothing, or
// with != and !~ everything, and no parser notices: a typo, or a value
// the code renamed, leaves a panel empty or an alert silent. A regular
// expression that does not list its values (.*, or an unescaped dot)
// cannot be checked, and is refused. The scrape's labels and openLabels
// are not checked.
func checkValues(name string, s series, m *labels.Matcher) string {
	if m.Name == labels.MetricName || targetLabels[m.Name] != "" || openLabels[m.Name] != "" {
		return ""
	}
	known := s.values[m.Name]
	if len(known) == 0 {
		return fmt.Sprintf("no value of %s's label %q is known: exercise the gateway (gatewayInventory) until it has series with that label", name, m.Name)
	}
	var want []string
	switch m.Type {
	case labels.MatchEqual, labels.MatchNotEqual:
		want = []string{m.Value}
	default:
		if want = m.SetMatches(); len(want) == 0 {
			return fmt.Sprintf("%s: a regular expression on %q must list its values (a|b|c, dots escaped) so that each can be checked", m, m.Name)
		}
	}
	var unknown []string
	for _, v := range want {
		if !known[v] {
			unknown = append(unknown, fmt.Sprintf("%q", v))
		}
	}
	if len(unknown) > 0 {
		return fmt.Sprintf("%s: no gateway gives %s the %s value %s (it gives %s)", m, name, m.Name, strings.Join(unknown, ", "), strings.Join(slices.Sorted(maps.Keys(known)), ", "))
	}
	return ""
}

func (c *checker) labelList(s series) string {
	ls := slices.Sorted(maps.Keys(s.labels))
	if len(ls) == 0 {
		return "none but the scrape's"
	}
	return strings.Join(ls, ", ")
}

// checkLabels reports the labels of ls that no metric under exprs has
// (nor the scrape).
func (c *checker) checkLabels(what string, ls []string, report func(string, ...any), exprs ...parser.Expr) {
	have := map[string]bool{}
	known := true
	for _, e := range exprs {
		for _, vs := range selectorsIn(e) {
			s, ok := c.inv[metricName(vs)]
			known = known && ok
			maps.Copy(have, s.labels)
		}
	}
	if !known {
		return // the unknown metric is reported on its own
	}
	for _, l := range ls {
		if !have[l] && targetLabels[l] == "" {
			report("%s names label %q, which none of the metrics it applies to has", what, l)
		}
	}
}

// counterFuncs take a range of a counter, gaugeFuncs one of a gauge.
var (
	counterFuncs = map[string]bool{"rate": true, "irate": true, "increase": true, "resets": true}
	gaugeFuncs   = map[string]bool{"deriv": true, "delta": true, "idelta": true, "predict_linear": true}
)

func (c *checker) checkCall(call *parser.Call, report func(string, ...any)) {
	name := call.Func.Name
	switch {
	case name == "label_replace" || name == "label_join":
		report("%s: %s adds a label this check cannot follow", call, name)
	case counterFuncs[name] || gaugeFuncs[name]:
		ms, ok := call.Args[0].(*parser.MatrixSelector)
		if !ok {
			return // a subquery: its inner expression is checked on its own
		}
		vs := ms.VectorSelector.(*parser.VectorSelector)
		s, ok := c.inv[metricName(vs)]
		if !ok {
			return
		}
		counterish := s.kind == kindCounter || s.kind == kindBucket || s.kind == kindSum || s.kind == kindCount
		if counterFuncs[name] && !counterish {
			report("%s: %s takes a counter, and %s is %s", call, name, metricName(vs), s.kind)
		}
		if gaugeFuncs[name] && counterish {
			report("%s: %s takes a gauge, and %s is %s (use rate or increase)", call, name, metricName(vs), s.kind)
		}
	case name == "histogram_quantile":
		arg := call.Args[1]
		buckets := false
		for _, vs := range selectorsIn(arg) {
			if s, ok := c.inv[metricName(vs)]; ok && s.kind == kindBucket {
				buckets = true
			}
		}
		if !buckets {
			report("%s: histogram_quantile needs a histogram's _bucket series", call)
		}
		// An aggregation that drops le leaves no buckets to interpolate.
		for e := arg; e != nil; {
			switch n := e.(type) {
			case *parser.ParenExpr:
				e = n.Expr
				continue
			case *parser.AggregateExpr:
				if slices.Contains(n.Grouping, "le") == n.Without {
					report("%s: the aggregation inside histogram_quantile must keep le", call)
				}
			}
			break
		}
	}
}

// selectorsIn lists the vector selectors under e.
func selectorsIn(e parser.Node) []*parser.VectorSelector {
	var out []*parser.VectorSelector
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			out = append(out, vs)
		}
		return nil
	})
	return out
}
