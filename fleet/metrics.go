package fleet

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	published  prometheus.Counter
	tombstones prometheus.Counter
	produceErr prometheus.Counter
	skipped    *prometheus.CounterVec
	clients    prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		published:  prometheus.NewCounter(prometheus.CounterOpts{Name: "confgate_fleet_records_published_total", Help: "Client records this gateway wrote to the fleet topic (acknowledged)."}),
		tombstones: prometheus.NewCounter(prometheus.CounterOpts{Name: "confgate_fleet_tombstones_total", Help: "Tombstones this gateway wrote to the fleet topic (acknowledged): clients gone past the grace, or records not updated for 10x the grace."}),
		produceErr: prometheus.NewCounter(prometheus.CounterOpts{Name: "confgate_fleet_produce_errors_total", Help: "Writes to the fleet topic that failed (records are retried, tombstones left to the sweep)."}),
		skipped:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "confgate_fleet_records_skipped_total", Help: "Fleet records skipped, by reason (read: no_key, too_large, bad_json, version, invalid, key_mismatch, view_full; written: local_full, unwritable)."}, []string{"reason"}),
		clients:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "confgate_fleet_clients", Help: "Records in this gateway's view of the fleet: clients, and the gateways' own records."}),
	}
	for _, r := range []string{reasonNoKey, reasonTooLarge, reasonBadJSON, reasonVersion, reasonInvalid, reasonKeyMismatch, reasonViewFull, reasonLocalFull, reasonUnwritable} {
		m.skipped.WithLabelValues(r)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.published, m.tombstones, m.produceErr, m.skipped, m.clients} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register fleet metrics: %w", err)
			}
		}
	}
	return m, nil
}
