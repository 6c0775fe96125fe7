package admission

import (
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Keys cost nothing, so a budget per peer is as large as the number of
// peers an attacker makes: a swarm of fresh keys, each with its own full
// bucket, costs the node a verification per message at a rate no bound
// of ours holds. A newcomer — a peer the node has no reason yet to know —
// therefore takes from its own bucket and also from one that all
// newcomers share, as large as one peer's: a swarm gets what one peer
// gets. A peer stops being a newcomer once it has been seen for
// NewcomerAge, once it and this node committed to a task (Vouch), or from
// the start if the operator named it (Config.Known: the bootstrap peers).
type newcomers struct {
	age   time.Duration
	fixed map[peer.ID]bool // named by the operator

	// mu guards young and known (LRUs that do not lock themselves).
	// young holds when each newcomer was first seen; a flood of fresh
	// keys churns it, and only it. known holds who stopped being one;
	// only a peer that aged or was vouched for enters it.
	mu    sync.Mutex
	young *simplelru.LRU[peer.ID, time.Time]
	known *simplelru.LRU[peer.ID, struct{}]

	// One bucket each, shared by every newcomer.
	forwarders, askers, tracers, contexts *buckets
}

func newNewcomers(lim Limits, fixed []peer.ID) *newcomers {
	young, _ := simplelru.NewLRU[peer.ID, time.Time](lim.MaxKeys, nil)
	known, _ := simplelru.NewLRU[peer.ID, struct{}](lim.MaxKeys, nil)
	nc := &newcomers{
		age:        lim.NewcomerAge,
		fixed:      make(map[peer.ID]bool, len(fixed)),
		young:      young,
		known:      known,
		forwarders: newBuckets(lim.IntentsPerForwarder, 1),
		askers:     newBuckets(lim.AsksPerPeer, 1),
		tracers:    newBuckets(lim.TracesPerPeer, 1),
		contexts:   newBuckets(lim.ContextsPerPeer, 1),
	}
	for _, p := range fixed {
		nc.fixed[p] = true
	}
	return nc
}

// is reports whether p is a newcomer at now; seen says p sent something
// just now, which starts its age if it is the first time.
func (nc *newcomers) is(p peer.ID, now time.Time, seen bool) bool {
	if nc.age < 0 || nc.fixed[p] {
		return false
	}
	nc.mu.Lock()
	defer nc.mu.Unlock()
	if _, ok := nc.known.Get(p); ok {
		return false
	}
	first, ok := nc.young.Get(p)
	if !ok {
		if seen {
			nc.young.Add(p, now)
		}
		return true
	}
	if now.Sub(first) < nc.age {
		return true
	}
	nc.young.Remove(p)
	nc.known.Add(p, struct{}{})
	return false
}

func (nc *newcomers) vouch(p peer.ID) {
	nc.mu.Lock()
	defer nc.mu.Unlock()
	nc.young.Remove(p)
	nc.known.Add(p, struct{}{})
}

// Vouch tells the layer that p is known to this node: it and this node
// committed to a task, one for the other. From now on its own budgets are
// its alone.
func (l *Layer) Vouch(p peer.ID) { l.newcomers.vouch(p) }

// Newcomer reports whether p is still a newcomer: seen for less than
// NewcomerAge, never vouched for and not named by the operator.
func (l *Layer) Newcomer(p peer.ID) bool { return l.newcomers.is(p, l.now(), false) }

// rated takes p's token from own, and a newcomer's from shared too. A
// refusal is denied under rule (p over its own rate) or limits.newcomers
// (the newcomers together over it); did says what p did too fast, for the
// rationale. It reports whether it was the newcomers' budget that
// refused, and the refusal.
func (l *Layer) rated(entry Entry, own, shared *buckets, p peer.ID, rule, did string) (newcomers bool, err error) {
	now := l.now()
	switch {
	case !own.take(p, now):
		return false, l.deny(refusal{entry: entry, rule: rule, peer: p,
			rationale: fmt.Sprintf("peer %s %s faster than %g/s (burst %d)", p, did, own.r.PerSecond, own.r.Burst)})
	case l.newcomers.is(p, now, true) && !shared.take(struct{}{}, now):
		return true, l.deny(refusal{entry: entry, rule: "limits.newcomers", peer: p,
			rationale: fmt.Sprintf("newcomer %s: the peers seen for less than %s, together, %s faster than %g/s (burst %d)",
				p, l.lim.NewcomerAge, did, shared.r.PerSecond, shared.r.Burst)})
	}
	return false, nil
}
