package sharedctx

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/internal/promcount"
	"github.com/parleynet/parley/negotiation"
)

// More sentinel errors callers branch on.
var (
	// ErrTooManyContexts: the node holds Limits.MaxContexts contexts.
	ErrTooManyContexts = errors.New("too many shared contexts on this node")
	// ErrTooManyGrants: the node holds Limits.MaxGrants live grants.
	ErrTooManyGrants = errors.New("too many context grants on this node")
	// ErrUnknownContext: no context of that workflow on this node.
	ErrUnknownContext = errors.New("no such shared context")
	// ErrDenied: the context's node refused the read or write (not a
	// participant, step ended, key not granted, its policy).
	ErrDenied = errors.New("context access refused")
	// ErrNoContext: the task has no shared context (its requester gave
	// its step none); its winner may ask, and is told so.
	ErrNoContext = errors.New("no shared context for this task")
	// ErrClosed: the service was closed.
	ErrClosed = errors.New("shared context service closed")
)

// Limits are the node-side bounds on shared contexts. Zero fields take
// DefaultLimits' values.
type Limits struct {
	// MaxValueSize bounds one value, in bytes of JSON.
	MaxValueSize int `yaml:"max_value_size" json:"max_value_size"`
	// MaxKeys bounds the keys of one context.
	MaxKeys int `yaml:"max_keys" json:"max_keys"`
	// MaxBytes bounds one context's signed entries, in bytes.
	MaxBytes int `yaml:"max_bytes" json:"max_bytes"`
	// MaxContexts bounds the contexts this node holds (its workflows').
	MaxContexts int `yaml:"max_contexts" json:"max_contexts"`
	// MaxGrants bounds the task grants held; ended ones go first.
	MaxGrants int `yaml:"max_grants" json:"max_grants"`
	// MaxBatch bounds the entries of one write.
	MaxBatch int `yaml:"max_batch" json:"max_batch"`
	// MaxClockSkew is how far ahead of this node's clock an entry's HLC
	// may be.
	MaxClockSkew time.Duration `yaml:"max_clock_skew" json:"max_clock_skew"`
	// Timeout bounds one exchange on the protocol, on both sides.
	Timeout time.Duration `yaml:"timeout" json:"timeout"`
}

// DefaultLimits returns the limits used for zero fields.
func DefaultLimits() Limits {
	return Limits{
		MaxValueSize: 16 << 10,
		MaxKeys:      256,
		MaxBytes:     1 << 20,
		MaxContexts:  1024,
		MaxGrants:    4096,
		MaxBatch:     64,
		MaxClockSkew: identity.DefaultClockSkew,
		Timeout:      10 * time.Second,
	}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	for _, f := range []struct{ v, d *int }{{&l.MaxValueSize, &d.MaxValueSize}, {&l.MaxKeys, &d.MaxKeys},
		{&l.MaxBytes, &d.MaxBytes}, {&l.MaxContexts, &d.MaxContexts}, {&l.MaxGrants, &d.MaxGrants}, {&l.MaxBatch, &d.MaxBatch}} {
		if *f.v <= 0 {
			*f.v = *f.d
		}
	}
	if l.MaxClockSkew <= 0 {
		l.MaxClockSkew = d.MaxClockSkew
	}
	if l.Timeout <= 0 {
		l.Timeout = d.Timeout
	}
	return l
}

// maxEntry bounds one signed entry: its value and the envelope around it.
func (l Limits) maxEntry() int { return l.MaxValueSize + 2<<10 }

// maxFrame bounds one frame: a whole context, its entries base64 in JSON.
func (l Limits) maxFrame() int { return l.MaxBytes/3*4 + l.MaxBatch*l.maxEntry()/3*4 + 16<<10 }

// TaskSource says who won a task this node requested and whether it
// still runs; negotiation.Service is one.
type TaskSource interface {
	Task(id string) (negotiation.TaskInfo, error)
}

// Op is what an access does.
type Op string

// Ops.
const (
	OpRead  Op = "read"
	OpWrite Op = "write"
)

// Access is one read or write of a context as the Gate sees it, with what
// the service found. Rule is empty when the grant allows it, else it names
// why not: Gate refuses it then, audited, with Reason as the rationale.
type Access struct {
	// Peer is the requesting node, proven by the connection (this node
	// for a local agent's access).
	Peer peer.ID
	// Agent signed the request.
	Agent    identity.AgentID
	Task     string
	Workflow string // "" when no grant names Task
	Op       Op
	Keys     []string
	Rule     string
	Reason   string
}

// Refusal rules the service finds.
const (
	RuleNotParticipant = "context.not_a_participant"
	RuleStepEnded      = "context.step_ended"
	RuleKeyNotGranted  = "context.key_not_granted"
)

// Gate is the admission layer as the service sees it.
type Gate interface {
	// ContextStream is asked when a peer opens a context stream, before
	// anything on it is read.
	ContextStream(p peer.ID) error
	// ContextAccess is asked before every read and write is served; it
	// must refuse an Access whose Rule is set.
	ContextAccess(ctx context.Context, a Access) error
}

// Config sets up a Service.
type Config struct {
	// Host serves the protocol and dials homes; nil serves nothing (a
	// node's local contexts only).
	Host host.Host
	// Tasks tells the winner of a task and whether it runs; nil refuses
	// every participant's access.
	Tasks TaskSource
	// Gate admits streams and accesses; nil applies the grants alone.
	Gate Gate
	// Replay refuses frames seen before; nil: a window of the service's.
	Replay *identity.ReplayWindow
	// Limits are the node-side bounds.
	Limits Limits
	// Now is the wall clock; nil is time.Now.
	Now func() time.Time
	// Registerer receives the service's metrics; nil registers none.
	Registerer prometheus.Registerer
}

// Grant lets the committed winner of a task read and write keys of a
// workflow's context while the task runs.
type Grant struct {
	Workflow string   `json:"workflow"`
	Task     string   `json:"task"`
	Reads    []string `json:"reads"`
	Writes   []string `json:"writes"`
	revoked  bool
}

// Service holds this node's shared contexts and grants, serves
// ProtocolID and makes Clients for its agents' tasks elsewhere.
type Service struct {
	cfg   Config
	lim   Limits
	clock *Clock

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // stream handlers in flight

	mu       sync.Mutex
	closed   bool
	contexts map[string]*Replica
	grants   map[string]*Grant // by task
	order    []string          // grant tasks, oldest first, for eviction
	dropped  *prometheus.CounterVec
	applied  prometheus.Counter
	// node signs refusals for tasks with no context here; made once.
	node *identity.Agent
}

// New returns a Service and, with a Host, registers ProtocolID on it.
func New(cfg Config) *Service {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Replay == nil {
		cfg.Replay = identity.NewReplayWindow(identity.ReplayConfig{})
	}
	s := &Service{
		cfg:      cfg,
		lim:      cfg.Limits.withDefaults(),
		contexts: map[string]*Replica{},
		grants:   map[string]*Grant{},
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_context_dropped_total",
			Help: "Shared context requests this node refused for what they carried (not for who sent them: admission counts those), by reason.",
		}, []string{"reason"}),
		applied: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_context_entries_applied_total",
			Help: "Participants' context entries this node applied to the contexts it holds.",
		}),
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(s.dropped, s.applied)
	}
	s.clock = NewClock(cfg.Now, s.lim.MaxClockSkew)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if cfg.Host != nil {
		cfg.Host.SetStreamHandler(ProtocolID, s.handle)
	}
	return s
}

// Limits returns the limits in force.
func (s *Service) Limits() Limits { return s.lim }

// Clock returns the node's hybrid logical clock.
func (s *Service) Clock() *Clock { return s.clock }

// Close removes the stream handler and waits for the streams being served.
func (s *Service) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	if s.cfg.Host != nil {
		s.cfg.Host.RemoveStreamHandler(ProtocolID)
	}
	s.cancel()
	s.wg.Wait()
	return nil
}

// Open returns the home replica of workflow's context, making it if new,
// with owner (the workflow's requesting agent) signing its writes and
// this node's answers. A context has one owner: opening it as another
// agent is an error.
func (s *Service) Open(workflow string, owner *identity.Agent) (*Replica, error) {
	if err := validWorkflow(workflow); err != nil {
		return nil, err
	}
	if owner == nil {
		return nil, fmt.Errorf("context %s: no owner", workflow)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if r, ok := s.contexts[workflow]; ok {
		if r.owner.ID != owner.ID {
			return nil, fmt.Errorf("context %s is owned by %s, not %s", workflow, r.owner.ID, owner.ID)
		}
		return r, nil
	}
	if len(s.contexts) >= s.lim.MaxContexts {
		return nil, fmt.Errorf("context %s: %w (limit %d)", workflow, ErrTooManyContexts, s.lim.MaxContexts)
	}
	r := newReplica(workflow, owner, s.clock, s.lim)
	s.contexts[workflow] = r
	return r, nil
}

// Context returns the home replica of workflow's context, if open.
func (s *Service) Context(workflow string) (*Replica, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.contexts[workflow]
	return r, ok
}

// Drop forgets workflow's context and its grants, once the workflow is
// over and its engine has kept a Snapshot.
func (s *Service) Drop(workflow string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.contexts, workflow)
	for t, g := range s.grants {
		if g.Workflow == workflow {
			delete(s.grants, t)
		}
	}
}

// Grant lets the committed winner of task — a task this node requested as
// the context's owner — read the keys reads and write the keys writes of
// workflow's context, for as long as the task is working. A key ending in
// "*" grants every key it prefixes. Granting a task again replaces its
// keys.
func (s *Service) Grant(workflow, task string, reads, writes []string) error {
	if task == "" {
		return errors.New("context grant: no task")
	}
	for _, k := range slices.Concat(reads, writes) {
		if err := ValidKey(strings.TrimSuffix(k, "*")); err != nil && k != "*" {
			return fmt.Errorf("context grant for task %s: %w", task, err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.contexts[workflow]; !ok {
		return fmt.Errorf("context grant for task %s: %w %q", task, ErrUnknownContext, workflow)
	}
	g := &Grant{Workflow: workflow, Task: task, Reads: slices.Clone(reads), Writes: slices.Clone(writes)}
	if _, ok := s.grants[task]; ok {
		s.grants[task] = g
		return nil
	}
	if len(s.grants) >= s.lim.MaxGrants && !s.evictLocked() {
		return fmt.Errorf("context grant for task %s: %w (limit %d)", task, ErrTooManyGrants, s.lim.MaxGrants)
	}
	s.grants[task] = g
	s.order = append(s.order, task)
	if len(s.order) > 2*s.lim.MaxGrants {
		// Drop forgets grants without touching order.
		s.order = slices.DeleteFunc(s.order, func(t string) bool { _, ok := s.grants[t]; return !ok })
	}
	return nil
}

// evictLocked forgets the oldest grant that is revoked or whose task is
// over, and reports whether it found one.
func (s *Service) evictLocked() bool {
	kept := s.order[:0]
	evicted := false
	for _, t := range s.order {
		g, ok := s.grants[t]
		switch {
		case !ok:
			continue
		case !evicted && (g.revoked || !s.taskRuns(t)):
			delete(s.grants, t)
			evicted = true
			continue
		}
		kept = append(kept, t)
	}
	clear(s.order[len(kept):])
	s.order = kept
	return evicted
}

func (s *Service) taskRuns(task string) bool {
	if s.cfg.Tasks == nil {
		return false
	}
	ti, err := s.cfg.Tasks.Task(task)
	return err == nil && !ti.State.Terminal()
}

// Revoke ends task's grant: its winner is refused from now on.
func (s *Service) Revoke(task string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if g, ok := s.grants[task]; ok {
		g.revoked = true
	}
}

// Grants returns the grants of workflow's context.
func (s *Service) Grants(workflow string) []Grant {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Grant
	for _, g := range s.grants {
		if g.Workflow == workflow && !g.revoked {
			out = append(out, *g)
		}
	}
	slices.SortFunc(out, func(a, b Grant) int { return strings.Compare(a.Task, b.Task) })
	return out
}

// Dropped returns how many context requests were refused for what they
// carried (a bad frame, a bad entry, a rate), by reason.
func (s *Service) Dropped() map[string]uint64 { return promcount.ByLabel(s.dropped) }

// granted reports whether pattern list ks grants key.
func granted(ks []string, key string) bool {
	for _, k := range ks {
		if k == key || (strings.HasSuffix(k, "*") && strings.HasPrefix(key, strings.TrimSuffix(k, "*"))) {
			return true
		}
	}
	return false
}

// check finds whether agent, on peer p, may do op on keys under task: a
// task this node requested, whose committed winner is agent and which is
// working, granted a context of the task's requester. It returns the
// grant and replica when allowed (both nil when the winner's task simply
// has no context), and the Access for the Gate either way.
func (s *Service) check(p peer.ID, agent identity.AgentID, task string, op Op, keys []string) (*Grant, *Replica, Access) {
	a := Access{Peer: p, Agent: agent, Task: task, Op: op, Keys: keys}
	s.mu.Lock()
	g, ok := s.grants[task]
	var r *Replica
	if ok {
		gc := *g
		g = &gc
		a.Workflow = g.Workflow
		r = s.contexts[g.Workflow]
	}
	s.mu.Unlock()
	var ti negotiation.TaskInfo
	err := negotiation.ErrUnknownTask
	if s.cfg.Tasks != nil {
		ti, err = s.cfg.Tasks.Task(task)
	}
	switch {
	case err != nil || ti.Role != negotiation.RoleRequester:
		a.Rule, a.Reason = RuleNotParticipant, fmt.Sprintf("task %q is no task this node requested", task)
	case ti.Peer != agent:
		a.Rule, a.Reason = RuleNotParticipant, fmt.Sprintf("agent %s is not the committed winner of task %q", agent, task)
	case (g != nil && g.revoked) || ti.State != negotiation.StateWorking:
		a.Rule, a.Reason = RuleStepEnded, fmt.Sprintf("the step of task %q is not running (%s)", task, stepState(g, ti))
	case r == nil || ti.Agent != r.owner.ID:
		// The winner asks of a task with no context: nothing to refuse.
		return nil, nil, a
	default:
		allowed := g.Reads
		if op == OpWrite {
			allowed = g.Writes
		}
		for _, k := range keys {
			if !granted(allowed, k) {
				a.Rule, a.Reason = RuleKeyNotGranted, fmt.Sprintf("task %q may not %s key %q", task, op, k)
				break
			}
		}
	}
	if a.Rule != "" {
		return nil, nil, a
	}
	return g, r, a
}

func stepState(g *Grant, ti negotiation.TaskInfo) string {
	if g != nil && g.revoked {
		return "grant revoked"
	}
	return string(ti.State)
}

// admit runs check and the Gate; it returns the grant and replica, or an
// error wrapping ErrDenied, or ErrNoContext for the winner of a task
// that has none.
func (s *Service) admit(ctx context.Context, p peer.ID, agent identity.AgentID, task string, op Op, keys []string) (*Grant, *Replica, error) {
	g, r, a := s.check(p, agent, task, op, keys)
	if gt := s.cfg.Gate; gt != nil {
		if err := gt.ContextAccess(ctx, a); err != nil {
			return nil, nil, fmt.Errorf("%w: %w", ErrDenied, err)
		}
	}
	switch {
	case a.Rule != "":
		// A Gate must refuse what the grant does not allow; none did.
		return nil, nil, fmt.Errorf("%w: %s", ErrDenied, a.Reason)
	case r == nil:
		return nil, nil, fmt.Errorf("task %q: %w", task, ErrNoContext)
	}
	return g, r, nil
}

// Step is what the workflow engine declares for one step's task: its
// context and the keys it reads and writes.
type Step struct {
	Workflow string
	Reads    []string
	Writes   []string
}

type stepKey struct{}

// WithStep returns ctx carrying step: a Request made with it grants the
// context to the task's winner at award (the node's guard calls Grant),
// so the engine needs no task ID in advance.
func WithStep(ctx context.Context, step Step) context.Context {
	return context.WithValue(ctx, stepKey{}, step)
}

// StepFrom returns the step ctx carries, if any.
func StepFrom(ctx context.Context) (Step, bool) {
	st, ok := ctx.Value(stepKey{}).(Step)
	return st, ok
}
