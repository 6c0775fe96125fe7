package admission

import (
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// A swarm of fresh peers gets, in all, what one peer gets of each
// per-peer rate; a peer vouched for, named by the operator or seen for
// NewcomerAge gets its own budget again.
func TestNewcomersShareOneBudget(t *testing.T) {
	const burst = 3
	r := Rate{PerSecond: 1e-9, Burst: burst} // no refill within the test
	entries := []struct {
		name string
		try  func(*Layer, peer.ID) bool
	}{
		{"forwarded intents", func(l *Layer, p peer.ID) bool { return l.Forwarded(p) == "" }},
		{"asks", func(l *Layer, p peer.ID) bool { return l.RPC().AskStream(p) == nil }},
		{"traces", func(l *Layer, p peer.ID) bool { return l.TraceStream(p) == nil }},
		{"contexts", func(l *Layer, p peer.ID) bool { return l.SharedContext().ContextStream(p) == nil }},
	}
	for _, e := range entries {
		t.Run(e.name, func(t *testing.T) {
			now := time.Unix(1000, 0)
			named := testPeer(t)
			lim := Limits{IntentsPerForwarder: r, AsksPerPeer: r, TracesPerPeer: r, ContextsPerPeer: r, NewcomerAge: time.Minute}
			l, err := New(Config{Limits: lim, Now: func() time.Time { return now }, Known: []peer.ID{named}})
			if err != nil {
				t.Fatal(err)
			}
			admitted := 0
			for range 20 {
				if e.try(l, testPeer(t)) {
					admitted++
				}
			}
			if admitted != burst {
				t.Fatalf("20 fresh peers got %d through, want %d: one peer's burst among them", admitted, burst)
			}
			if e.name == "forwarded intents" {
				if got := l.Forwarded(testPeer(t)); got != ReasonRateNewcomers {
					t.Fatalf("a newcomer over the shared budget: reason %q, want %q", got, ReasonRateNewcomers)
				}
			}

			vouched, aged := testPeer(t), testPeer(t)
			if e.try(l, aged) {
				t.Fatal("a newcomer got through an empty shared budget")
			}
			own := func(name string, p peer.ID, want int) {
				t.Helper()
				if l.Newcomer(p) {
					t.Errorf("%s peer is still a newcomer", name)
				}
				n := 0
				for range burst + 1 {
					if e.try(l, p) {
						n++
					}
				}
				if n != want {
					t.Errorf("%s peer got %d through, want its own %d", name, n, want)
				}
			}
			l.Vouch(vouched)
			own("vouched", vouched, burst)
			own("named", named, burst)
			now = now.Add(time.Minute)
			own("aged", aged, burst-1) // it spent one of its own as a newcomer

			// A flood of fresh keys churns the newcomers, not who is known.
			// (Plain strings as IDs: making ten thousand keys is slow.)
			for i := range lim.withDefaults().MaxKeys + 1 {
				l.Forwarded(peer.ID(fmt.Sprintf("fresh-%d", i)))
			}
			if l.newcomers.young.Len() != lim.withDefaults().MaxKeys {
				t.Fatalf("%d newcomers after the flood, want the table full (%d)", l.newcomers.young.Len(), lim.withDefaults().MaxKeys)
			}
			if l.Newcomer(vouched) || l.Newcomer(aged) {
				t.Fatal("a flood of fresh peers made a known peer a newcomer again")
			}
		})
	}
}

func TestNoNewcomersWithNegativeAge(t *testing.T) {
	r := Rate{PerSecond: 1e-9, Burst: 1}
	l, err := New(Config{Limits: Limits{AsksPerPeer: r, NewcomerAge: -1}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := l.RPC().AskStream(testPeer(t)); err != nil {
			t.Fatalf("fresh peer %d: %v, want its own budget", i, err)
		}
	}
}
