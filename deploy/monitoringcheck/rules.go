package monitoringcheck

import (
	"fmt"
	"log/slog"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"go.yaml.in/yaml/v3"
)

// runbookBase is where every alert's runbook_url points, followed by the
// anchor of the alert's section.
const runbookBase = "https://github.com/confgate/confgate/blob/main/docs/alerts.md#"

// severities are the severity labels alerts may carry.
var severities = []string{"critical", "warning"}

// alertRule is one alerting rule as the checks need it.
type alertRule struct {
	name        string
	forDuration time.Duration
	labels      map[string]string
}

// checkRules parses a rules file as Prometheus does (unknown fields are
// errors), checks each expression, and wants of each alert a severity,
// a summary, a description and a runbook_url pointing at a section of
// docs/alerts.md (anchors holds that file's heading anchors).
func checkRules(content []byte, anchors map[string]bool, c *checker) (rules []alertRule, problems []string) {
	report := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	groups, errs := rulefmt.Parse(content, false, model.LegacyValidation, c.parser, slog.New(slog.DiscardHandler))
	for _, err := range errs {
		report("%v", err)
	}
	if groups == nil {
		return nil, problems
	}
	names := map[string]bool{}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			name := r.Alert
			if name == "" {
				name = "record " + r.Record
			}
			for _, pr := range c.check(r.Expr) {
				report("%s: %s", name, pr)
			}
			if r.Alert == "" {
				continue
			}
			if names[name] {
				report("%s: two alerts of that name", name)
			}
			names[name] = true
			if !slices.Contains(severities, r.Labels["severity"]) {
				report("%s: severity %q, want one of %v", name, r.Labels["severity"], severities)
			}
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if r.Annotations[a] == "" {
					report("%s: no %s annotation", name, a)
				}
			}
			if anchor := strings.ToLower(name); r.Annotations["runbook_url"] != runbookBase+anchor || !anchors[anchor] {
				report("%s: runbook_url must be %s%s, a section of docs/alerts.md", name, runbookBase, anchor)
			}
			rules = append(rules, alertRule{name: name, forDuration: time.Duration(r.For), labels: r.Labels})
		}
	}
	return rules, problems
}

// ruleTests is the part of a promtool test file the checks read.
type ruleTests struct {
	RuleFiles []string `yaml:"rule_files"`
	Tests     []struct {
		Name        string `yaml:"name"`
		InputSeries []struct {
			Series string `yaml:"series"`
			Values string `yaml:"values"`
		} `yaml:"input_series"`
		AlertRuleTest []ruleTestCase `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

// ruleTestCase is one alert_rule_test: the alerts expected at a time.
type ruleTestCase struct {
	EvalTime  model.Duration `yaml:"eval_time"`
	Alertname string         `yaml:"alertname"`
	ExpAlerts []struct {
		ExpLabels      map[string]string `yaml:"exp_labels"`
		ExpAnnotations map[string]string `yaml:"exp_annotations"`
	} `yaml:"exp_alerts"`
}

// checkRuleTests wants, for every alert, a test where it fires (with its
// labels and every annotation, so their templates are tested) and one
// where it must not, evaluated past the alert's `for` (else a pending
// alert passes trivially); and input series of exported metrics only.
func checkRuleTests(content []byte, rulesFile string, rules []alertRule, c *checker) []string {
	var problems []string
	report := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	var rt ruleTests
	if err := yaml.Unmarshal(content, &rt); err != nil {
		return []string{fmt.Sprintf("rule tests: %v", err)}
	}
	if !slices.Equal(rt.RuleFiles, []string{rulesFile}) {
		report("rule tests: rule_files must be [%s]", rulesFile)
	}
	byName := map[string]alertRule{}
	for _, r := range rules {
		byName[r.name] = r
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, t := range rt.Tests {
		for _, in := range t.InputSeries {
			for _, pr := range c.checkSeries(in.Series) {
				report("test %q: input series %s", t.Name, pr)
			}
		}
		for _, a := range t.AlertRuleTest {
			r, ok := byName[a.Alertname]
			if !ok {
				report("test %q: no alert %s in %s", t.Name, a.Alertname, rulesFile)
				continue
			}
			if len(a.ExpAlerts) == 0 {
				quiet[r.name] = quiet[r.name] || time.Duration(a.EvalTime) >= r.forDuration
				continue
			}
			fires[r.name] = true
			for _, e := range a.ExpAlerts {
				if e.ExpLabels["severity"] != r.labels["severity"] {
					report("test %q: %s fires with severity %q, the rule says %q", t.Name, r.name, e.ExpLabels["severity"], r.labels["severity"])
				}
				if got := slices.Sorted(maps.Keys(e.ExpAnnotations)); !slices.Equal(got, []string{"description", "runbook_url", "summary"}) {
					report("test %q: %s: exp_annotations has %v, want description, runbook_url and summary", t.Name, r.name, got)
				}
			}
		}
	}
	for _, r := range rules {
		if !fires[r.name] {
			report("%s: no test where it fires", r.name)
		}
		if !quiet[r.name] {
			report("%s: no test where it must not fire, evaluated at or after its for (%s)", r.name, r.forDuration)
		}
	}
	return problems
}

// checkSeries checks a promtool input series, metric{labels}: the metric,
// its labels, and their values as checkValues checks a selector's.
func (c *checker) checkSeries(s string) []string {
	ls, err := c.parser.ParseMetric(s)
	if err != nil {
		return []string{fmt.Sprintf("%s: %v", s, err)}
	}
	name := ls.Get(model.MetricNameLabel)
	m, ok := c.inv[name]
	if !ok {
		return []string{fmt.Sprintf("%s: no gateway exports a metric %s", s, name)}
	}
	var problems []string
	ls.Range(func(l labels.Label) {
		switch {
		case l.Name == model.MetricNameLabel:
		case !m.labels[l.Name] && targetLabels[l.Name] == "":
			problems = append(problems, fmt.Sprintf("%s: %s has no label %q", s, name, l.Name))
		default:
			if pr := checkValues(name, m, labels.MustNewMatcher(labels.MatchEqual, l.Name, l.Value)); pr != "" {
				problems = append(problems, fmt.Sprintf("%s: %s", s, pr))
			}
		}
	})
	return problems
}

// heading is a Markdown ATX heading.
var heading = regexp.MustCompile(`(?m)^#{1,6}\s+(.+?)\s*#*\s*$`)

// anchorsOf lists the anchors GitHub gives a Markdown file's headings:
// lower case, spaces to hyphens, punctuation other than - and _ dropped,
// a repeated one suffixed -1, -2, ...
func anchorsOf(md string) map[string]bool {
	out := map[string]bool{}
	seen := map[string]int{}
	for _, m := range heading.FindAllStringSubmatch(md, -1) {
		var b strings.Builder
		for _, r := range strings.ToLower(m[1]) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 127:
				b.WriteRune(r)
			}
		}
		a := b.String()
		if n := seen[a]; n > 0 {
			out[fmt.Sprintf("%s-%d", a, n)] = true
		} else {
			out[a] = true
		}
		seen[a]++
	}
	return out
}
