package gateway

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	subscribers *prometheus.GaugeVec
	sent        *prometheus.CounterVec
	sentBytes   prometheus.Counter
	snapshots   *prometheus.CounterVec
	resumes     *prometheus.CounterVec
	encodes     *prometheus.CounterVec
	cacheHits   *prometheus.CounterVec
	coalesced   prometheus.Counter
	wakeups     prometheus.Counter
	duration    *prometheus.HistogramVec
	groups      prometheus.Gauge
	requests    *prometheus.CounterVec

	// Hardening: what was refused, dropped or recovered.
	panics       *prometheus.CounterVec // by method
	unencodable  prometheus.Counter
	refused      *prometheus.CounterVec // by reason
	connections  prometheus.Gauge
	memoBytes    prometheus.Gauge
	memoDropped  prometheus.Counter
	buildsActive prometheus.Gauge

	// Auth: callers refused for who they are, or for what they asked.
	authFailures *prometheus.CounterVec // by reason
	denied       *prometheus.CounterVec // by method

	// Children resolved once: the fan-out and snapshot paths count per
	// entry and per message, where a label lookup each time would cost a
	// hash and a map probe.
	sentChunk, sentEnd, sentDelta, sentProgress prometheus.Counter
	encEntry, encDelta, encSnapshot             prometheus.Counter
	hitEntry, hitDelta, hitSnapshot             prometheus.Counter
	subscribeStreams, snapshotStreams           prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		subscribers:  prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "confgate_gateway_subscribers", Help: "Open streams, by method (Subscribe, GetSnapshot)."}, []string{"method"}),
		sent:         prometheus.NewCounterVec(prometheus.CounterOpts{Name: "confgate_gateway_messages_sent_total", Help: "Stream messages sent, by kind."}, []string{"kind"}),
		sentBytes:    prometheus.NewCounter(prometheus.CounterOpts{Name: "confgate_gateway_sent_bytes_total", Help: "Encoded bytes of stream messages sent."}),
		snapshots:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "confgate_gateway_snapshots_total", Help: "Snapshots sent, by reason."}, []string{"reason"}),
		resumes:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "confgate_gateway_resumes_total", Help: "Subscriptions with a resume cursor, by outcome: history (deltas from the change window), diff (coalesced from the index), reset (snapshot)."}, []string{"outcome"}),
		encodes:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "confgate_gateway_encodes_total", Help: "Payloads encoded, by what (entry, delta, snapshot); lower is better."}, []string{"what"}),
		cacheHits:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "confgate_gateway_cache_hits_total", Help: "Payloads served from the cache or a shared build, by what."}, []string{"what"}),
		coalesced:    prometheus.NewCounter(prometheus.CounterOpts{Name: "confgate_gateway_coalesced_deltas_total", Help: "Coalesced deltas sent to slow subscribers."}),
		duration:     prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "confgate_gateway_request_seconds", Help: "Unary calls (Get, Put, Delete) from the handler's start to its answer, by method.", Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}, []string{"method"}),
		wakeups:      prometheus.NewCounter(prometheus.CounterOpts{Name: "confgate_gateway_stream_wakeups_total", Help: "Times a subscriber stream was woken because a batch concerned its selector (streams a batch does not concern are not woken)."}),
		groups:       prometheus.NewGauge(prometheus.GaugeOpts{Name: "confgate_gateway_selector_groups", Help: "Distinct selectors with open subscriptions."}),
		requests:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "confgate_gateway_requests_total", Help: "Finished RPCs, by method and status code."}, []string{"method", "code"}),
		panics:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "confgate_gateway_panics_total", Help: "Panics recovered in request handlers, by method; the process and other streams were unaffected."}, []string{"method"}),
		unencodable:  prometheus.NewCounter(prometheus.CounterOpts{Name: "confgate_gateway_unencodable_entries_total", Help: "Entries left out of a message because they could not be encoded (the store should never admit such entries)."}),
		refused:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "confgate_gateway_refused_total", Help: "Work refused to stay within a limit, by reason (streams, connections, resets, principal_streams, principal_writes)."}, []string{"reason"}),
		connections:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "confgate_gateway_connections", Help: "Open gRPC connections."}),
		memoBytes:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "confgate_gateway_memo_bytes", Help: "Bytes of encoded deltas kept for subscribers at the head (bounded by --memo-bytes)."}),
		memoDropped:  prometheus.NewCounter(prometheus.CounterOpts{Name: "confgate_gateway_memo_dropped_total", Help: "Encoded deltas dropped from the memo to stay within its byte bound."}),
		buildsActive: prometheus.NewGauge(prometheus.GaugeOpts{Name: "confgate_gateway_snapshot_builds", Help: "Snapshot chunks being encoded now (bounded by --max-snapshot-builds)."}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "confgate_gateway_auth_failures_total", Help: "Calls refused as UNAUTHENTICATED, by reason: no_credential, expired, invalid_credential (unknown, revoked, badly signed or malformed), expired_in_stream (a stream ended at its credential's expiry), revoked_in_stream (a stream ended because its static token was removed from the tokens file)."}, []string{"reason"}),
		denied:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "confgate_gateway_denied_total", Help: "Calls and open streams refused by the ACL (PERMISSION_DENIED), by method."}, []string{"method"}),
	}
	m.sentChunk, m.sentEnd = m.sent.WithLabelValues("snapshot_chunk"), m.sent.WithLabelValues("snapshot_end")
	m.sentDelta, m.sentProgress = m.sent.WithLabelValues("delta"), m.sent.WithLabelValues("progress")
	m.encEntry, m.encDelta, m.encSnapshot = m.encodes.WithLabelValues("entry"), m.encodes.WithLabelValues("delta"), m.encodes.WithLabelValues("snapshot")
	m.hitEntry, m.hitDelta, m.hitSnapshot = m.cacheHits.WithLabelValues("entry"), m.cacheHits.WithLabelValues("delta"), m.cacheHits.WithLabelValues("snapshot")
	m.subscribeStreams, m.snapshotStreams = m.subscribers.WithLabelValues("Subscribe"), m.subscribers.WithLabelValues("GetSnapshot")
	if reg != nil {
		reg.MustRegister(m.subscribers, m.sent, m.sentBytes, m.snapshots, m.resumes, m.encodes, m.cacheHits, m.coalesced, m.wakeups, m.duration, m.groups, m.requests,
			m.panics, m.unencodable, m.refused, m.connections, m.memoBytes, m.memoDropped, m.buildsActive, m.authFailures, m.denied)
	}
	return m
}
