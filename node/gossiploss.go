package node

import (
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"
)

// Why GossipSub itself lost an intent, beside the validator's drops: these
// are losses no peer is to blame for, the node's own queues overflowing,
// and the first thing to look at when an intent did not arrive.
const (
	lostSlowSubscriber = "slow_subscriber"      // a subscriber's buffer was full
	lostSendQueue      = "send_queue_full"      // a peer's outbound queue was full
	lostValidateQueue  = "validation_queue"     // the validation queue was full
	lostThrottled      = "validation_throttled" // too many validations at once
)

// routerRejections maps GossipSub's own rejections, made before parley's
// validator sees a message, to parley_gossip_rejected_total's reasons.
// Those of the validator itself are parley_intents_dropped_total's.
func routerRejections() map[string]string {
	return map[string]string{
		pubsub.RejectBlacklstedPeer:      "blacklisted_peer",
		pubsub.RejectBlacklistedSource:   "blacklisted_source",
		pubsub.RejectMissingSignature:    "missing_signature",
		pubsub.RejectUnexpectedSignature: "unexpected_signature",
		pubsub.RejectUnexpectedAuthInfo:  "unexpected_author",
		pubsub.RejectInvalidSignature:    "invalid_signature",
		pubsub.RejectSelfOrigin:          "self_origin",
	}
}

func lostReasons() []string {
	return []string{lostSlowSubscriber, lostSendQueue, lostValidateQueue, lostThrottled}
}

// routerTracer counts GossipSub's own losses and knows which peers the
// router can send to. Its methods run on GossipSub's event loop, so they
// do little.
type routerTracer struct {
	lost     *prometheus.CounterVec
	rejected *prometheus.CounterVec // by routerRejections' reasons
	reasons  map[string]string      // routerRejections()
	// rpcs and rpcBytes count every RPC received and its protobuf size,
	// control included: what gossip costs a node on the wire.
	rpcs, rpcBytes prometheus.Counter

	mu sync.Mutex
	// sending are the peers GossipSub has an outbound stream to. A peer's
	// subscriptions can arrive before that stream exists, and a message
	// published to it then is dropped, not queued: a topic peer is
	// reachable only once it is here too.
	sending map[peer.ID]struct{}
	opened  chan struct{} // closed and replaced when a stream opens
}

func newRouterTracer(m *metrics) *routerTracer {
	return &routerTracer{lost: m.lost, rejected: m.rejected, rpcs: m.rpcs, rpcBytes: m.rpcBytes,
		reasons: routerRejections(), sending: map[peer.ID]struct{}{}, opened: make(chan struct{})}
}

var _ pubsub.RawTracer = (*routerTracer)(nil)

func (t *routerTracer) OnNewOutboundStream(p peer.ID, _ protocol.ID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sending[p] = struct{}{}
	close(t.opened)
	t.opened = make(chan struct{})
}

func (t *routerTracer) OnClosedOutboundStream(p peer.ID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.sending, p)
}

// canSend reports whether GossipSub has a stream to send to p on.
func (t *routerTracer) canSend(p peer.ID) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.sending[p]
	return ok
}

// streamOpened is closed when the next outbound stream opens.
func (t *routerTracer) streamOpened() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.opened
}

func (t *routerTracer) UndeliverableMessage(*pubsub.Message) {
	t.lost.WithLabelValues(lostSlowSubscriber).Inc()
}

func (t *routerTracer) DropRPC(rpc *pubsub.RPC, _ peer.ID) {
	if n := len(rpc.GetPublish()); n > 0 {
		t.lost.WithLabelValues(lostSendQueue).Add(float64(n))
	}
}

func (t *routerTracer) RejectMessage(_ *pubsub.Message, reason string) {
	switch reason {
	case pubsub.RejectValidationQueueFull:
		t.lost.WithLabelValues(lostValidateQueue).Inc()
	case pubsub.RejectValidationThrottled:
		t.lost.WithLabelValues(lostThrottled).Inc()
	default:
		if r, ok := t.reasons[reason]; ok {
			t.rejected.WithLabelValues(r).Inc()
		}
	}
}

func (t *routerTracer) RecvRPC(rpc *pubsub.RPC) {
	t.rpcs.Inc()
	t.rpcBytes.Add(float64(proto.Size(&rpc.RPC)))
}

func (*routerTracer) Join(string)                                          {}
func (*routerTracer) Leave(string)                                         {}
func (*routerTracer) Graft(peer.ID, string)                                {}
func (*routerTracer) Prune(peer.ID, string)                                {}
func (*routerTracer) ValidateMessage(*pubsub.Message)                      {}
func (*routerTracer) DeliverMessage(*pubsub.Message)                       {}
func (*routerTracer) DuplicateMessage(*pubsub.Message)                     {}
func (*routerTracer) ThrottlePeer(peer.ID)                                 {}
func (*routerTracer) SendRPC(*pubsub.RPC, peer.ID)                         {}
func (*routerTracer) SendRPCCompleted(*pubsub.RPC, peer.ID, time.Duration) {}
