package monitoringcheck

import (
	"fmt"
	"maps"
	"slices"
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
	// values holds, by label, the values the gateway produced (or, for a
	// few labels, every value its code can produce: see derive). A label
	// that is not in values has no value known: the family had no series.
	// The series of one family share the map.
	values map[string]map[string]bool
}

// inventory holds every series name a registry exports, by name.
type inventory map[string]series

// family is what inventoryOf learns of one metric family.
type family struct {
	typ       dto.MetricType
	collected bool
	labels    map[string]bool
	values    map[string]map[string]bool
}

// inventoryOf reads the metrics reg exports from what it gathers: each
// family's name, type, label names and the label values of its series.
// So it sees the values only of the children that exist: the caller
// exercises the gateway first. A vector still without children is not
// gathered; describedOnly finds its name and label names, and its type is
// then taken from its name: a counter when it ends in _total (the
// Prometheus naming rule, which this checks on every collected confgate
// family), of unknown type otherwise, which the checker treats as a
// gauge. A histogram vector never collected would so lack its _bucket
// series and fail the check instead of passing it: the tests fill every
// histogram vector.
func inventoryOf(reg *prometheus.Registry) (inventory, error) {
	mfs, err := reg.Gather()
	if err != nil {
		return nil, fmt.Errorf("gather: %w", err)
	}
	families := map[string]*family{}
	var errs []string
	for _, mf := range mfs {
		name := mf.GetName()
		f := &family{typ: mf.GetType(), collected: true, labels: map[string]bool{}, values: map[string]map[string]bool{}}
		families[name] = f
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				f.labels[lp.GetName()] = true
				if f.values[lp.GetName()] == nil {
					f.values[lp.GetName()] = map[string]bool{}
				}
				f.values[lp.GetName()][lp.GetValue()] = true
			}
		}
		if strings.HasPrefix(name, "confgate_") && (mf.GetType() == dto.MetricType_COUNTER) != strings.HasSuffix(name, "_total") {
			errs = append(errs, fmt.Sprintf("%s is a %s: counters, and only counters, end in _total", name, mf.GetType()))
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("naming: %s", strings.Join(errs, "; "))
	}
	described, err := describedOnly(reg, families)
	if err != nil {
		return nil, err
	}
	for name, ls := range described {
		families[name] = &family{labels: ls, values: map[string]map[string]bool{}}
	}

	inv := inventory{}
	for name, f := range families {
		add := func(seriesName string, k kind, extra ...string) {
			ls := maps.Clone(f.labels)
			for _, l := range extra {
				ls[l] = true
			}
			inv[seriesName] = series{family: name, kind: k, labels: ls, values: f.values}
		}
		switch {
		case !f.collected && strings.HasSuffix(name, "_total"):
			add(name, kindCounter)
		case !f.collected:
			add(name, kindUnknown)
		case f.typ == dto.MetricType_COUNTER:
			add(name, kindCounter)
		case f.typ == dto.MetricType_GAUGE:
			add(name, kindGauge)
		case f.typ == dto.MetricType_HISTOGRAM || f.typ == dto.MetricType_GAUGE_HISTOGRAM:
			add(name+"_bucket", kindBucket, "le")
			add(name+"_sum", kindSum)
			add(name+"_count", kindCount)
		case f.typ == dto.MetricType_SUMMARY:
			add(name, kindQuantile, "quantile")
			add(name+"_sum", kindSum)
			add(name+"_count", kindCount)
		default:
			add(name, kindUntyped)
		}
	}
	return inv, nil
}

// maxProbeLabels bounds the label values describedOnly tries.
const maxProbeLabels = 32

// describedOnly returns the names and label names of the metric families
// reg describes but did not gather (have): vectors without children.
// client_golang shows a descriptor's name and labels only in its String,
// whose format it does not document. So each such descriptor becomes a
// constant metric with as many label values as it takes (NewConstMetric
// refuses any other number, as documented), and a scratch registry
// gathers those: its families name each metric and its labels, constant
// and variable.
func describedOnly(reg *prometheus.Registry, have map[string]*family) (map[string]map[string]bool, error) {
	descs := make(chan *prometheus.Desc)
	go func() {
		reg.Describe(descs)
		close(descs)
	}()
	var probes []prometheus.Metric
	var errs []string
	for d := range descs {
		if err := d.Err(); err != nil {
			errs = append(errs, err.Error())
			continue
		}
		m, err := probe(d)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		probes = append(probes, m)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("descriptors: %s", strings.Join(errs, "; "))
	}
	scratch := prometheus.NewRegistry()
	if err := scratch.Register(constCollector(probes)); err != nil {
		return nil, err
	}
	mfs, err := scratch.Gather()
	if err != nil {
		return nil, fmt.Errorf("descriptors: %w", err)
	}
	out := map[string]map[string]bool{}
	for _, mf := range mfs {
		if have[mf.GetName()] != nil {
			continue
		}
		ls := map[string]bool{}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				ls[lp.GetName()] = true
			}
		}
		out[mf.GetName()] = ls
	}
	return out, nil
}

// probe is a constant metric of d, with as many label values as d takes.
func probe(d *prometheus.Desc) (prometheus.Metric, error) {
	var vals []string
	for range maxProbeLabels + 1 {
		if m, err := prometheus.NewConstMetric(d, prometheus.UntypedValue, 0, vals...); err == nil {
			return m, nil
		}
		vals = append(vals, "probe")
	}
	return nil, fmt.Errorf("%s: takes none of 0 to %d label values", d, maxProbeLabels)
}

// constCollector collects fixed metrics. It describes none (an unchecked
// collector), so the scratch registry takes metrics of any descriptor.
type constCollector []prometheus.Metric

func (constCollector) Describe(chan<- *prometheus.Desc) {}

func (c constCollector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range c {
		ch <- m
	}
}

// derive sets the values of label of family to every value the gateway's
// code can produce, where the code computes them from something this
// check can read too (the gRPC status codes, the methods of the services
// it serves, an enum of the API). The values the gateway produced must be
// among them, or the derivation is wrong.
func (inv inventory) derive(family, label string, values []string) error {
	var f *series
	for _, s := range inv {
		if s.family == family {
			f = &s
			break
		}
	}
	if f == nil || !f.labels[label] {
		return fmt.Errorf("derive %s of %s: the gateway exports no such label", label, family)
	}
	all := map[string]bool{}
	for _, v := range values {
		all[v] = true
	}
	for v := range f.values[label] {
		if !all[v] {
			return fmt.Errorf("derive %s of %s: the gateway produced %q, which is not among %v", label, family, v, values)
		}
	}
	f.values[label] = all
	return nil
}

// names lists the inventory's series names, sorted.
func (inv inventory) names() []string { return slices.Sorted(maps.Keys(inv)) }
