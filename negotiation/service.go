package negotiation

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	logging "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/intent"
	"github.com/parleynet/parley/internal/promcount"
	"github.com/parleynet/parley/negotiation/frame"
)

var log = logging.Logger("parley/negotiation")

// PublishFunc gossips a call for proposals signed by agent; the node
// supplies it.
type PublishFunc func(ctx context.Context, agent *identity.Agent, body intent.Body, ttl time.Duration) (*intent.Intent, error)

// Config sets up a Service. Zero durations take the defaults shown.
type Config struct {
	// Publish sends calls for proposals. Required to make requests.
	Publish PublishFunc
	// Replay refuses replayed frames; the node shares its window.
	Replay *identity.ReplayWindow
	// MaxFrameSize caps one frame (default frame.DefaultMaxSize).
	MaxFrameSize int
	// Registerer receives the service's metrics; nil registers none.
	Registerer prometheus.Registerer
	// Guard is consulted at every decision; nil allows everything.
	Guard Guard
	// Audit records each step before it is acknowledged; nil records none.
	Audit AuditFunc
	// Forged, if set, hears of each frame a peer sent that no honest
	// peer sends (identity.Forged), after its stream is reset.
	Forged func(p peer.ID, reason string)
	// Tracer records each phase as a span (tracing.Start); nil records
	// none and costs nothing.
	Tracer trace.Tracer

	BidWindow       time.Duration // default 1s
	Timeout         time.Duration // a task's deadline; default 60s
	CommitTimeout   time.Duration // default 5s
	ProgressTimeout time.Duration // default 10s
	Calls           int           // calls for proposals per task; default 2
	// KeepTasks bounds how many tasks are remembered on each side
	// (default 1000). Past it the oldest that have ended are forgotten; a
	// contractor's standing-by bid counts as ended once its deadline
	// passes.
	KeepTasks int

	// Bounds on what a remote requester may choose. A call asks for a bid
	// window, a deadline and a progress interval; this node holds a bid
	// handler, a stream and a table entry for them, so each is clamped:
	// MaxBidWindow (default 10s), MaxTaskDuration from the call's arrival
	// (default 10m), progress intervals to MaxProgressTimeout (default
	// 1m).
	MaxBidWindow       time.Duration
	MaxTaskDuration    time.Duration
	MaxProgressTimeout time.Duration
	// MaxBidsPerCall bounds the bids (and refusals) a requester takes per
	// call (default 64); later ones are refused without being kept.
	MaxBidsPerCall int
	// MaxContracts bounds the calls this node's contractors are bidding on
	// or working on at once (default 1024), and MaxContractsPerOrigin
	// those from one requesting node (default 64); past either, new calls
	// are ignored.
	MaxContracts, MaxContractsPerOrigin int
	// StandbyWait is how long after its bid window a bidder waits on its
	// stream for a verdict (default 30s): a requester awards at the
	// window's close, then moves down the ranking one commit timeout at a
	// time. A bidder whose wait ends counts as rejected, still eligible for
	// a re-award on a new stream until the deadline.
	StandbyWait time.Duration
	// DialPrivateAddrs lets a contractor dial the private and loopback
	// addresses a call's requester gives (a LAN or a test); by default only
	// public ones are used, so a call cannot aim this node at internal
	// hosts.
	DialPrivateAddrs bool
	// MaxCounterRounds bounds the counter-offers per bid, on both sides
	// (default 3; negative: none). A requester's strategy makes at most
	// this many; a contractor resets a stream that brings more.
	MaxCounterRounds int
	// MaxAsks bounds a winner's questions to its requester per task, on
	// both sides (default 3; negative: none, and this node's calls say it
	// answers none). MaxQuestion bounds a question's note and schema in
	// bytes (default 4 KiB), MaxAnswer an answer (default 64 KiB).
	MaxAsks, MaxQuestion, MaxAnswer int
	// Reach, if set, says how many peers a call on capability would reach
	// now; a call that gets no bid says so ("no capable agent found").
	Reach func(capability string) int
}

func (c *Config) setDefaults() {
	if c.BidWindow <= 0 {
		c.BidWindow = time.Second
	}
	if c.Timeout <= 0 {
		c.Timeout = time.Minute
	}
	if c.CommitTimeout <= 0 {
		c.CommitTimeout = 5 * time.Second
	}
	if c.ProgressTimeout <= 0 {
		c.ProgressTimeout = 10 * time.Second
	}
	if c.Calls <= 0 {
		c.Calls = 2
	}
	if c.MaxFrameSize <= 0 {
		c.MaxFrameSize = frame.DefaultMaxSize
	}
	if c.KeepTasks <= 0 {
		c.KeepTasks = 1000
	}
	if c.MaxBidWindow <= 0 {
		c.MaxBidWindow = 10 * time.Second
	}
	if c.MaxTaskDuration <= 0 {
		c.MaxTaskDuration = 10 * time.Minute
	}
	if c.MaxProgressTimeout <= 0 {
		c.MaxProgressTimeout = time.Minute
	}
	if c.MaxBidsPerCall <= 0 {
		c.MaxBidsPerCall = 64
	}
	if c.MaxContracts <= 0 {
		c.MaxContracts = 1024
	}
	if c.MaxContractsPerOrigin <= 0 {
		c.MaxContractsPerOrigin = 64
	}
	switch {
	case c.MaxCounterRounds == 0:
		c.MaxCounterRounds = 3
	case c.MaxCounterRounds < 0:
		c.MaxCounterRounds = 0
	}
	switch {
	case c.MaxAsks == 0:
		c.MaxAsks = DefaultMaxAsks
	case c.MaxAsks < 0:
		c.MaxAsks = 0
	}
	if c.MaxQuestion <= 0 {
		c.MaxQuestion = DefaultMaxQuestion
	}
	if c.MaxAnswer <= 0 {
		c.MaxAnswer = DefaultMaxAnswer
	}
	if c.StandbyWait <= 0 {
		c.StandbyWait = 30 * time.Second
	}
}

// Service runs both roles of the contract net for one node.
type Service struct {
	h   host.Host
	cfg Config
	m   *metrics

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu          sync.Mutex
	closed      bool
	requests    map[string]*request       // by task ID
	contracts   map[contractKey]*contract // by requester, task ID and our agent
	contractors map[identity.AgentID]*contractor
	finished    []string      // requested task IDs in the order they ended, for eviction
	arrived     []contractKey // contracts in the order they arrived, for eviction
	// byOrigin lists each requester node's contracts that were live when
	// last counted, so that MaxContractsPerOrigin is checked against a
	// node's own few rather than a walk of the whole table (which past
	// KeepTasks holds a thousand ended ones). It is rebuilt at each sweep,
	// so it never holds more than arrived.
	byOrigin map[peer.ID][]contractKey
	// sweepAfter holds off the next sweep for evictable contracts after
	// one that found too few: under a flood of live contracts every
	// insert would otherwise scan them all.
	sweepAfter time.Time
	// locals are the open in-process streams of self-calls (local.go).
	locals   map[*localStream]struct{}
	localIDs atomic.Uint64
}

// contractKey names a contract: task IDs are public on the topic, so one
// requester's task ID must not reach another requester's contract.
type contractKey struct {
	requester identity.AgentID
	task      string
	agent     identity.AgentID
}

// New starts a Service on h and registers its stream handler.
func New(h host.Host, cfg Config) *Service {
	cfg.setDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Service{
		h:           h,
		cfg:         cfg,
		m:           newMetrics(cfg.Registerer),
		ctx:         ctx,
		cancel:      cancel,
		requests:    map[string]*request{},
		contracts:   map[contractKey]*contract{},
		byOrigin:    map[peer.ID][]contractKey{},
		contractors: map[identity.AgentID]*contractor{},
	}
	h.SetStreamHandler(ProtocolID, s.handleStream)
	return s
}

// Close stops the stream handler, cancels every task this node requests or
// works on, and waits for their goroutines.
func (s *Service) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.h.RemoveStreamHandler(ProtocolID)
	s.cancel()
	// Every conversation ends with its stream: reset them all, whatever
	// the peers do, and again while a goroutine finishing opens another.
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	for {
		s.resetStreams()
		s.resetLocals()
		select {
		case <-done:
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// resetStreams resets this node's open negotiation streams.
func (s *Service) resetStreams() {
	for _, c := range s.h.Network().Conns() {
		for _, st := range c.GetStreams() {
			if st.Protocol() == ProtocolID {
				_ = st.Reset()
			}
		}
	}
}

// goroutine runs f as a goroutine the service owns.
func (s *Service) goroutine(f func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() {
			if r := recover(); r != nil {
				log.Errorw("negotiation goroutine panicked; task abandoned", "panic", r)
			}
		}()
		f()
	}()
	return true
}

func (s *Service) newConn(st network.Stream, self *identity.Agent) *frame.Conn {
	return frame.New(st, self, frame.Options{MaxSize: s.cfg.MaxFrameSize, Replay: s.cfg.Replay})
}

// recv reads the next frame and refuses versions this node does not speak.
func (s *Service) recv(conn *frame.Conn, w *wire) (*identity.Message, error) {
	m, err := conn.Recv(w)
	if err == nil && m.V != wireVersion {
		return nil, fmt.Errorf("negotiation: %s version %d from %s, this node speaks %d: %w", m.Type, m.V, m.From, wireVersion, identity.ErrUnsupportedVersion)
	}
	return m, err
}

// refuseFrame resets a stream whose frame failed verification and counts
// why. Nothing a peer sends gets further than this.
func (s *Service) refuseFrame(st network.Stream, err error) {
	reason := frame.Reason(err)
	if reason == "" {
		reason = "stream"
	}
	if s.cfg.Forged != nil && identity.Forged(err) {
		s.cfg.Forged(st.Conn().RemotePeer(), reason)
	}
	s.m.dropped.WithLabelValues(reason).Inc()
	log.Debugw("negotiation frame refused; stream reset", "peer", st.Conn().RemotePeer(), "reason", reason, "err", err)
	_ = st.Reset()
}

// handleStream serves a stream a peer opened: a bidder's proposal (we are
// the requester) or a requester's re-award (we are the contractor).
func (s *Service) handleStream(st network.Stream) {
	if !s.goroutine(func() { s.serveStream(st) }) {
		_ = st.Reset()
	}
}

func (s *Service) serveStream(st network.Stream) {
	conn := s.newConn(st, nil)
	conn.SetReadTimeout(s.cfg.CommitTimeout)
	var w wire
	m, err := s.recv(conn, &w)
	if err != nil {
		s.refuseFrame(st, err)
		return
	}
	switch m.Type {
	case msgPropose, msgRefuse:
		s.mu.Lock()
		r := s.requests[w.Task]
		s.mu.Unlock()
		if r == nil {
			// A bid for a task we never asked for, or long forgotten.
			_ = st.Reset()
			s.m.dropped.WithLabelValues("unknown_task").Inc()
			return
		}
		conn.SetSelf(r.agent)
		conn.ExpectPeer(m.From)
		r.receiveBid(conn, m.Type, m.From, w)
	case msgAccept:
		s.mu.Lock()
		c := s.contracts[contractKey{m.From, w.Task, w.Agent}]
		s.mu.Unlock()
		if c == nil || st.Conn().RemotePeer() != c.call.RequesterPeer {
			// Not a task of ours from this requester, or not from its node.
			_ = st.Reset()
			s.m.dropped.WithLabelValues("unknown_task").Inc()
			return
		}
		conn.SetSelf(c.agent)
		conn.ExpectPeer(m.From)
		c.serveAward(s.ctx, conn, w)
	default:
		s.refuseFrame(st, fmt.Errorf("%w: a stream may not open with %q", frame.ErrBadBody, m.Type))
	}
}

// Tasks lists every task this node knows, newest first.
func (s *Service) Tasks() []TaskInfo {
	s.mu.Lock()
	reqs := make([]*request, 0, len(s.requests))
	for _, r := range s.requests {
		reqs = append(reqs, r)
	}
	cons := make([]*contract, 0, len(s.contracts))
	for _, c := range s.contracts {
		cons = append(cons, c)
	}
	s.mu.Unlock()
	out := make([]TaskInfo, 0, len(reqs)+len(cons))
	for _, r := range reqs {
		out = append(out, r.info())
	}
	for _, c := range cons {
		out = append(out, c.info())
	}
	slices.SortFunc(out, func(a, b TaskInfo) int { return b.Updated.Compare(a.Updated) })
	return out
}

// Task returns one task; a task this node both requested and bid on is
// shown from the requester's side.
func (s *Service) Task(id string) (TaskInfo, error) {
	s.mu.Lock()
	r := s.requests[id]
	var c *contract
	for k, v := range s.contracts {
		if k.task == id {
			c = v
			break
		}
	}
	s.mu.Unlock()
	switch {
	case r != nil:
		return r.info(), nil
	case c != nil:
		return c.info(), nil
	}
	return TaskInfo{}, fmt.Errorf("%w %q", ErrUnknownTask, id)
}

// Cancel cancels a task this node requested or works on.
func (s *Service) Cancel(id string) error {
	s.mu.Lock()
	r := s.requests[id]
	var cs []*contract
	for k, v := range s.contracts {
		if k.task == id {
			cs = append(cs, v)
		}
	}
	s.mu.Unlock()
	if r == nil && len(cs) == 0 {
		return fmt.Errorf("%w %q", ErrUnknownTask, id)
	}
	done := false
	if r != nil {
		done = r.cancel("") || done
	}
	for _, c := range cs {
		done = c.cancel("canceled by the contractor") || done
	}
	if !done {
		return fmt.Errorf("task %q: %w", id, errAlreadyEnded)
	}
	return nil
}

var errAlreadyEnded = errors.New("task already ended")

// ErrAlreadyEnded is returned by Cancel for a task that has ended.
var ErrAlreadyEnded = errAlreadyEnded

// endedLocked records that a requested task ended and evicts the oldest
// ended tasks past KeepTasks. Call with s.mu held.
func (s *Service) endedLocked(task string) {
	s.finished = append(s.finished, task)
	for len(s.finished) > s.cfg.KeepTasks {
		old := s.finished[0]
		s.finished[0] = ""
		s.finished = s.finished[1:]
		if r, ok := s.requests[old]; ok && r.ended() {
			delete(s.requests, old)
		}
	}
}

// addContractLocked adds a contract and, once there are KeepTasks, forgets
// the oldest that are over (ended, or standing by past their deadline)
// down to nine tenths of KeepTasks: a sweep is a pass over the table, so a
// full table pays it once every tenth of KeepTasks contracts, not on each
// (at one per add, a node at its bound spent a fifth of a negotiation on
// it). It reports why it added nothing: MaxContracts are live, or
// MaxContractsPerOrigin from this requester's node. Call with s.mu held.
func (s *Service) addContractLocked(k contractKey, c *contract) string {
	now := time.Now()
	if len(s.contracts) >= s.cfg.KeepTasks && !now.Before(s.sweepAfter) {
		keep := s.cfg.KeepTasks - max(s.cfg.KeepTasks/10, 1)
		kept := s.arrived[:0]
		seen := make(map[contractKey]bool, len(s.arrived))
		for _, ak := range s.arrived {
			old, ok := s.contracts[ak]
			switch {
			case !ok || seen[ak]:
			case len(s.contracts) > keep && old.over(now):
				delete(s.contracts, ak)
			default:
				seen[ak] = true
				kept = append(kept, ak)
			}
		}
		clear(s.arrived[len(kept):])
		s.arrived = kept
		clear(s.byOrigin)
		for _, ak := range kept {
			o := s.contracts[ak].call.RequesterPeer
			s.byOrigin[o] = append(s.byOrigin[o], ak)
		}
		if len(s.contracts) >= s.cfg.KeepTasks {
			s.sweepAfter = now.Add(100 * time.Millisecond)
		}
	}
	if len(s.contracts) >= s.cfg.MaxContracts {
		return "contracts_full"
	}
	o := c.call.RequesterPeer
	if s.liveFromLocked(o, now) >= s.cfg.MaxContractsPerOrigin {
		return "contracts_per_origin"
	}
	if _, again := s.contracts[k]; again {
		// A contract replaced under its key (contractor.go) is listed
		// once, as the new one.
		s.byOrigin[o] = slices.DeleteFunc(s.byOrigin[o], func(ok contractKey) bool { return ok == k })
	}
	s.contracts[k] = c
	s.arrived = append(s.arrived, k)
	s.byOrigin[o] = append(s.byOrigin[o], k)
	return ""
}

// liveFromLocked counts origin's live contracts, forgetting those that
// are over: a contract over stays over (ended, or past its deadline and
// idle), so what is dropped need not be looked at again.
func (s *Service) liveFromLocked(origin peer.ID, now time.Time) int {
	ks := s.byOrigin[origin]
	live := ks[:0]
	for _, k := range ks {
		if c, ok := s.contracts[k]; ok && c.call.RequesterPeer == origin && !c.over(now) {
			live = append(live, k)
		}
	}
	clear(ks[len(live):])
	if len(live) == 0 {
		delete(s.byOrigin, origin)
	} else {
		s.byOrigin[origin] = live
	}
	return len(live)
}

// history is a task's state and its transitions, safe for concurrent use.
type history struct {
	mu      sync.Mutex
	state   State
	steps   []Transition
	updated time.Time
}

func (h *history) set(st State, note string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.state.Terminal() {
		return
	}
	now := time.Now()
	h.state, h.updated = st, now
	h.steps = append(h.steps, Transition{State: st, At: now, Note: note})
}

func (h *history) note(note string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now()
	h.updated = now
	h.steps = append(h.steps, Transition{State: h.state, At: now, Note: note})
}

// current is the state alone, without copying the history.
func (h *history) current() State {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.state
}

func (h *history) get() (State, []Transition, time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.state, slices.Clone(h.steps), h.updated
}

type metrics struct {
	dropped  *prometheus.CounterVec
	outcomes *prometheus.CounterVec
	latency  prometheus.Histogram
	// The success metrics: how long each stage takes, how many tasks
	// complete with and without a human, re-awards and the time to recover
	// after a contractor let the task down.
	stages    *prometheus.HistogramVec
	completed *prometheus.CounterVec
	reawards  *prometheus.CounterVec
	recovery  prometheus.Histogram
	// counters are this node's counter-offers by the bidder's answer.
	counters *prometheus.CounterVec
}

// Stages of a requested task, as parley_negotiation_stage_seconds labels
// them: first_bid (call to the first bid), award (call to the first
// award), commit (an award to its commit), work (commit to result).
const (
	stageFirstBid = "first_bid"
	stageAward    = "award"
	stageCommit   = "commit"
	stageWork     = "work"
)

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_negotiation_frames_dropped_total",
			Help: "Negotiation frames refused (stream reset), by reason.",
		}, []string{"reason"}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_negotiations_total",
			Help: "Negotiations ended, by role and final state.",
		}, []string{"role", "state"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "parley_negotiation_duration_seconds",
			Help:    "Requested tasks from call to end.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 14),
		}),
		stages: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "parley_negotiation_stage_seconds",
			Help:    "Requested tasks' stages: call to first bid, call to first award, award to commit, commit to result.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16), // 1 ms … 33 s
		}, []string{"stage"}),
		completed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_tasks_completed_total",
			Help: "Requested tasks completed, by whether a human approved the award (approval=\"human\") or none was asked (\"none\").",
		}, []string{"approval"}),
		reawards: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_negotiation_reawards_total",
			Help: "Awards after the first in a task, by what became of the bid before: failed, declined, silent, denied or other.",
		}, []string{"after"}),
		counters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_negotiation_counters_total",
			Help: "Counter-offers this node's requesters made, by the bidder's answer: accepted, revised, refused, silent or failed.",
		}, []string{"reply"}),
		recovery: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "parley_negotiation_recovery_seconds",
			Help:    "From a contractor letting a task down (failure, decline, silence) to the next commit.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
	}
	for _, s := range []string{stageFirstBid, stageAward, stageCommit, stageWork} {
		m.stages.WithLabelValues(s)
	}
	for _, a := range []string{"human", "none"} {
		m.completed.WithLabelValues(a)
	}
	for _, r := range []string{"accepted", "revised", "refused", "silent", "failed"} {
		m.counters.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.dropped, m.outcomes, m.latency, m.stages, m.completed, m.reawards, m.recovery, m.counters)
	}
	return m
}

// Dropped returns how many frames were refused, by reason.
func (s *Service) Dropped() map[string]uint64 { return promcount.ByLabel(s.m.dropped) }

// Participants returns the nodes that took part in task on this node: for
// a task it requested, every bidder's node (refusals too); for one its
// agents bid on, the requester's node. It is how this node decides who
// may read the task's spans.
func (s *Service) Participants(task string) []peer.ID {
	s.mu.Lock()
	r := s.requests[task]
	var out []peer.ID
	for k, c := range s.contracts {
		if k.task == task {
			out = append(out, c.call.RequesterPeer)
		}
	}
	s.mu.Unlock()
	if r != nil {
		r.mu.Lock()
		for _, b := range r.all {
			out = append(out, b.info.Peer)
		}
		r.mu.Unlock()
	}
	slices.Sort(out)
	return slices.Compact(out)
}
