package audit

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are a Log's Prometheus collectors. They exist whether or not a
// Registerer was given, so the committer never checks.
type metrics struct {
	reg     prometheus.Registerer // nil: nothing registered
	fsync   prometheus.Histogram
	append  prometheus.Histogram
	records prometheus.Counter
	group   prometheus.Histogram
	broken  prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		reg: reg,
		fsync: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "parley_audit_fsync_seconds",
			Help: "Time to fsync one commit group of the audit log.",
			// 50µs … ~3.3s: SSDs to a failing disk.
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 17),
		}),
		append: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "parley_audit_append_seconds",
			Help:    "Time from Append to the record being durable: queueing, the group's write and its fsync — what an audited step waits.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 17),
		}),
		records: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_audit_records_total",
			Help: "Audit records made durable, checkpoint records included.",
		}),
		group: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "parley_audit_commit_group_records",
			Help:    "Records per commit group: written with one write and one fsync, covered by one signature.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14), // 1 … 8192
		}),
		broken: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "parley_audit_broken",
			Help: "1 once the audit log is broken (a write, fsync or rotation failed) and appends fail; else 0.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	var done []prometheus.Collector
	for _, c := range m.collectors() {
		if err := reg.Register(c); err != nil {
			for _, d := range done {
				reg.Unregister(d)
			}
			return nil, fmt.Errorf("register audit metrics: %w", err)
		}
		done = append(done, c)
	}
	return m, nil
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.fsync, m.append, m.records, m.group, m.broken}
}

// unregister removes the collectors, so that a Log reopened on the same
// Registerer can register its own.
func (m *metrics) unregister() {
	if m.reg == nil {
		return
	}
	for _, c := range m.collectors() {
		m.reg.Unregister(c)
	}
}
