// Package loadgen is confgate's load tool: it drives a system under test
// (a confgate deployment, or a peer such as etcd, NATS or Redis) with many
// long-lived subscribers and an open-loop writer, and measures what a
// platform team asks of a config-distribution system: latency from the
// write call to receipt at every subscriber, the share delivered,
// duplicates, the server's CPU and RSS, and the write round trip on its
// own. `confgate bench` runs it against a deployment; the peers live in a
// separate module (bench/peers) so the product never depends on them.
//
// Histograms are HDR (github.com/HdrHistogram/hdrhistogram-go). Nothing
// here asserts a speed: the figures are reported, and compared in
// docs/benchmarks.md.
package loadgen
