package node

import (
	"maps"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Peer scoring: the signals parley relies on are invalid intents and, from
// the admission layer, intents past a peer's rate limit. Every
// intent a peer forwards that a validator rejects (bad signature, forged
// signer, oversize, not JSON…) counts against it, squared, so a handful
// pushes it below the graylist threshold and its gossip is ignored. Honest
// peers validate before forwarding and never pay this. Positive scores
// (time in mesh, first deliveries) are kept small so they cannot buy back
// a flood. IP colocation is not scored: meshes under test share an address.
const (
	gossipThreshold    = -10
	publishThreshold   = -50
	graylistThreshold  = -80
	acceptPXThreshold  = 10
	opportunisticGraft = 3
)

// app is the admission layer's say: the (negative) score of a peer that
// floods this node past its rate limit with validly signed intents, which
// the invalid-message score cannot see.
func peerScoreParams(app func(peer.ID) float64) (*pubsub.PeerScoreParams, *pubsub.PeerScoreThresholds) {
	return &pubsub.PeerScoreParams{
			Topics:            map[string]*pubsub.TopicScoreParams{},
			AppSpecificScore:  app,
			AppSpecificWeight: 1,
			DecayInterval:     time.Second,
			DecayToZero:       0.01,
			RetainScore:       10 * time.Minute,
		}, &pubsub.PeerScoreThresholds{
			GossipThreshold:             gossipThreshold,
			PublishThreshold:            publishThreshold,
			GraylistThreshold:           graylistThreshold,
			AcceptPXThreshold:           acceptPXThreshold,
			OpportunisticGraftThreshold: opportunisticGraft,
		}
}

// gossipParams are GossipSub's defaults but one: IDONTWANT (v1.2) is
// sent only for intents over 8 KiB. Below that the control message is a
// fair part of the message it saves, and every mesh peer sends one to
// every other for each intent; a typical intent, with its agent's
// signature and its node's delegation, is just over the 1 KiB default.
func gossipParams() pubsub.GossipSubParams {
	p := pubsub.DefaultGossipSubParams()
	p.IDontWantMessageThreshold = 8 << 10
	// Connectors dial the peers a PRUNE's peer exchange names. parley
	// does not send PX and takes it only from well-scored peers, rarely:
	// one goroutine serves, where the default's eight idle ones cost
	// every node their stacks (a third of its goroutines that do not
	// grow with its peers).
	p.Connectors = 1
	return p
}

// topicScoreParams scores one capability topic.
func topicScoreParams() *pubsub.TopicScoreParams {
	return &pubsub.TopicScoreParams{
		TopicWeight:                    1,
		TimeInMeshWeight:               0.01,
		TimeInMeshQuantum:              time.Second,
		TimeInMeshCap:                  100,
		FirstMessageDeliveriesWeight:   0.1,
		FirstMessageDeliveriesDecay:    0.9,
		FirstMessageDeliveriesCap:      20,
		InvalidMessageDeliveriesWeight: -10,
		InvalidMessageDeliveriesDecay:  0.99,
	}
}

// PeerScores returns the GossipSub scores of connected peers, as of the
// last inspection (every second); nil when scoring is off.
func (n *Node) PeerScores() map[peer.ID]float64 {
	n.scoresMu.Lock()
	defer n.scoresMu.Unlock()
	return maps.Clone(n.scores)
}
