// Package monitoringcheck checks what confgate ships for monitoring: the
// Grafana dashboard (deploy/grafana/confgate.json) and the Prometheus
// alert rules (deploy/prometheus/confgate-alerts.yaml) with their promtool
// unit tests.
//
// Its tests start a gateway the way `confgate serve` runs one (package
// node, with the fleet view and credentials, on the in-process dev
// broker), exercise it until its metric vectors have the children the
// dashboard and the alerts look at (commits refused, ok, duplicate and
// lost; subscribers starting, resuming from history, from a diff and
// after a topic change; per-principal limits; a bad credential; the fleet
// judged), and read from what its registry gathers every metric, its
// labels and the values they took. A vector still without children is
// found through its descriptor (a constant metric made of it names it and
// its labels). Every PromQL expression of the dashboard, of its
// variables, of the alert rules and of the rules' test series is then
// parsed with Prometheus's own parser, and each metric, each label a
// selector, a grouping or a vector match names, each label value a
// matcher or a test series names (the values the gateway produced, or
// for status codes, methods and snapshot reasons every value its code
// can produce), and the metric type a function expects (rate of a
// counter, deriv of a gauge, histogram_quantile of buckets) must exist.
// The dashboard is decoded strictly against Grafana's dashboard schema
// (the Grafana Foundation SDK) and checked for unique panel IDs, a
// datasource and targets on every panel, a layout without overlaps, and
// the job, topic and instance filters on every selector; every alert must
// have a runbook section in docs/alerts.md and a firing and a quiet unit
// test.
//
// It is a module of its own so that Prometheus's module, which brings
// the dependency graph of the whole Prometheus server, and the Grafana
// SDK never enter confgate's go.mod. scripts/alerts-test.sh runs it
// after promtool.
package monitoringcheck
