package monitoringcheck

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// kind is what a series name is, as far as PromQL functions care.
type kind int

const (
	// kindUnknown: registered, but never collected, so its type is not
	// known (a vector with no series yet); not a counter (see inventoryOf).
	kindUnknown kind = iota
	kindCounter
	kindGauge
	// kindBucket, kindSum and kindCount are the series of a histogram or
	// summary family; kindQuantile a summary's own.
	kindBucket
	kindSum
	kindCount
	kindQuantile
	kindUntyped
)

func (k kind) String() string {
	return [...]string{"of unknown type", "a counter", "a gauge", "a histogram's buckets", "a histogram's or summary's sum", "a histogram's or summary's count", "a summary's quantiles", "untyped"}[k]
}

// series is one series name a gateway exports.
type series struct {
	family string
	kind   kind
	labels map[string]bool
}

// inventory holds every series name a registry exports, by name.
type inventory map[string]series

// labelName is a valid Prometheus label name.
var labelName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// inventoryOf reads the metrics reg exports. Names and label names come
// from the descriptors (Describe), which hold every metric a collector
// registered, vectors with no series included; Gather adds each family's
// type, where the family has series. A family never collected is a
// counter when its name ends in _total (the Prometheus naming rule, which
// this checks on every collected confgate family) and of unknown type
// otherwise, which the checker treats as a gauge. A histogram vector never
// collected would so lack its _bucket series and fail the check instead
// of passing it: the tests fill every histogram vector before reading.
func inventoryOf(reg *prometheus.Registry) (inventory, error) {
	labels := map[string]map[string]bool{}
	descs := make(chan *prometheus.Desc)
	go func() {
		reg.Describe(descs)
		close(descs)
	}()
	var errs []string
	for d := range descs {
		if err := d.Err(); err != nil {
			errs = append(errs, err.Error())
			continue
		}
		name, ls, err := parseDesc(d.String())
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		if labels[name] == nil {
			labels[name] = map[string]bool{}
		}
		for _, l := range ls {
			labels[name][l] = true
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("descriptors: %s", strings.Join(errs, "; "))
	}

	mfs, err := reg.Gather()
	if err != nil {
		return nil, fmt.Errorf("gather: %w", err)
	}
	types := map[string]dto.MetricType{}
	for _, mf := range mfs {
		name := mf.GetName()
		types[name] = mf.GetType()
		// A collector that describes nothing (an unchecked one) is
		// still exported: take its labels from its series.
		if labels[name] == nil {
			labels[name] = map[string]bool{}
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				labels[name][lp.GetName()] = true
			}
		}
		if strings.HasPrefix(name, "confgate_") && (mf.GetType() == dto.MetricType_COUNTER) != strings.HasSuffix(name, "_total") {
			errs = append(errs, fmt.Sprintf("%s is a %s: counters, and only counters, end in _total", name, mf.GetType()))
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("naming: %s", strings.Join(errs, "; "))
	}

	inv := inventory{}
	add := func(name, family string, k kind, extra ...string) {
		ls := maps.Clone(labels[family])
		for _, l := range extra {
			ls[l] = true
		}
		inv[name] = series{family: family, kind: k, labels: ls}
	}
	for family := range labels {
		t, collected := types[family]
		switch {
		case !collected && strings.HasSuffix(family, "_total"):
			add(family, family, kindCounter)
		case !collected:
			add(family, family, kindUnknown)
		case t == dto.MetricType_COUNTER:
			add(family, family, kindCounter)
		case t == dto.MetricType_GAUGE:
			add(family, family, kindGauge)
		case t == dto.MetricType_HISTOGRAM || t == dto.MetricType_GAUGE_HISTOGRAM:
			add(family+"_bucket", family, kindBucket, "le")
			add(family+"_sum", family, kindSum)
			add(family+"_count", family, kindCount)
		case t == dto.MetricType_SUMMARY:
			add(family, family, kindQuantile, "quantile")
			add(family+"_sum", family, kindSum)
			add(family+"_count", family, kindCount)
		default:
			add(family, family, kindUntyped)
		}
	}
	return inv, nil
}

// names lists the inventory's series names, sorted.
func (inv inventory) names() []string { return slices.Sorted(maps.Keys(inv)) }

// parseDesc reads a metric's name and label names (constant and
// variable) from prometheus.Desc's String, the only way client_golang
// shows them:
//
//	Desc{fqName: "n", help: "h", unit: "u", constLabels: {a="v",b="w"}, variableLabels: {c,c(d)}}
//
// (unit is absent before client_golang 1.21; c(d) is a constrained
// label). The strings are Go-quoted, so help text holds anything; any
// other shape is an error, never a guess.
func parseDesc(s string) (name string, labels []string, err error) {
	bad := func(what string) (string, []string, error) {
		return "", nil, fmt.Errorf("descriptor %s: cannot read %s", s, what)
	}
	rest, ok := strings.CutPrefix(s, "Desc{fqName: ")
	if !ok {
		return bad("fqName")
	}
	if name, rest, ok = cutQuoted(rest); !ok || name == "" {
		return bad("fqName")
	}
	if rest, ok = strings.CutPrefix(rest, ", help: "); !ok {
		return bad("help")
	}
	if _, rest, ok = cutQuoted(rest); !ok {
		return bad("help")
	}
	if r, hasUnit := strings.CutPrefix(rest, ", unit: "); hasUnit {
		if _, rest, ok = cutQuoted(r); !ok {
			return bad("unit")
		}
	}
	if rest, ok = strings.CutPrefix(rest, ", constLabels: {"); !ok {
		return bad("constLabels")
	}
	for !strings.HasPrefix(rest, "}") {
		l, r, found := strings.Cut(rest, "=")
		if !found || !labelName.MatchString(l) {
			return bad("constLabels")
		}
		if _, rest, ok = cutQuoted(r); !ok {
			return bad("constLabels")
		}
		labels = append(labels, l)
		rest = strings.TrimPrefix(rest, ",")
	}
	if rest, ok = strings.CutPrefix(rest, "}, variableLabels: {"); !ok {
		return bad("variableLabels")
	}
	if rest, ok = strings.CutSuffix(rest, "}}"); !ok {
		return bad("variableLabels")
	}
	if rest != "" {
		for _, l := range strings.Split(rest, ",") {
			if c, ok := strings.CutPrefix(l, "c("); ok {
				l = strings.TrimSuffix(c, ")")
			}
			if !labelName.MatchString(l) {
				return bad("variableLabels")
			}
			labels = append(labels, l)
		}
	}
	return name, labels, nil
}

// cutQuoted takes a Go-quoted string off the front of s.
func cutQuoted(s string) (value, rest string, ok bool) {
	q, err := strconv.QuotedPrefix(s)
	if err != nil {
		return "", s, false
	}
	v, err := strconv.Unquote(q)
	if err != nil {
		return "", s, false
	}
	return v, s[len(q):], true
}
