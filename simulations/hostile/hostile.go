// Package hostile is a hostile peer for tests: a raw go-libp2p host with
// plain GossipSub and msgio — no parley code on the sending side — that
// joins a parley mesh and sends forged, tampered, replayed, expired,
// oversize and malformed intents and negotiation frames, as fast as it can.
// It builds its messages from JSON and go-libp2p's record envelopes alone,
// the way an attacker reading the wire format would.
//
// Attacker sends invalid messages. Sybil (sybil.go) sends valid ones —
// signed by fresh keys, delegated by its own or fresh node keys — with
// abusive parameters: dated to the edge of the clock skew, far-future
// deadlines, hour-long bid windows, late and oversized bids, floods of
// asks and awards, borrowed task IDs and delegations, silent streams.
package hostile

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"
	"github.com/libp2p/go-msgio"
	"github.com/mr-tron/base58"
)

// Wire constants, as documented for other implementations.
const (
	domain           = "parley"
	payloadType      = "/parley/msg/1"
	delegationDomain = "parley-delegation"
	delegationType   = "/parley/delegation/1"
	topicPrefix      = "/parley/1/intent/"
	negotiateID      = "/parley/negotiate/1.0.0"
	maxIntent        = 64 << 10
	didKeyPrefix     = "did:key:z"
)

// rawRecord signs arbitrary bytes under parley's domain and payload type.
type rawRecord struct{ b []byte }

func (r *rawRecord) Domain() string                 { return domain }
func (r *rawRecord) Codec() []byte                  { return []byte(payloadType) }
func (r *rawRecord) MarshalRecord() ([]byte, error) { return r.b, nil }
func (r *rawRecord) UnmarshalRecord(b []byte) error { r.b = b; return nil }

// delegationRecord is a node's delegation of an agent key.
type delegationRecord struct{ b []byte }

func (r *delegationRecord) Domain() string                 { return delegationDomain }
func (r *delegationRecord) Codec() []byte                  { return []byte(delegationType) }
func (r *delegationRecord) MarshalRecord() ([]byte, error) { return r.b, nil }
func (r *delegationRecord) UnmarshalRecord(b []byte) error { r.b = b; return nil }

// delegation signs with nodeKey that its node hosts the agent key k, for
// delegationLifetime; nil if it cannot.
func delegation(nodeKey, k crypto.PrivKey) []byte {
	body, _ := json.Marshal(map[string]any{"agent": didKey(k.GetPublic()), "expires": time.Now().Add(delegationLifetime).Unix()})
	env, err := record.Seal(&delegationRecord{body}, nodeKey)
	if err != nil {
		return nil
	}
	b, _ := env.Marshal()
	return b
}

// didKey is the did:key of an ed25519 public key.
func didKey(pk crypto.PubKey) string {
	raw, _ := pk.Raw()
	return didKeyPrefix + base58.Encode(append([]byte{0xed, 0x01}, raw...))
}

// Schema versions of the messages built here.
const (
	intentVersion      = 2
	frameVersion       = 1
	delegationLifetime = time.Hour
)

// Attacker is the hostile peer.
type Attacker struct {
	h     host.Host
	ps    *pubsub.PubSub
	key   crypto.PrivKey // the attacker's own agent key
	deleg []byte         // its node's delegation of that key
	Sent  atomic.Int64   // messages and frames sent
	Reset atomic.Int64   // negotiation streams the victim reset or refused
}

// New joins h to GossipSub with the same message format parley uses.
func New(ctx context.Context, h host.Host) (*Attacker, error) {
	ps, err := pubsub.NewGossipSub(ctx, h,
		pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign),
		pubsub.WithNoAuthor(),
		pubsub.WithMessageIdFn(func(*pb.Message) string { return rand.Text() }),
		pubsub.WithFloodPublish(true))
	if err != nil {
		return nil, fmt.Errorf("hostile gossipsub: %w", err)
	}
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, err
	}
	a := &Attacker{h: h, ps: ps, key: key}
	a.deleg = a.delegate(key)
	return a, nil
}

// delegate has the attacker's node sign that it hosts the agent key k, as
// a parley node signs its agents: a valid delegation, so that each bad
// intent below fails for the reason it is built for.
func (a *Attacker) delegate(k crypto.PrivKey) []byte {
	nodeKey := a.h.Peerstore().PrivKey(a.h.ID())
	if nodeKey == nil {
		return nil
	}
	return delegation(nodeKey, k)
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// message builds a parley message JSON.
func message(typ string, v int, from string, created, expires time.Time, body any) []byte {
	b, _ := json.Marshal(body)
	m, _ := json.Marshal(map[string]any{"type": typ, "v": v, "id": newID(), "from": from,
		"created": created, "expires": expires, "body": json.RawMessage(b)})
	return m
}

func (a *Attacker) seal(payload []byte, key crypto.PrivKey) []byte { return sign(payload, key) }

// Intents returns the bad intents of round i for capability, one of each
// kind, signed where a kind needs a signature. victim is an AgentID the
// forgeries claim to be; replay is a captured honest envelope (or nil).
func (a *Attacker) Intents(i int, capability, victim string, replay []byte) [][]byte {
	now := time.Now()
	me := didKey(a.key.GetPublic())
	body := func(c string) map[string]any {
		return map[string]any{"kind": "task", "capability": c, "payload": map[string]any{"task": newID(), "n": i},
			"reply_to": map[string]any{"peer": a.h.ID().String()}, "delegation": a.deleg}
	}
	good := message("intent", intentVersion, me, now, now.Add(time.Minute), body(capability))
	signed := a.seal(good, a.key)
	out := [][]byte{
		// forged: claims the victim, signed by the attacker
		a.seal(message("intent", intentVersion, victim, now, now.Add(time.Minute), body(capability)), a.key),
		// tampered: a valid envelope with its payload changed after signing
		bytes.Replace(signed, []byte(`"n":`), []byte(`"m":`), 1),
		// expired
		a.seal(message("intent", intentVersion, me, now.Add(-2*time.Minute), now.Add(-time.Minute), body(capability)), a.key),
		// oversize
		a.seal(message("intent", intentVersion, me, now, now.Add(time.Minute), map[string]any{"kind": "event", "capability": capability,
			"payload": string(bytes.Repeat([]byte("x"), maxIntent)), "reply_to": map[string]any{"peer": a.h.ID().String()}, "delegation": a.deleg}), a.key),
		// malformed: signed, but not JSON
		a.seal([]byte("{not json"), a.key),
		// unsigned: bare JSON
		good,
		// wrong topic
		a.seal(message("intent", intentVersion, me, now, now.Add(time.Minute), body("elsewhere")), a.key),
	}
	if replay != nil {
		// A replay with an unknown protobuf field appended: new bytes, new
		// gossip ID, same valid signature.
		out = append(out, append(bytes.Clone(replay), 0x78, byte(1+i%100)))
	}
	return out
}

// FloodIntents publishes n rounds of bad intents on capability's topic,
// as fast as the router takes them, all signed before the first is sent.
func (a *Attacker) FloodIntents(ctx context.Context, capability, victim string, replay []byte, n int) error {
	return a.Publish(ctx, capability, a.IntentFlood(capability, victim, replay, n))
}

// IntentFlood signs n rounds of bad intents for Publish. An attacker
// signs ahead, on machines of its own: a benchmark that shares its cores
// with the victims signs before it starts the clock, so that what the
// flood costs them is theirs alone.
func (a *Attacker) IntentFlood(capability, victim string, replay []byte, n int) [][]byte {
	var flood [][]byte
	for i := range n {
		flood = append(flood, a.Intents(i, capability, victim, replay)...)
	}
	return flood
}

// Publish publishes flood on capability's topic as fast as the router
// takes it, until the attacker is cut off.
func (a *Attacker) Publish(ctx context.Context, capability string, flood [][]byte) error {
	t, err := a.ps.Join(topicPrefix + capability)
	if err != nil {
		return err
	}
	defer t.Close()
	for i, m := range flood {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if i%64 == 0 && a.CutOff() {
			return nil
		}
		if err := t.Publish(ctx, m); err != nil {
			return err
		}
		a.Sent.Add(1)
	}
	return nil
}

// CutOff reports that every peer has disconnected the attacker. The
// floods stop then: on a machine of its own an attacker could go on
// sending into the void at no cost to anyone, but sharing the victims'
// process it would take their cores.
func (a *Attacker) CutOff() bool { return len(a.h.Network().Peers()) == 0 }

// Frames returns bad negotiation frames: garbage, unsigned JSON, oversize,
// forged and tampered proposals for task (which may be a real task ID).
func (a *Attacker) Frames(task, victim string) [][]byte {
	now := time.Now()
	me := didKey(a.key.GetPublic())
	propose := message("propose", frameVersion, me, now, now.Add(time.Minute), map[string]any{"task": task, "price": 0.01})
	signed := a.seal(propose, a.key)
	return [][]byte{
		[]byte("garbage"),
		propose, // unsigned
		bytes.Repeat([]byte{0xff}, 300<<10),
		a.seal(message("propose", frameVersion, victim, now, now.Add(time.Minute), map[string]any{"task": task, "price": 0.01}), a.key),
		bytes.Replace(signed, []byte(`"price"`), []byte(`"prize"`), 1),
		a.seal([]byte("[1,2"), a.key),
	}
}

// FloodFrames opens n streams to p on the negotiation protocol, each
// carrying one bad frame, and counts the streams the victim ended.
func (a *Attacker) FloodFrames(ctx context.Context, p peer.ID, task, victim string, n int) {
	frames := a.Frames(task, victim)
	for i := range n {
		if ctx.Err() != nil || a.CutOff() {
			return
		}
		s, err := a.h.NewStream(ctx, p, negotiateID)
		if err != nil {
			a.Reset.Add(1) // refused outright (resource limits)
			continue
		}
		_ = msgio.NewVarintWriter(s).WriteMsg(frames[i%len(frames)])
		a.Sent.Add(1)
		buf := make([]byte, 1)
		if _, err := s.Read(buf); err != nil {
			a.Reset.Add(1)
		}
		_ = s.Reset()
	}
}

// TopicPeers returns the peers the attacker knows on capability's topic:
// those its floods reach.
func (a *Attacker) TopicPeers(capability string) []peer.ID {
	return a.ps.ListPeers(topicPrefix + capability)
}

// ID is the attacker's PeerID.
func (a *Attacker) ID() peer.ID { return a.h.ID() }
