package simulations

import (
	"bufio"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Latency percentiles in milliseconds.
type Latency struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

func percentiles(d []time.Duration) Latency {
	if len(d) == 0 {
		return Latency{}
	}
	slices.Sort(d)
	at := func(p float64) float64 {
		i := int(p * float64(len(d)-1))
		return float64(d[i].Microseconds()) / 1000
	}
	return Latency{P50: at(0.5), P90: at(0.9), P99: at(0.99), Max: float64(d[len(d)-1].Microseconds()) / 1000}
}

// IntentStats are the gossip results.
type IntentStats struct {
	Published     int     `json:"published"`
	Delivered     int     `json:"delivered"`
	Expected      int     `json:"expected"`
	DeliveryRatio float64 `json:"delivery_ratio"`
	// OnTimeRatio counts only deliveries within a second of publishing:
	// a partition lowers it even when gossip repairs delivery later.
	OnTimeRatio float64 `json:"on_time_ratio"`
	LatencyMs   Latency `json:"latency_ms"`
	// Unexpected counts deliveries of intents the workload never
	// published: hostile ones that got through. It should be 0.
	Unexpected int `json:"unexpected"`
	// CPUSeconds is the process's CPU time (user and system) from the
	// workload's start to the end of the run, every node's together;
	// CPUPerDeliveryUs divides it by the deliveries. Under a virtual
	// clock it is still real CPU.
	CPUSeconds       float64 `json:"cpu_s"`
	CPUPerDeliveryUs float64 `json:"cpu_us_per_delivery"`
	// RPCsPerNode and RPCBytesPerNode are the GossipSub RPCs a node
	// received from the workload's start to the end of the run, control
	// and duplicates included, and their bytes: gossip's cost on the
	// wire, counted the same way for parley and the raw baseline.
	RPCsPerNode     float64 `json:"rpcs_per_node"`
	RPCBytesPerNode float64 `json:"rpc_bytes_per_node"`
}

// PerIntent divides a per-node figure of st by the intents published.
func (st IntentStats) PerIntent(v float64) float64 {
	if st.Published == 0 {
		return 0
	}
	return v / float64(st.Published)
}

// wire counts GossipSub RPCs received and their bytes.
type wire struct{ rpcs, bytes uint64 }

func (w wire) minus(v wire) wire { return wire{w.rpcs - v.rpcs, w.bytes - v.bytes} }

// setWire fills the wire figures of st from what nodes received.
func (st *IntentStats) setWire(w wire, nodes int) {
	st.RPCsPerNode = float64(w.rpcs) / float64(nodes)
	st.RPCBytesPerNode = float64(w.bytes) / float64(nodes)
}

// NegotiationStats are the negotiation results.
type NegotiationStats struct {
	Requested    int     `json:"requested"`
	Completed    int     `json:"completed"`
	Failed       int     `json:"failed"`
	SuccessRatio float64 `json:"success_ratio"`
	// WithLiveAgent counts the tasks requested while a capable agent was
	// alive, and CompletedWithLiveAgent those of them that completed.
	WithLiveAgent          int     `json:"with_live_agent"`
	CompletedWithLiveAgent int     `json:"completed_with_live_agent"`
	LatencyMs              Latency `json:"latency_ms"`
	// Failures counts failed negotiations by reason (the first 20 reasons).
	Failures map[string]int `json:"failures,omitempty"`
}

// Event is one fault on the timeline, at a time since the workload began.
type Event struct {
	AtS  float64 `json:"at_s"`
	What string  `json:"what"`
}

// Point is one sample of a time series.
type Point struct {
	AtS   float64 `json:"at_s"`
	Value float64 `json:"value"`
}

// Result is what a run measured. The JSON keys are parley sim's output.
type Result struct {
	Scenario        string           `json:"scenario"`
	Nodes           int              `json:"nodes"`
	Clock           string           `json:"clock"`
	Setup           Setup            `json:"setup"`
	Seed            uint64           `json:"seed"`
	WallS           float64          `json:"wall_s"`
	RSSMB           float64          `json:"rss_mb"`
	Intents         IntentStats      `json:"intents"`
	Negotiations    NegotiationStats `json:"negotiations"`
	Workflows       *WorkflowStats   `json:"workflows,omitempty"`
	MessagesPerNode float64          `json:"messages_per_node"` // verified intents received per node
	BytesPerNode    float64          `json:"bytes_per_node"`    // their envelope bytes per node
	// HealToFullS is, after a partition heals, how long until an intent
	// again reaches every node (-1 if none did).
	HealToFullS *float64 `json:"heal_to_full_delivery_s,omitempty"`
	Timeline    []Event  `json:"timeline"`
	// Hostile is what the attackers did and what came of it, in a run
	// with hostile peers.
	Hostile  *HostileStats `json:"hostile,omitempty"`
	Baseline *Baseline     `json:"baseline,omitempty"`
	Series   *Series       `json:"-"`
}

// HostileStats are the attack's figures. The flood starts with the
// workload, at 0 s.
type HostileStats struct {
	Peers int `json:"peers"`
	// Sent counts the bad intents the attackers published.
	Sent int `json:"sent"`
	// Delivered counts the distinct bad intents any node delivered to its
	// subscribers, Deliveries all such deliveries. Both should be 0.
	Delivered  int `json:"delivered"`
	Deliveries int `json:"deliveries"`
	// FloodEndS is when the last attacker had sent its last intent (0 if
	// the run ended first).
	FloodEndS float64 `json:"flood_end_s"`
	// Dropped counts the intents the honest nodes' validators and
	// admission layer dropped, by reason, summed over the nodes: one bad
	// intent is dropped once by each node it reaches.
	Dropped map[string]int `json:"dropped"`
}

// Baseline is the same topology and intents on raw GossipSub.
type Baseline struct {
	Clock   string      `json:"clock"` // virtual or real, as the run it is compared with
	Intents IntentStats `json:"intents"`
	WallS   float64     `json:"wall_s"`
	RSSMB   float64     `json:"rss_mb"`
}

// Series are the raw samples a report plots.
type Series struct {
	IntentLatencies      []time.Duration // every delivery
	NegotiationLatencies []time.Duration // every completed negotiation
	Deliveries           []Point         // cumulative deliveries over time
	Completions          []Point         // cumulative completions over time
	Down                 []Point         // nodes down over time (churn)
}

// peakRSSMB reads the process's peak resident set (VmHWM), in MB.
func peakRSSMB() float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.Fields(rest)[0], 64)
			return kb / 1024
		}
	}
	return 0
}
