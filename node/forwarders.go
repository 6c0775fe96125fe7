package node

import (
	"errors"
	"hash/maphash"
	"strings"
	"sync"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parleynet/parley/admission"
	"github.com/parleynet/parley/intent"
)

// forwarders applies the admission layer's per-forwarder rate to the
// intents in each RPC a peer sends, before GossipSub sees them.
//
// In the topic validator the check would come too late: GossipSub marks a
// message seen before validating it, so an honest intent dropped there
// because its relay had also relayed a flood the mesh admitted elsewhere
// would be lost on this node for good. Taken out of the RPC here, it is
// not seen, and arrives from another peer or by gossip (IHAVE/IWANT).
// Copies of messages already let through are not charged: GossipSub
// drops them as duplicates. A peer's own intents pass its rate (ownIntent).
type forwarders struct {
	adm *admission.Layer
	// banned reports a peer the node has banned: what it sent before its
	// connection closed is dropped unread.
	banned  func(peer.ID) bool
	dropped func(reason string)
	seed    maphash.Seed

	mu        sync.Mutex
	cur, prev map[uint64]struct{} // hashes of intents let through lately
}

// recentIntents bounds the hashes forwarders remembers: two generations of
// this many (a few MB). Forgetting one early only charges a later
// duplicate.
const recentIntents = 1 << 15

func newForwarders(adm *admission.Layer, banned func(peer.ID) bool, dropped func(string)) *forwarders {
	return &forwarders{adm: adm, banned: banned, dropped: dropped, seed: maphash.MakeSeed(), cur: map[uint64]struct{}{}}
}

// errBanned refuses an RPC from a banned peer.
var errBanned = errors.New("peer banned")

// inspect is a pubsub.WithAppSpecificRpcInspector function. It refuses
// the RPCs of a banned peer, which GossipSub's queues still hold after
// the ban closed its connection, and keeps the intents of the others'
// within their rate.
func (f *forwarders) inspect(from peer.ID, rpc *pubsub.RPC) error {
	if f.banned(from) {
		for range rpc.Publish {
			f.dropped(reasonBanned)
		}
		return errBanned
	}
	if len(rpc.Publish) == 0 {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	kept := rpc.Publish[:0]
	for _, m := range rpc.Publish {
		if !strings.HasPrefix(m.GetTopic(), intent.TopicPrefix) {
			kept = append(kept, m)
			continue
		}
		h := maphash.Bytes(f.seed, m.Data)
		_, seen := f.cur[h]
		if !seen {
			_, seen = f.prev[h]
		}
		if !seen {
			if reason := f.adm.Forwarded(from); reason != "" && !f.ownIntent(from, m.Data) {
				f.dropped(reason)
				continue
			}
			f.remember(h)
		}
		kept = append(kept, m)
	}
	clear(rpc.Publish[len(kept):])
	rpc.Publish = kept
	return nil
}

// ownIntent reports whether a peer over its rate hands over an intent of
// its own agents, which goes on to be verified anyway: a node that relays
// a flood must still be heard for itself, and its own intents are bounded
// by its origin's and agents' rates, where going over costs it score. The
// look is rated and refused to a peer already penalised for that
// (admission.OwnPass); a false claim of origin fails verification.
func (f *forwarders) ownIntent(from peer.ID, data []byte) bool {
	if !f.adm.OwnPass(from) {
		return false
	}
	origin, err := intent.ClaimedOrigin(data)
	return err == nil && origin == from
}

func (f *forwarders) remember(h uint64) {
	if len(f.cur) >= recentIntents {
		f.prev, f.cur = f.cur, make(map[uint64]struct{}, recentIntents)
	}
	f.cur[h] = struct{}{}
}
