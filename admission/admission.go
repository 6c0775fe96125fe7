package admission

import (
	"fmt"
	"time"

	logging "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/policy"
)

var log = logging.Logger("parley/admission")

// Entry names a way into a node.
type Entry string

// The entries a Layer watches.
const (
	EntryGossip    Entry = "gossip"
	EntryNegotiate Entry = "negotiate"
	EntryRPC       Entry = "rpc"
	EntryCard      Entry = "card"
	EntryAPI       Entry = "api"
	EntryTrace     Entry = "trace"   // /parley/trace/1.0.0: a peer reading this node's spans
	EntryA2A       Entry = "a2a"     // the A2A gateway (interop/a2a): its token and bounds
	EntryConnect   Entry = "connect" // an inbound connection, before its handshake
)

// ErrDenied is wrapped by every refusal; it is negotiation.ErrDenied, so a
// negotiation's caller can branch on either.
var ErrDenied = negotiation.ErrDenied

// Rate is a token bucket: PerSecond sustained, Burst at once. The zero
// Rate is no limit.
type Rate struct {
	PerSecond float64 `yaml:"per_second" json:"per_second"`
	Burst     int     `yaml:"burst" json:"burst"`
}

func (r Rate) set() bool { return r.PerSecond > 0 }

// Limits are the node-side bounds a Layer holds whatever the policy says.
// Zero fields take DefaultLimits' values; a negative count or rate turns
// that limit off.
type Limits struct {
	// IntentsPerForwarder bounds the intents of other nodes one connected
	// peer may hand this node, checked before their signatures are: a
	// flooder costs a token, not a verification. Over it, intents are
	// dropped unseen (they may come from another peer) at no cost to the
	// peer's score, since an honest relay carries what the mesh admitted.
	// A peer's own agents' intents are bounded by IntentsPerOrigin instead.
	IntentsPerForwarder Rate `yaml:"intents_per_forwarder"`
	// IntentsRelayed bounds the other nodes' intents this node hands on,
	// in all. Past it an intent is still delivered to this node's agents,
	// only not relayed: a node that relays more than its peers take from
	// it (their IntentsPerForwarder, 200/s by default) fills its own send
	// queues, where honest intents are lost with the rest. Keep it under
	// the peers' forwarder rate.
	IntentsRelayed Rate `yaml:"intents_relayed"`
	// IntentsPerOrigin bounds the intents of agents one proven node hosts.
	IntentsPerOrigin Rate `yaml:"intents_per_origin"`
	// IntentsPerAgent bounds one agent's intents (the policy's
	// rate_limits.intents_per_origin applies too, per agent).
	IntentsPerAgent Rate `yaml:"intents_per_agent"`
	// AsksPerPeer bounds the direct-ask streams one connected peer may
	// open, checked before the ask is read: every ask costs the node a
	// verification and a signed reply, even for an agent it does not host.
	AsksPerPeer Rate `yaml:"asks_per_peer"`
	// TracesPerPeer is how often one peer may ask for spans
	// (/parley/trace/1.0.0); TraceSpans bounds the spans in one answer.
	TracesPerPeer Rate `yaml:"traces_per_peer"`
	TraceSpans    int  `yaml:"trace_spans"`
	// ContextsPerPeer is how often one peer may open shared context
	// streams (/parley/context/1.0.0).
	ContextsPerPeer Rate `yaml:"contexts_per_peer"`
	// ConnectionsPerIP bounds the inbound connections one remote IP
	// address may open, checked before their handshake: a banned peer that
	// redials at once costs the node a key exchange each time, and a fresh
	// key gets it one more. Honest nodes stay connected; many behind one
	// NAT share the rate.
	ConnectionsPerIP Rate `yaml:"connections_per_ip"`
	// NewcomerAge is how long a peer is a newcomer, from the first of its
	// messages a limit above rated, unless it commits to a task with this
	// node first or it is a bootstrap peer. Newcomers share one budget of each
	// per-peer rate (forwarded intents, asks, traces, contexts), as large
	// as one peer's, on top of their own: keys cost nothing, and a swarm
	// of fresh ones gets what one peer gets. Negative: no newcomers.
	NewcomerAge time.Duration `yaml:"newcomer_age"`

	// BidHandlers bounds the bid handlers running at once: in all, per
	// local agent and per origin node of the calls.
	BidHandlers          int `yaml:"bid_handlers"`
	BidHandlersPerAgent  int `yaml:"bid_handlers_per_agent"`
	BidHandlersPerOrigin int `yaml:"bid_handlers_per_origin"`
	// Asks bounds the direct asks being answered at once, in all and per
	// asking node.
	Asks          int `yaml:"asks"`
	AsksPerOrigin int `yaml:"asks_per_origin"`

	// PendingApprovals bounds the steps waiting for a human, in all and
	// per remote peer; past it a step is refused at once.
	PendingApprovals        int `yaml:"pending_approvals"`
	PendingApprovalsPerPeer int `yaml:"pending_approvals_per_peer"`
	// MaxApprovalWait is the longest a step waits for a human, whatever
	// the task's deadline.
	MaxApprovalWait time.Duration `yaml:"max_approval_wait"`

	// MaxKeys bounds each table of per-peer or per-agent state (rate
	// buckets, penalties, refusal summaries); the least recently used goes.
	MaxKeys int `yaml:"max_keys"`
	// SummaryEvery is how often repeated refusals of one kind from one
	// peer are written to the audit log as one record.
	SummaryEvery time.Duration `yaml:"summary_every"`
}

// DefaultLimits returns the limits a Layer uses for zero fields.
func DefaultLimits() Limits {
	return Limits{
		IntentsPerForwarder:     Rate{PerSecond: 200, Burst: 100},
		IntentsRelayed:          Rate{PerSecond: 150, Burst: 75},
		IntentsPerOrigin:        Rate{PerSecond: 500, Burst: 500},
		IntentsPerAgent:         Rate{PerSecond: 500, Burst: 500},
		AsksPerPeer:             Rate{PerSecond: 100, Burst: 100},
		TracesPerPeer:           Rate{PerSecond: 2, Burst: 10},
		TraceSpans:              2000,
		ContextsPerPeer:         Rate{PerSecond: 50, Burst: 100},
		ConnectionsPerIP:        Rate{PerSecond: 32, Burst: 64},
		NewcomerAge:             10 * time.Minute,
		BidHandlers:             64,
		BidHandlersPerAgent:     16,
		BidHandlersPerOrigin:    8,
		Asks:                    128,
		AsksPerOrigin:           4,
		PendingApprovals:        256,
		PendingApprovalsPerPeer: 4,
		MaxApprovalWait:         10 * time.Minute,
		MaxKeys:                 10_000,
		SummaryEvery:            time.Minute,
	}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	rate := func(r *Rate, def Rate) {
		switch {
		case r.PerSecond < 0:
			*r = Rate{}
		case r.PerSecond == 0:
			*r = def
		case r.Burst <= 0:
			r.Burst = max(int(r.PerSecond), 1)
		}
	}
	rate(&l.IntentsPerForwarder, d.IntentsPerForwarder)
	rate(&l.IntentsRelayed, d.IntentsRelayed)
	rate(&l.IntentsPerOrigin, d.IntentsPerOrigin)
	rate(&l.IntentsPerAgent, d.IntentsPerAgent)
	rate(&l.AsksPerPeer, d.AsksPerPeer)
	rate(&l.TracesPerPeer, d.TracesPerPeer)
	rate(&l.ContextsPerPeer, d.ContextsPerPeer)
	rate(&l.ConnectionsPerIP, d.ConnectionsPerIP)
	count := func(n *int, def int) {
		if *n == 0 {
			*n = def
		}
	}
	count(&l.BidHandlers, d.BidHandlers)
	count(&l.BidHandlersPerAgent, d.BidHandlersPerAgent)
	count(&l.BidHandlersPerOrigin, d.BidHandlersPerOrigin)
	count(&l.Asks, d.Asks)
	count(&l.TraceSpans, d.TraceSpans)
	count(&l.AsksPerOrigin, d.AsksPerOrigin)
	count(&l.PendingApprovals, d.PendingApprovals)
	count(&l.PendingApprovalsPerPeer, d.PendingApprovalsPerPeer)
	count(&l.MaxKeys, d.MaxKeys)
	if l.MaxApprovalWait <= 0 {
		l.MaxApprovalWait = d.MaxApprovalWait
	}
	if l.SummaryEvery <= 0 {
		l.SummaryEvery = d.SummaryEvery
	}
	if l.NewcomerAge == 0 {
		l.NewcomerAge = d.NewcomerAge
	}
	return l
}

// RecordFunc appends a record to the node's audit log; nil records none.
type RecordFunc func(kind, task, agent string, p peer.ID, rationale string, detail any) error

// Config sets up a Layer.
type Config struct {
	// Policy is the node's policy engine; nil allows everything the
	// limits allow.
	Policy *policy.Engine
	// Limits are the node-side bounds.
	Limits Limits
	// Record writes the audit log.
	Record RecordFunc
	// Registerer receives the layer's metrics; nil registers none.
	Registerer prometheus.Registerer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Known are peers the operator named (the bootstrap peers): never
	// newcomers.
	Known []peer.ID
}

// Layer is a node's admission layer. Its methods are safe for concurrent
// use. Close flushes the refusal summaries.
type Layer struct {
	pol    *policy.Engine
	lim    Limits
	record RecordFunc
	now    func() time.Time

	forwarders, ownPasses, origins, agents, askers, tracers *buckets
	relayed                                                 *buckets // one bucket, for the node
	contexts                                                *buckets // context streams per peer
	conns                                                   *buckets // inbound connections per remote IP
	newcomers                                               *newcomers
	penalty                                                 *penalties
	slots                                                   *slots
	appr                                                    approvals
	denials                                                 *summaries

	denied *prometheus.CounterVec
}

// New returns a Layer.
func New(cfg Config) (*Layer, error) {
	if cfg.Policy == nil {
		cfg.Policy = policy.NewEngine(nil)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	lim := cfg.Limits.withDefaults()
	l := &Layer{
		pol:        cfg.Policy,
		lim:        lim,
		record:     cfg.Record,
		now:        cfg.Now,
		forwarders: newBuckets(lim.IntentsPerForwarder, lim.MaxKeys),
		ownPasses:  newBuckets(lim.IntentsPerOrigin, lim.MaxKeys),
		relayed:    newBuckets(lim.IntentsRelayed, 1),
		origins:    newBuckets(lim.IntentsPerOrigin, lim.MaxKeys),
		agents:     newBuckets(lim.IntentsPerAgent, lim.MaxKeys),
		askers:     newBuckets(lim.AsksPerPeer, lim.MaxKeys),
		tracers:    newBuckets(lim.TracesPerPeer, lim.MaxKeys),
		contexts:   newBuckets(lim.ContextsPerPeer, lim.MaxKeys),
		conns:      newBuckets(lim.ConnectionsPerIP, lim.MaxKeys),
		newcomers:  newNewcomers(lim, cfg.Known),
		penalty:    newPenalties(lim.MaxKeys),
		slots:      newSlots(),
		denials:    newSummaries(lim.MaxKeys),
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_admission_denied_total",
			Help: "Requests the admission layer refused, by entry and rule.",
		}, []string{"entry", "rule"}),
	}
	l.appr.init(lim)
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(l.denied); err != nil {
			return nil, fmt.Errorf("admission metrics: %w", err)
		}
	}
	return l, nil
}

// Policy returns the policy engine the layer decides with.
func (l *Layer) Policy() *policy.Engine { return l.pol }

// Limits returns the limits in force.
func (l *Layer) Limits() Limits { return l.lim }

// Close writes the pending refusal summaries to the audit log.
func (l *Layer) Close() {
	for _, s := range l.denials.drain() {
		l.writeSummary(s)
	}
}

// Refuse records a refusal made at an entry point that decides for itself
// (the local API's tokens; A2A and MCP to come), counted and summarised in
// the audit log like the layer's own: repeated refusals of one rule for
// one requester make one record a SummaryEvery. who names the requester as
// well as the entry can (a token's kind and a remote address). The error
// wraps ErrDenied.
func (l *Layer) Refuse(entry Entry, rule, who, rationale string, detail map[string]any) error {
	return l.deny(refusal{entry: entry, rule: rule, who: who, rationale: rationale, detail: detail})
}

// refusal is one refused request, for the metrics and the audit log.
type refusal struct {
	// who names the requester when it is not a peer (the local API).
	who       string
	entry     Entry
	stage     string // the step of the entry, if it has several
	rule      string // the policy rule or limit that refused
	task      string
	agent     string // the local agent, if any
	peer      peer.ID
	rationale string
	detail    map[string]any
}

// deny counts and records a refusal and returns its error.
func (l *Layer) deny(r refusal) error {
	l.denied.WithLabelValues(string(r.entry), r.rule).Inc()
	log.Debugw("refused", "entry", r.entry, "rule", r.rule, "peer", r.peer, "task", r.task, "rationale", r.rationale)
	if l.record != nil {
		var from any = r.peer
		if r.peer == "" {
			from = r.who
		}
		if first, s := l.denials.add(summaryKey{r.entry, r.stage, r.rule, from}, r, l.now(), l.lim.SummaryEvery); first {
			detail := map[string]any{"entry": r.entry, "rule": r.rule}
			if r.stage != "" {
				detail["stage"] = r.stage
			}
			if r.who != "" {
				detail["who"] = r.who
			}
			for k, v := range r.detail {
				detail[k] = v
			}
			if s != nil {
				detail["refused_since_last_record"] = s.count
			}
			_ = l.record("admission.denied", r.task, r.agent, r.peer, r.rationale, detail)
		}
	}
	return fmt.Errorf("%w: %s", ErrDenied, r.rationale)
}

func (l *Layer) writeSummary(s *summary) {
	if l.record == nil || s.count == 0 {
		return
	}
	_ = l.record("admission.denied", s.last.task, s.last.agent, s.last.peer,
		fmt.Sprintf("%d more refused like: %s", s.count, s.last.rationale),
		map[string]any{"entry": s.last.entry, "stage": s.last.stage, "rule": s.last.rule, "refused_since_last_record": s.count})
}

// decided turns a policy decision into nil or a recorded refusal.
func (l *Layer) decided(d policy.Decision, r refusal) error {
	if d.Allow {
		return nil
	}
	r.rule, r.rationale = ruleOf(d), d.Rationale
	return l.deny(r)
}

func ruleOf(d policy.Decision) string {
	if d.Rule == "" {
		return "policy"
	}
	return d.Rule
}
