package node

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parleynet/parley/intent"
	"github.com/parleynet/parley/internal/promcount"
)

// metrics are one node's counters, registered on its own registry so that
// many nodes in one process (tests, the demo, simulations) do not collide.
type metrics struct {
	registry  *prometheus.Registry
	published prometheus.Counter
	received  prometheus.Counter
	dropped   *prometheus.CounterVec
	lost      *prometheus.CounterVec
	// rejected counts what GossipSub itself rejected before the
	// validator: junk no parley check ever sees.
	rejected *prometheus.CounterVec
	// notRelayed counts intents delivered here but not handed on, past
	// the node's relay rate.
	notRelayed prometheus.Counter
	// rpcs and rpcBytes count the GossipSub RPCs received, control
	// included, and their bytes.
	rpcs, rpcBytes prometheus.Counter
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
		notRelayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_intents_not_relayed_total",
			Help: "Intents from other nodes delivered here but not relayed, past the node's relay rate.",
		}),
		lost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_gossip_lost_total",
			Help: "Intents GossipSub lost to this node's own full queues, by queue.",
		}, []string{"reason"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_gossip_rejected_total",
			Help: "Messages GossipSub rejected before parley's validator saw them (a signature where none belongs, a blacklisted peer…), by reason.",
		}, []string{"reason"}),
		rpcs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_gossip_received_rpcs_total",
			Help: "GossipSub RPCs received from peers, control messages and duplicates included.",
		}),
		rpcBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_gossip_received_bytes_total",
			Help: "Bytes of the GossipSub RPCs received from peers (their protobuf size, without stream framing).",
		}),
	}
	for _, r := range routerRejections() {
		m.rejected.WithLabelValues(r)
	}
	for _, r := range intent.DropReasons() {
		m.dropped.WithLabelValues(r)
	}
	for _, r := range lostReasons() {
		m.lost.WithLabelValues(r)
	}
	m.registry.MustRegister(m.published, m.received, m.dropped, m.lost, m.rejected, m.notRelayed, m.rpcs, m.rpcBytes)
	return m
}

// Stats is a snapshot of a node's intent counters.
type Stats struct {
	Published uint64            `json:"published"`
	Received  uint64            `json:"received"`
	Dropped   map[string]uint64 `json:"dropped"` // by reason; every reason is present
	// Lost counts what GossipSub lost to this node's full queues, by
	// queue; every queue is present.
	Lost map[string]uint64 `json:"lost"`
	// NotRelayed counts the intents delivered here but not handed on,
	// past the node's relay rate.
	NotRelayed uint64 `json:"not_relayed"`
	// RPCs and RPCBytes count the GossipSub RPCs received from peers,
	// control and duplicates included, and their bytes: gossip's cost on
	// the wire.
	RPCs     uint64 `json:"rpcs"`
	RPCBytes uint64 `json:"rpc_bytes"`
}

// Stats returns the node's intent counters.
func (n *Node) Stats() Stats {
	m := n.metrics
	s := Stats{
		Published:  promcount.Value(m.published),
		Received:   promcount.Value(m.received),
		Dropped:    map[string]uint64{},
		Lost:       map[string]uint64{},
		NotRelayed: promcount.Value(m.notRelayed),
		RPCs:       promcount.Value(m.rpcs),
		RPCBytes:   promcount.Value(m.rpcBytes),
	}
	for _, r := range intent.DropReasons() {
		s.Dropped[r] = promcount.Value(m.dropped.WithLabelValues(r))
	}
	for _, r := range lostReasons() {
		s.Lost[r] = promcount.Value(m.lost.WithLabelValues(r))
	}
	return s
}
