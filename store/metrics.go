package store

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	ready      prometheus.Gauge
	stale      prometheus.GaugeFunc
	lag        *prometheus.GaugeVec
	applied    prometheus.Counter
	skipped    *prometheus.CounterVec
	entries    prometheus.Gauge
	tombstones prometheus.Gauge
	tombBytes  prometheus.Gauge
	history    prometheus.Gauge
	rebuilds   *prometheus.CounterVec
	fetchErrs  prometheus.Counter
	compacted  prometheus.Gauge
	produce    prometheus.Histogram
	brokenSets prometheus.Counter
	// Writes through the serialization point (Commit).
	commits       *prometheus.CounterVec
	commitSeconds prometheus.Histogram
	fences        prometheus.Counter
	condViolated  prometheus.Counter
	schemaBad     prometheus.Counter
	notReadBack   prometheus.Counter
}

// latencyBuckets are the seconds buckets of the latency histograms, from
// a loopback Kafka's half millisecond to a produce timeout's seconds.
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// newMetrics registers the store's metrics; stale is read at each scrape,
// so the gauge never lags the clock it is computed from.
func newMetrics(reg prometheus.Registerer, stale func() bool) *metrics {
	m := &metrics{
		ready: prometheus.NewGauge(prometheus.GaugeOpts{Name: "confgate_store_ready", Help: "1 once every partition is applied up to the end offsets seen at start."}),
		stale: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "confgate_store_stale", Help: "1 when Kafka has not been reached for longer than the stale threshold."}, func() float64 {
			if stale() {
				return 1
			}
			return 0
		}),
		lag:           prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "confgate_store_lag_records", Help: "High watermark minus applied offset, per partition."}, []string{"partition"}),
		applied:       prometheus.NewCounter(prometheus.CounterOpts{Name: "confgate_store_records_applied_total", Help: "Records applied to the index."}),
		skipped:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "confgate_store_records_skipped_total", Help: "Records not applied, by reason (control, no_key, bad_key, bad_header, too_large, misrouted, backwards, stale_copy)."}, []string{"reason"}),
		entries:       prometheus.NewGauge(prometheus.GaugeOpts{Name: "confgate_store_entries", Help: "Live entries in the index."}),
		tombstones:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "confgate_store_tombstones", Help: "Deleted keys remembered in the index."}),
		tombBytes:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "confgate_store_tombstone_bytes", Help: "Memory held by the deleted keys remembered in the index (bounded by --max-tombstone-bytes)."}),
		history:       prometheus.NewGauge(prometheus.GaugeOpts{Name: "confgate_store_history_batches", Help: "Batches held in the change window."}),
		rebuilds:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "confgate_store_rebuilds_total", Help: "State rebuilds, by reason."}, []string{"reason"}),
		fetchErrs:     prometheus.NewCounter(prometheus.CounterOpts{Name: "confgate_store_fetch_errors_total", Help: "Errors reported by Kafka fetches."}),
		compacted:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "confgate_store_topic_compacted", Help: "1 when the topic's cleanup.policy includes compact."}),
		produce:       prometheus.NewHistogram(prometheus.HistogramOpts{Name: "confgate_store_produce_seconds", Help: "Writes from handing the record to the producer until Kafka acknowledged it (acks=all), or failed.", Buckets: latencyBuckets}),
		brokenSets:    prometheus.NewCounter(prometheus.CounterOpts{Name: "confgate_store_broken_change_sets_total", Help: "Change sets given up while incomplete (a foreign producer wrote a change-set header): their records were applied as they came."}),
		commits:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "confgate_store_commit_requests_total", Help: "Conditional, retry-safe and change-set writes by result (ok, duplicate, precondition_failed, invalid, unavailable)."}, []string{"result"}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "confgate_store_commit_seconds", Help: "Transactions of the serialization point, from taking the first queued write to Kafka's commit answer.", Buckets: latencyBuckets}),
		fences:        prometheus.NewCounter(prometheus.CounterOpts{Name: "confgate_store_transaction_fences_total", Help: "Times this store (re)initialized the shared transactional producer, fencing the gateway that held it."}),
		condViolated:  prometheus.NewCounter(prometheus.CounterOpts{Name: "confgate_store_precondition_violations_total", Help: "Applied records whose recorded precondition did not hold at their position in the log (possible only through a foreign producer)."}),
		notReadBack:   prometheus.NewCounter(prometheus.CounterOpts{Name: "confgate_store_commits_not_read_back_total", Help: "Writes whose transaction Kafka acknowledged but whose records were not in the log when read back (aborted); each was retried under its request ID."}),
		schemaBad:     prometheus.NewCounter(prometheus.CounterOpts{Name: "confgate_store_schema_violations_total", Help: "Applied records whose value breaks the schema in force (written by a foreign producer): applied anyway, flagged on /debug/state."}),
	}
	if reg != nil {
		reg.MustRegister(m.ready, m.stale, m.lag, m.applied, m.skipped, m.entries, m.tombstones, m.tombBytes, m.history, m.rebuilds, m.fetchErrs, m.compacted, m.produce, m.brokenSets, m.commits, m.commitSeconds, m.fences, m.condViolated, m.schemaBad, m.notReadBack)
	}
	return m
}
