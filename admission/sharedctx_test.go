package admission

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/parleynet/parley/sharedctx"
)

// TestContextEntry: context streams are rated per peer; an access the
// context service found no grant for is refused and audited, one from a
// denied agent too, whatever the grant says; an admitted write is
// recorded.
func TestContextEntry(t *testing.T) {
	now := time.Unix(1000, 0)
	denied := testAgent(t, "denied")
	l, rec := newLayer(t, fmt.Sprintf("remote_agents: {deny: [%q]}\n", denied.ID), Limits{ContextsPerPeer: Rate{PerSecond: 1, Burst: 2}}, func() time.Time { return now })
	g := l.SharedContext()
	p, q := testPeer(t), testPeer(t)
	for i := range 2 {
		if err := g.ContextStream(p); err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
	}
	if err := g.ContextStream(p); !errors.Is(err, ErrDenied) {
		t.Fatalf("third stream in a second: %v, want refused", err)
	}
	if err := g.ContextStream(q); !errors.Is(err, ErrDenied) {
		t.Fatalf("another newcomer's stream: %v, want refused: newcomers share one budget", err)
	}
	l.Vouch(q)
	if err := g.ContextStream(q); err != nil {
		t.Fatalf("a known peer's stream: %v", err)
	}
	w := testAgent(t, "winner")
	ctx := context.Background()
	refused := sharedctx.Access{Peer: q, Agent: w.ID, Task: "t1", Op: sharedctx.OpRead, Rule: sharedctx.RuleNotParticipant, Reason: "not the winner"}
	if err := g.ContextAccess(ctx, refused); !errors.Is(err, ErrDenied) {
		t.Fatalf("non-participant: %v", err)
	}
	ok := sharedctx.Access{Peer: q, Agent: w.ID, Task: "t1", Workflow: "wf", Op: sharedctx.OpWrite, Keys: []string{"k"}}
	if err := g.ContextAccess(ctx, ok); err != nil {
		t.Fatalf("granted write: %v", err)
	}
	bad := ok
	bad.Agent = denied.ID
	if err := g.ContextAccess(ctx, bad); !errors.Is(err, ErrDenied) {
		t.Fatalf("a denied agent's granted write: %v", err)
	}
	kinds := map[string]int{}
	rules := map[any]bool{}
	for _, r := range rec.all() {
		kinds[r.kind]++
		rules[r.detail["rule"]] = true
	}
	if kinds["admission.denied"] != 4 || kinds["context.write"] != 1 {
		t.Fatalf("records %v; want 4 refusals and the admitted write", kinds)
	}
	for _, r := range []string{"limits.contexts_per_peer", "limits.newcomers", sharedctx.RuleNotParticipant} {
		if !rules[r] {
			t.Errorf("no refusal recorded by %s: %v", r, rules)
		}
	}
}
