package policy

import (
	"container/list"
	"fmt"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/time/rate"

	"github.com/parleynet/parley/identity"
)

const (
	// MaxOrigins bounds the rate limiters an Engine keeps; past it, the
	// least recently used is forgotten.
	MaxOrigins = 10_000
	// OriginIdle is how long an origin's rate limiter is kept unused.
	OriginIdle = 10 * time.Minute
	// SpendWindow is the sliding window of max_spend_per_hour. Spend is
	// counted to the second.
	SpendWindow = time.Hour
)

const spendSlots = int64(SpendWindow / time.Second)

// Decision is the Engine's answer to one question.
type Decision struct {
	// Allow is the answer. The zero Decision denies.
	Allow bool
	// Rationale says why, for a human and the audit log.
	Rationale string
	// Rule names the section or rule that decided, e.g.
	// "agents.default.offer" or "budgets.max_price_per_task"; it is empty
	// when no rule applied and the policy allowed by default.
	Rule string
}

// String returns "allow: <rationale>" or "deny: <rationale>".
func (d Decision) String() string {
	if d.Allow {
		return "allow: " + d.Rationale
	}
	return "deny: " + d.Rationale
}

func allow(rule, format string, args ...any) Decision {
	return Decision{Allow: true, Rationale: fmt.Sprintf(format, args...), Rule: rule}
}

func deny(rule, format string, args ...any) Decision {
	return Decision{Allow: false, Rationale: fmt.Sprintf(format, args...), Rule: rule}
}

// num formats a number the way the policy file would write it.
func num(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// Engine answers policy questions. It holds the current Policy, swapped
// atomically on reload, and the state the policy's limits need: a rate
// limiter per remote origin, the spend of the last hour and the number of
// running tasks. It is safe for concurrent use; all its state is behind
// one mutex held for short, non-blocking sections.
type Engine struct {
	policy atomic.Pointer[Policy]

	mu      sync.Mutex
	origins map[identity.AgentID]*list.Element // of *origin
	lru     list.List                          // front: most recently used
	// spend is a ring indexed by Unix second, made at the first spend:
	// most nodes never award, and it is 56 KiB.
	spend *[spendSlots]spendSlot
	// reserved is held by awards whose result has not come.
	reserved float64
	running  int
}

// origin is the rate limiter state of one remote agent.
type origin struct {
	id   identity.AgentID
	lim  *rate.Limiter
	rule rateRule  // the rule lim was last set to
	last time.Time // latest use
}

type spendSlot struct {
	sec int64 // Unix second this slot holds
	sum float64
}

// NewEngine returns an Engine enforcing p; nil means Allow().
func NewEngine(p *Policy) *Engine {
	if p == nil {
		p = Allow()
	}
	e := &Engine{origins: make(map[identity.AgentID]*list.Element)}
	e.policy.Store(p)
	return e
}

// Swap replaces the policy, as on a reload; nil means Allow(). State
// survives where it still applies: rate limiters keep their tokens (and
// take the new rate and burst at their next use) unless the new policy has
// no intent rate limit; the last hour's spend and the running tasks count
// against the new budgets and max_concurrent_tasks.
func (e *Engine) Swap(p *Policy) {
	if p == nil {
		p = Allow()
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.policy.Store(p)
	if p.intentRate == nil {
		clear(e.origins)
		e.lru.Init()
	}
}

// Policy returns the policy in force.
func (e *Engine) Policy() *Policy { return e.policy.Load() }

// capRule finds the offer or request list for a local agent: its own, else
// the default agent's, else none (any capability).
func (p *Policy) capRule(agent, verb string) (capSet, string) {
	pick := func(r agentRule) capSet {
		if verb == "offer" {
			return r.offer
		}
		return r.request
	}
	if r, ok := p.agents[agent]; ok && pick(r).set {
		return pick(r), "agents." + agent + "." + verb
	}
	if r, ok := p.agents[DefaultAgentKey]; ok && pick(r).set {
		return pick(r), "agents." + DefaultAgentKey + "." + verb
	}
	return capSet{}, ""
}

func (e *Engine) capability(agent, capability, verb string) Decision {
	cs, rule := e.Policy().capRule(agent, verb)
	if !cs.set {
		return allow("", "agent %s may %s any capability (no agents rule)", agent, verb)
	}
	if _, ok := cs.caps[capability]; !ok {
		return deny(rule, "agent %s may not %s %s (%s)", agent, verb, capability, rule)
	}
	return allow(rule, "agent %s may %s %s (%s)", agent, verb, capability, rule)
}

// Offer decides whether the local agent may bid on capability.
func (e *Engine) Offer(agent, capability string) Decision {
	return e.capability(agent, capability, "offer")
}

// Request decides whether the local agent may request capability.
func (e *Engine) Request(agent, capability string) Decision {
	return e.capability(agent, capability, "request")
}

// Peer decides whether this node deals with peer p.
func (e *Engine) Peer(p peer.ID) Decision {
	pol := e.Policy()
	if _, ok := pol.peerDeny[p]; ok {
		return deny("peers.deny", "peer %s is denied (peers.deny)", p)
	}
	if len(pol.peerAllow) > 0 {
		if _, ok := pol.peerAllow[p]; !ok {
			return deny("peers.allow", "peer %s is not in peers.allow", p)
		}
		return allow("peers.allow", "peer %s is in peers.allow", p)
	}
	return noPeersRule
}

// Allows with no rule behind them are constants: they are asked for every
// message received, and formatting IDs into them would cost more than
// the check.
var (
	noPeersRule  = Decision{Allow: true, Rationale: "allowed (no peers rule)"}
	noAgentsRule = Decision{Allow: true, Rationale: "allowed (no remote_agents rule)"}
	noRateLimit  = Decision{Allow: true, Rationale: "allowed (no rate limit)"}
)

// RemoteAgent decides whether this node deals with the remote agent id.
func (e *Engine) RemoteAgent(id identity.AgentID) Decision {
	pol := e.Policy()
	if _, ok := pol.agentDeny[id]; ok {
		return deny("remote_agents.deny", "agent %s is denied (remote_agents.deny)", id)
	}
	if len(pol.agentAllow) > 0 {
		if _, ok := pol.agentAllow[id]; !ok {
			return deny("remote_agents.allow", "agent %s is not in remote_agents.allow", id)
		}
		return allow("remote_agents.allow", "agent %s is in remote_agents.allow", id)
	}
	return noAgentsRule
}

// Intent decides whether to accept an intent signed by origin and received
// from peer from: both must pass Peer and RemoteAgent, and origin must be
// within its rate limit. Only an intent that passes the lists takes a
// token.
func (e *Engine) Intent(origin identity.AgentID, from peer.ID, now time.Time) Decision {
	if d := e.Peer(from); !d.Allow {
		return d
	}
	if d := e.RemoteAgent(origin); !d.Allow {
		return d
	}
	return e.IntentRate(origin, now)
}

// IntentRate takes a token from origin's bucket of
// rate_limits.intents_per_origin, if the policy has one.
func (e *Engine) IntentRate(origin identity.AgentID, now time.Time) Decision {
	const rule = "rate_limits.intents_per_origin"
	e.mu.Lock()
	defer e.mu.Unlock()
	// Read the policy under mu so that a concurrent Swap cannot clear the
	// limiters between the read and their use.
	r := e.Policy().intentRate
	if r == nil {
		return noRateLimit
	}
	if !e.takeLocked(origin, *r, now) {
		return deny(rule, "rate limit %s/s (burst %d) for %s exceeded", num(r.perSecond), r.burst, origin)
	}
	return allow(rule, "intent from %s is within rate limit %s/s", origin, num(r.perSecond))
}

// takeLocked takes a token from origin's bucket.
func (e *Engine) takeLocked(id identity.AgentID, r rateRule, now time.Time) bool {
	for b := e.lru.Back(); b != nil && now.Sub(b.Value.(*origin).last) > OriginIdle; b = e.lru.Back() {
		e.removeLocked(b)
	}
	var o *origin
	if el, ok := e.origins[id]; ok {
		o = el.Value.(*origin)
		e.lru.MoveToFront(el)
		// Callers' clocks race a little; never move a bucket back in time,
		// or it would refill twice.
		now = latest(now, o.last)
		if o.rule != r {
			o.lim.SetLimitAt(now, rate.Limit(r.perSecond))
			o.lim.SetBurstAt(now, r.burst)
			o.rule = r
		}
	} else {
		if len(e.origins) >= MaxOrigins {
			e.removeLocked(e.lru.Back())
		}
		o = &origin{id: id, lim: rate.NewLimiter(rate.Limit(r.perSecond), r.burst), rule: r}
		e.origins[id] = e.lru.PushFront(o)
	}
	o.last = now
	return o.lim.AllowN(now, 1)
}

func (e *Engine) removeLocked(el *list.Element) {
	delete(e.origins, el.Value.(*origin).id)
	e.lru.Remove(el)
}

func latest(a, b time.Time) time.Time {
	if a.Before(b) {
		return b
	}
	return a
}

// Award decides whether a local agent may award a task at price: the price
// must be within max_price_per_task and, with what this node spent and
// holds in reservations in the last hour, within max_spend_per_hour. It
// reserves nothing; Reserve does.
func (e *Engine) Award(agent, capability string, price float64, now time.Time) Decision {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.awardLocked(agent, capability, price, now)
}

func (e *Engine) awardLocked(agent, capability string, price float64, now time.Time) Decision {
	p := e.Policy()
	if !(price >= 0) || math.IsInf(price, 0) {
		return deny("budgets", "agent %s: price %s for %s is not a finite, non-negative number", agent, num(price), capability)
	}
	if p.maxPrice.set && price > p.maxPrice.v {
		return deny("budgets.max_price_per_task", "price %s over max_price_per_task %s", num(price), num(p.maxPrice.v))
	}
	if p.maxSpendHour.set {
		spent := e.spentLocked(now)
		held := ""
		if e.reserved > 0 {
			held = fmt.Sprintf(" and %s reserved", num(e.reserved))
		}
		if spent+e.reserved+price > p.maxSpendHour.v {
			return deny("budgets.max_spend_per_hour", "price %s with %s spent in the last hour%s over max_spend_per_hour %s",
				num(price), num(spent), held, num(p.maxSpendHour.v))
		}
		return allow("budgets.max_spend_per_hour", "agent %s may award %s at %s (%s spent in the last hour%s of %s)",
			agent, capability, num(price), num(spent), held, num(p.maxSpendHour.v))
	}
	if p.maxPrice.set {
		return allow("budgets.max_price_per_task", "agent %s may award %s at %s (max_price_per_task %s)",
			agent, capability, num(price), num(p.maxPrice.v))
	}
	return allow("", "agent %s may award %s at %s (no budget)", agent, capability, num(price))
}

// Reservation is budget held for one award: released when the award comes
// to nothing (declined, failed, canceled), charged when its result
// arrives. Either happens once; later calls do nothing.
type Reservation struct {
	e     *Engine
	price float64
	once  sync.Once
}

// Reserve decides an award like Award and, if it allows, holds price
// against max_spend_per_hour until the reservation is charged or released.
// The check and the hold are one step, so concurrent awards cannot
// together pass the cap. A denied award returns a nil Reservation.
func (e *Engine) Reserve(agent, capability string, price float64, now time.Time) (Decision, *Reservation) {
	e.mu.Lock()
	defer e.mu.Unlock()
	d := e.awardLocked(agent, capability, price, now)
	if !d.Allow {
		return d, nil
	}
	if price > 0 {
		e.reserved += price
	}
	return d, &Reservation{e: e, price: max(price, 0)}
}

// Release gives the held budget back.
func (r *Reservation) Release() {
	if r == nil {
		return
	}
	r.once.Do(func() {
		r.e.mu.Lock()
		r.e.reserved -= r.price
		r.e.mu.Unlock()
	})
}

// Charge turns the held budget into spend at now.
func (r *Reservation) Charge(now time.Time) {
	if r == nil {
		return
	}
	r.once.Do(func() {
		r.e.mu.Lock()
		defer r.e.mu.Unlock()
		r.e.reserved -= r.price
		r.e.recordLocked(r.price, now)
	})
}

// Reserved is the budget held by reservations not yet charged or released.
func (e *Engine) Reserved() float64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.reserved
}

// RecordSpend adds an awarded price to this node's spend at now. Spend is
// counted per node, not per agent; agent is for the caller's symmetry with
// Award. Prices that are negative, zero or not finite are ignored.
func (e *Engine) RecordSpend(agent string, price float64, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.recordLocked(price, now)
}

func (e *Engine) recordLocked(price float64, now time.Time) {
	if !(price > 0) || math.IsInf(price, 0) {
		return
	}
	if e.spend == nil {
		e.spend = new([spendSlots]spendSlot)
	}
	sec := now.Unix()
	s := &e.spend[((sec%spendSlots)+spendSlots)%spendSlots]
	switch {
	case s.sum == 0 || sec > s.sec:
		*s = spendSlot{sec: sec, sum: price}
	case sec == s.sec:
		s.sum += price
	default:
		// The slot holds a later second, so sec is at least a window old.
	}
}

// SpentLastHour is what this node awarded in the hour up to now.
func (e *Engine) SpentLastHour(now time.Time) float64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.spentLocked(now)
}

func (e *Engine) spentLocked(now time.Time) float64 {
	if e.spend == nil {
		return 0
	}
	from := now.Unix() - spendSlots // exclusive
	var sum float64
	for _, s := range e.spend {
		if s.sum > 0 && s.sec > from {
			sum += s.sum
		}
	}
	return sum
}

// StartTask takes a slot for a task a local agent works on as contractor.
// If the decision allows, release frees the slot (calling it again does
// nothing); if it denies, release does nothing. Slots are counted even
// when there is no limit, so that a policy that sets one counts the
// running tasks.
func (e *Engine) StartTask() (d Decision, release func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	limit := e.Policy().maxTasks
	if limit >= 0 && e.running >= limit {
		return deny("max_concurrent_tasks", "%d tasks running, max_concurrent_tasks %d", e.running, limit), func() {}
	}
	e.running++
	if limit >= 0 {
		d = allow("max_concurrent_tasks", "task slot %d of max_concurrent_tasks %d", e.running, limit)
	} else {
		d = allow("", "task slot %d (no max_concurrent_tasks)", e.running)
	}
	var once sync.Once
	return d, func() {
		once.Do(func() {
			e.mu.Lock()
			e.running--
			e.mu.Unlock()
		})
	}
}

// Running is the number of task slots taken.
func (e *Engine) Running() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.running
}

// NeedsApproval reports the first approval rule, in file order, that holds
// a negotiation at stage (StageAward or StageCommit) for capability at
// price. A price that is not a number matches every min_price.
func (e *Engine) NeedsApproval(stage, capability string, price float64) (rule string, ok bool) {
	for _, r := range e.Policy().approvals {
		if r.stage != stage {
			continue
		}
		if r.capability != "" && r.capability != capability {
			continue
		}
		if r.minPrice.set && price < r.minPrice.v {
			continue
		}
		return r.name, true
	}
	return "", false
}
