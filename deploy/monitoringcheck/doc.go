// Package monitoringcheck checks what confgate ships for monitoring: the
// Grafana dashboard (deploy/grafana/confgate.json) and the Prometheus
// alert rules (deploy/prometheus/confgate-alerts.yaml) with their promtool
// unit tests.
//
// Its tests start a gateway the way `confgate serve` runs one (package
// node, with the fleet view, on the in-process dev broker) and take the
// metrics it really registers from its registry's descriptors, so a
// metric vector that has no series yet still counts. Every PromQL
// expression of the dashboard, of its variables, of the alert rules and
// of the rules' test series is then parsed with Prometheus's own parser,
// and each metric, each label a selector, a grouping or a vector match
// names, and the metric type a function expects (rate of a counter,
// deriv of a gauge, histogram_quantile of buckets) must exist. The
// dashboard is decoded strictly against Grafana's dashboard schema (the
// Grafana Foundation SDK) and checked for unique panel IDs, a datasource
// and targets on every panel, a layout without overlaps, and the job,
// topic and instance filters on every selector; every alert must have a
// runbook section in docs/alerts.md and a firing and a quiet unit test.
//
// It is a module of its own so that Prometheus's module, which brings
// the dependency graph of the whole Prometheus server, and the Grafana
// SDK never enter confgate's go.mod. scripts/alerts-test.sh runs it
// after promtool.
package monitoringcheck
