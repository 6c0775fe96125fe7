package admission

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/intent"
	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/policy"
)

// recorder keeps what a Layer writes to the audit log.
type recorder struct {
	mu   sync.Mutex
	recs []rec
}

type rec struct {
	kind, rationale string
	peer            peer.ID
	detail          map[string]any
}

func (r *recorder) record(kind, _, _ string, p peer.ID, rationale string, detail any) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	d, _ := detail.(map[string]any)
	r.recs = append(r.recs, rec{kind, rationale, p, d})
	return nil
}

func (r *recorder) all() []rec {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]rec(nil), r.recs...)
}

func newLayer(t *testing.T, pol string, lim Limits, now func() time.Time) (*Layer, *recorder) {
	t.Helper()
	var p *policy.Policy
	if pol != "" {
		var err error
		if p, err = policy.Parse([]byte(pol), "test.yaml"); err != nil {
			t.Fatal(err)
		}
	}
	r := &recorder{}
	l, err := New(Config{Policy: policy.NewEngine(p), Limits: lim, Record: r.record, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return l, r
}

func testAgent(t *testing.T, name string) *identity.Agent {
	t.Helper()
	k, err := identity.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	a, err := identity.NewAgent(name, k)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func testPeer(t *testing.T) peer.ID {
	t.Helper()
	k, err := identity.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(k)
	return id
}

// One requester node, whatever keys it uses, holds at most
// BidHandlersPerOrigin bid handlers; another node still gets its own.
func TestCallSlotsPerOrigin(t *testing.T) {
	l, _ := newLayer(t, "", Limits{BidHandlersPerOrigin: 2, BidHandlersPerAgent: 3, BidHandlers: 4}, nil)
	g := l.Negotiation()
	a := testAgent(t, "worker")
	ctx := context.Background()
	p1, p2, p3 := testPeer(t), testPeer(t), testPeer(t)
	var releases []func()
	call := func(p peer.ID) error {
		rel, err := g.Call(ctx, a, negotiation.Call{Task: identity.NewID(), Capability: "job", Requester: identity.AgentID(identity.NewID()), RequesterPeer: p})
		if err == nil {
			releases = append(releases, rel)
		}
		return err
	}
	steps := []struct {
		from peer.ID
		ok   bool
	}{
		{p1, true}, {p1, true}, {p1, false}, // per origin
		{p2, true},  // the agent's third
		{p3, false}, // per agent: 3
	}
	for i, s := range steps {
		if err := call(s.from); (err == nil) != s.ok || (err != nil && !errors.Is(err, ErrDenied)) {
			t.Fatalf("call %d: %v, want ok=%v", i, err, s.ok)
		}
	}
	for _, r := range releases {
		r()
		r() // a second release changes nothing
	}
	if n := l.slots.count(allKey("bid")); n != 0 {
		t.Fatalf("%d bid slots held after every release, want 0", n)
	}
	if err := call(p3); err != nil {
		t.Fatalf("after the releases: %v", err)
	}
}

// A flood of refusals of one kind from one peer makes one record, then
// one summary per interval, and Close writes what is left.
func TestRefusalsAreSummarised(t *testing.T) {
	now := time.Unix(1000, 0)
	l, r := newLayer(t, "", Limits{IntentsPerForwarder: Rate{PerSecond: 1, Burst: 1}, SummaryEvery: time.Minute}, func() time.Time { return now })
	p := testPeer(t)
	for range 1000 {
		l.Forwarded(p)
	}
	if got := len(r.all()); got != 1 {
		t.Fatalf("%d records after 999 refusals in one second, want 1", got)
	}
	if pen := l.Penalty(p); pen != 0 {
		t.Fatalf("penalty %v for forwarding too fast, want none: the peer may be relaying a flood", pen)
	}
	now = now.Add(2 * time.Minute)
	l.Forwarded(p) // a token came back
	l.Forwarded(p)
	recs := r.all()
	if len(recs) != 2 || recs[1].detail["refused_since_last_record"] != 998 {
		t.Fatalf("records %+v; want a second with 998 refused since the first", recs)
	}
	l.Forwarded(p)
	l.Close()
	recs = r.all()
	if len(recs) != 3 || recs[2].detail["refused_since_last_record"] != 1 {
		t.Fatalf("after Close: %+v; want the last refusal summarised", recs)
	}
}

// The approval queue is bounded in all and per peer, and no step waits
// longer than the node's MaxApprovalWait, whatever deadline the task has.
func TestApprovalQueueBounds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, _ := newLayer(t, "approvals: [{name: every-commit, stage: commit}]\n",
			Limits{PendingApprovals: 3, PendingApprovalsPerPeer: 2, MaxApprovalWait: time.Minute}, nil)
		g := l.Negotiation()
		a := testAgent(t, "worker")
		p1, p2 := testPeer(t), testPeer(t)
		results := make(chan error, 10)
		commit := func(p peer.ID) {
			go func() {
				// A remote deadline a day away.
				ctx, cancel := context.WithTimeout(context.Background(), 24*time.Hour)
				defer cancel()
				_, err := g.Commit(ctx, a, negotiation.Call{Task: identity.NewID(), Capability: "job", RequesterPeer: p}, negotiation.Bid{Price: 1})
				results <- err
			}()
		}
		for _, p := range []peer.ID{p1, p1, p1, p2, p2} {
			commit(p)
		}
		synctest.Wait()
		if n := len(l.Approvals()); n != 3 {
			t.Fatalf("%d pending, want 3 (2 from p1, then 1 from p2 fills the queue)", n)
		}
		// The refused two came back at once.
		for range 2 {
			if err := <-results; !errors.Is(err, ErrDenied) {
				t.Fatalf("over the bound: %v, want ErrDenied", err)
			}
		}
		start := time.Now()
		for range 3 {
			if err := <-results; err == nil {
				t.Fatal("a step nobody approved went ahead")
			}
		}
		if waited := time.Since(start); waited != time.Minute {
			t.Fatalf("waited %s for a human, want the node's 1m, not the task's day", waited)
		}
		if n := len(l.Approvals()); n != 0 {
			t.Fatalf("%d approvals still pending after the wait", n)
		}
	})
}

func TestLimitsDefaults(t *testing.T) {
	got := Limits{IntentsPerAgent: Rate{PerSecond: -1}, IntentsPerOrigin: Rate{PerSecond: 7}}.withDefaults()
	d := DefaultLimits()
	switch {
	case got.IntentsPerAgent.set():
		t.Error("a negative rate should turn the limit off")
	case got.IntentsPerOrigin != Rate{PerSecond: 7, Burst: 7}:
		t.Errorf("a rate with no burst: %+v, want burst = rate", got.IntentsPerOrigin)
	case got.IntentsPerForwarder != d.IntentsPerForwarder || got.BidHandlers != d.BidHandlers || got.MaxApprovalWait != d.MaxApprovalWait:
		t.Errorf("zero fields not defaulted: %+v", got)
	}
	_ = fmt.Sprint(got)
}

// Refusals made elsewhere (the local API) are summarised per requester
// like the layer's own.
func TestRefuseFromAnotherEntry(t *testing.T) {
	now := time.Unix(1000, 0)
	l, r := newLayer(t, "", Limits{SummaryEvery: time.Minute}, func() time.Time { return now })
	for range 50 {
		if err := l.Refuse(EntryAPI, "api.token", "unknown token from 127.0.0.1", "API refused GET /v1/node with 401", nil); !errors.Is(err, ErrDenied) {
			t.Fatalf("Refuse = %v, want ErrDenied", err)
		}
	}
	_ = l.Refuse(EntryAPI, "api.token", "unknown token from 10.0.0.9", "API refused GET /v1/node with 401", nil)
	recs := r.all()
	if len(recs) != 2 || recs[0].detail["who"] != "unknown token from 127.0.0.1" || recs[0].detail["entry"] != EntryAPI {
		t.Fatalf("records %+v; want one per requester", recs)
	}
}

// Only a peer's own agents' intents over their rates count against its
// GossipSub score, decaying by half every penaltyHalfLife; another node's
// intents it relays, over the same rates, do not.
func TestPenaltyIsForWhatAPeerOriginated(t *testing.T) {
	now := time.Unix(1000, 0)
	l, _ := newLayer(t, "", Limits{IntentsPerOrigin: Rate{PerSecond: 1, Burst: 1}}, func() time.Time { return now })
	relay, origin := testPeer(t), testPeer(t)
	agent := identity.AgentID("did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK")
	for range 1000 {
		l.Intent(&intent.Intent{From: agent, Origin: origin}, relay)
	}
	if pen := l.Penalty(relay); pen != 0 {
		t.Fatalf("relay's penalty %v for another node's intents, want 0", pen)
	}
	for range 1000 {
		l.Intent(&intent.Intent{From: agent, Origin: origin}, origin)
	}
	if pen := l.Penalty(origin); pen != 1000 {
		t.Fatalf("origin's penalty %v after 1000 refusals of its own intents, want 1000", pen)
	}
	now = now.Add(penaltyHalfLife)
	if pen := l.Penalty(origin); pen < 499 || pen > 501 {
		t.Fatalf("penalty %v a half-life later, want 500", pen)
	}
}
