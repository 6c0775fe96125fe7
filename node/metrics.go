package node

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"

	"github.com/parleynet/parley/intent"
)

// metrics are one node's counters, registered on its own registry so that
// many nodes in one process (tests, the demo, simulations) do not collide.
type metrics struct {
	registry  *prometheus.Registry
	published prometheus.Counter
	received  prometheus.Counter
	dropped   *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_intents_published_total",
			Help: "Intents published by this node's agents.",
		}),
		received: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_intents_received_total",
			Help: "Intents from other nodes that passed validation.",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_intents_dropped_total",
			Help: "Intents dropped by the topic validators, by reason.",
		}, []string{"reason"}),
	}
	for _, r := range intent.DropReasons() {
		m.dropped.WithLabelValues(r)
	}
	m.registry.MustRegister(m.published, m.received, m.dropped,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Stats is a snapshot of a node's intent counters.
type Stats struct {
	Published uint64            `json:"published"`
	Received  uint64            `json:"received"`
	Dropped   map[string]uint64 `json:"dropped"` // by reason; every reason is present
}

// Stats returns the node's intent counters.
func (n *Node) Stats() Stats {
	m := n.metrics
	s := Stats{
		Published: counterValue(m.published),
		Received:  counterValue(m.received),
		Dropped:   map[string]uint64{},
	}
	for _, r := range intent.DropReasons() {
		s.Dropped[r] = counterValue(m.dropped.WithLabelValues(r))
	}
	return s
}

func counterValue(c prometheus.Counter) uint64 {
	var d dto.Metric
	if err := c.Write(&d); err != nil {
		return 0
	}
	return uint64(d.GetCounter().GetValue())
}
