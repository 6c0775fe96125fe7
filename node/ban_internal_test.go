package node

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
)

func TestBansBackOffDoublesAndCaps(t *testing.T) {
	now := time.Unix(1e9, 0)
	b := newBans(time.Minute, prometheus.NewRegistry())
	b.now = func() time.Time { return now }
	p := peer.ID("flooder")
	for i, want := range []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute} {
		d, fresh := b.ban(p)
		if !fresh || d != want {
			t.Fatalf("ban %d: %s, fresh %v; want %s, fresh", i+1, d, fresh, want)
		}
		if _, fresh := b.ban(p); fresh {
			t.Fatalf("ban %d: banning a banned peer again counted as a new ban", i+1)
		}
		if !b.banned(p) || b.InterceptPeerDial(p) || b.InterceptSecured(0, p, nil) {
			t.Fatalf("ban %d: peer not refused while banned", i+1)
		}
		now = now.Add(want)
		if b.banned(p) || !b.InterceptPeerDial(p) {
			t.Fatalf("ban %d: peer still refused after its %s", i+1, want)
		}
	}
	for range 10 {
		d, _ := b.ban(p)
		now = now.Add(d)
	}
	if d, _ := b.ban(p); d != maxBanBackoff {
		t.Fatalf("after many bans the back-off is %s, want the cap %s", d, maxBanBackoff)
	}
}

// Fresh peer IDs cost nothing: the table stays bounded, and forgets the
// ban that ends soonest.
func TestBansTableIsBounded(t *testing.T) {
	now := time.Unix(1e9, 0)
	b := newBans(time.Minute, prometheus.NewRegistry())
	b.now = func() time.Time { return now }
	first := peer.ID("first")
	b.ban(first)
	now = now.Add(time.Second)
	for i := range maxBans + 10 {
		b.ban(peer.ID(rune(i)))
	}
	if len(b.peers) > maxBans {
		t.Fatalf("%d bans kept, want at most %d", len(b.peers), maxBans)
	}
	if b.banned(first) {
		t.Fatal("the ban ending soonest was kept while the table overflowed")
	}
}
