package node

import (
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/prometheus/client_golang/prometheus"
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

var lostReasons = []string{lostSlowSubscriber, lostSendQueue, lostValidateQueue, lostThrottled}

// lossTracer counts GossipSub's own losses. Its methods run on GossipSub's
// event loop, so they only count.
type lossTracer struct {
	lost *prometheus.CounterVec
}

var _ pubsub.RawTracer = lossTracer{}

func (t lossTracer) UndeliverableMessage(*pubsub.Message) {
	t.lost.WithLabelValues(lostSlowSubscriber).Inc()
}

func (t lossTracer) DropRPC(rpc *pubsub.RPC, _ peer.ID) {
	if n := len(rpc.GetPublish()); n > 0 {
		t.lost.WithLabelValues(lostSendQueue).Add(float64(n))
	}
}

func (t lossTracer) RejectMessage(_ *pubsub.Message, reason string) {
	switch reason {
	case pubsub.RejectValidationQueueFull:
		t.lost.WithLabelValues(lostValidateQueue).Inc()
	case pubsub.RejectValidationThrottled:
		t.lost.WithLabelValues(lostThrottled).Inc()
	}
}

func (lossTracer) OnNewOutboundStream(peer.ID, protocol.ID)             {}
func (lossTracer) OnClosedOutboundStream(peer.ID)                       {}
func (lossTracer) Join(string)                                          {}
func (lossTracer) Leave(string)                                         {}
func (lossTracer) Graft(peer.ID, string)                                {}
func (lossTracer) Prune(peer.ID, string)                                {}
func (lossTracer) ValidateMessage(*pubsub.Message)                      {}
func (lossTracer) DeliverMessage(*pubsub.Message)                       {}
func (lossTracer) DuplicateMessage(*pubsub.Message)                     {}
func (lossTracer) ThrottlePeer(peer.ID)                                 {}
func (lossTracer) RecvRPC(*pubsub.RPC)                                  {}
func (lossTracer) SendRPC(*pubsub.RPC, peer.ID)                         {}
func (lossTracer) SendRPCCompleted(*pubsub.RPC, peer.ID, time.Duration) {}
