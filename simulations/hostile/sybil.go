package hostile

// Sybil mode. Every message built here is valid: well formed, signed by
// the key it names, delegated by the node it names, within the clock skew.
// What is abusive is what it asks for, and how many keys ask: agent and
// node keys cost nothing, so a Sybil makes a fresh one whenever a bound is
// per key.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/core/record"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	"github.com/libp2p/go-msgio"
	ma "github.com/multiformats/go-multiaddr"
)

// More wire constants.
const (
	rpcID         = "/parley/rpc/1.0.0"
	rpcVersion    = 2
	maxFrame      = 256 << 10
	frameLifetime = time.Minute
)

// Identity is an agent key and the delegation of the node that hosts it.
type Identity struct {
	Key        crypto.PrivKey
	Agent      string  // the did:key of Key
	Node       peer.ID // the delegating node: an intent's reply-to must name it
	Delegation []byte  // that node's signed delegation of Agent
}

// newIdentity makes a fresh agent key delegated by nodeKey.
func newIdentity(nodeKey crypto.PrivKey) (Identity, error) {
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return Identity{}, err
	}
	node, err := peer.IDFromPrivateKey(nodeKey)
	if err != nil {
		return Identity{}, err
	}
	agent := didKey(k.GetPublic())
	d := delegation(nodeKey, k)
	if d == nil {
		return Identity{}, errors.New("hostile: could not sign a delegation")
	}
	return Identity{Key: k, Agent: agent, Node: node, Delegation: d}, nil
}

// Stranger returns a fresh agent delegated by a fresh node key that no
// host has: its reply-to names a node nobody can reach, and every bound
// per origin node sees a new origin.
func Stranger() (Identity, error) {
	nodeKey, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return Identity{}, err
	}
	return newIdentity(nodeKey)
}

// Key returns a fresh agent key with no delegation: stream frames (asks,
// proposals) carry none, so each new key costs one key generation.
func Key() (Identity, error) {
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return Identity{}, err
	}
	return Identity{Key: k, Agent: didKey(k.GetPublic())}, nil
}

// sign signs payload under parley's domain and payload type.
func sign(payload []byte, key crypto.PrivKey) []byte {
	env, err := record.Seal(&rawRecord{payload}, key)
	if err != nil {
		return nil
	}
	b, _ := env.Marshal()
	return b
}

// Verdict is how a Sybil answers the proposals contractors send it after
// its calls for proposals.
type Verdict int32

const (
	// Hold reads each proposal and never answers: the contractor waits
	// for a verdict on an open stream, as long as its clamps let it.
	Hold Verdict = iota
	// Award answers each proposal for one of its own calls with an accept
	// signed by the identity that made the call, then holds the stream:
	// a contractor that needs a human's approval to commit queues one.
	Award
	// Mute neither reads nor answers: a peer whose receive window stays
	// shut, so the contractor's writes block until it gives up.
	Mute
)

// Options tune a Sybil.
type Options struct {
	// RawGossip leaves GossipSub out: Publish writes gossip RPCs straight
	// onto a stream of its own to each connected peer and keeps no state
	// (no seen cache, no queues), so that measurements of a victim in the
	// same process do not count the attacker's memory. Watch and
	// TopicPeers need GossipSub and return nothing then.
	RawGossip bool
}

// gossipID is the GossipSub protocol a raw Sybil writes.
const gossipID = "/meshsub/1.1.0"

// Sybil is one raw go-libp2p peer of a Sybil swarm, with plain GossipSub
// and msgio and no parley code. Its host key is ed25519, as a parley
// node's is, so it delegates the agent keys it makes.
type Sybil struct {
	ctx     context.Context
	h       host.Host
	ps      *pubsub.PubSub // nil with RawGossip
	nodeKey crypto.PrivKey
	self    Identity

	verdict atomic.Int32

	mu     sync.Mutex
	topics map[string]*pubsub.Topic
	calls  map[string]Identity // task ID → the identity that called for it
	raw    map[peer.ID]*rawGossip

	Sent      atomic.Int64 // messages published and frames sent
	Refused   atomic.Int64 // streams the victim refused, reset or would not open
	Proposals atomic.Int64 // proposals contractors sent this peer
	Awards    atomic.Int64 // accepts this peer sent
	Holding   atomic.Int64 // streams this peer holds open right now
}

// NewSybil joins h, which must have an ed25519 key in its peerstore, to
// GossipSub (unless opts.RawGossip) and serves the negotiation protocol
// for its own calls. It runs until ctx ends; then it resets the streams
// it holds.
func NewSybil(ctx context.Context, h host.Host, opts Options) (*Sybil, error) {
	nodeKey := h.Peerstore().PrivKey(h.ID())
	if nodeKey == nil || nodeKey.Type() != crypto.Ed25519 {
		return nil, errors.New("hostile: a Sybil host needs an ed25519 key to delegate its agents")
	}
	self, err := newIdentity(nodeKey)
	if err != nil {
		return nil, err
	}
	s := &Sybil{ctx: ctx, h: h, nodeKey: nodeKey, self: self,
		topics: map[string]*pubsub.Topic{}, calls: map[string]Identity{}, raw: map[peer.ID]*rawGossip{}}
	h.SetStreamHandler(negotiateID, s.onNegotiate)
	if opts.RawGossip {
		return s, nil
	}
	s.ps, err = pubsub.NewGossipSub(ctx, h,
		pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign),
		pubsub.WithNoAuthor(),
		// By content, so that what it watches arrives once.
		pubsub.WithMessageIdFn(func(m *pb.Message) string { sum := sha256.Sum256(m.Data); return string(sum[:]) }),
		pubsub.WithFloodPublish(true),
		pubsub.WithMaxMessageSize(1<<20),
		// A flood is not lost in the Sybil's own outbound queues.
		pubsub.WithPeerOutboundQueueSize(4096))
	if err != nil {
		return nil, fmt.Errorf("hostile gossipsub: %w", err)
	}
	return s, nil
}

// NewSwarm adds n Sybil peers to mn, each with its own ed25519 host key
// (mocknet's GenPeer makes ECDSA keys, which cannot delegate), links and
// connects each to every one of targets.
func NewSwarm(ctx context.Context, mn mocknet.Mocknet, n int, opts Options, targets ...peer.ID) ([]*Sybil, error) {
	var out []*Sybil
	for i := range n {
		k, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			return out, err
		}
		// Unique within mn, and a /24 of its own for the reason
		// nodetest.Addr gives its nodes one (.254 keeps clear of them).
		j := len(mn.Peers())
		addr := ma.StringCast(fmt.Sprintf("/ip4/10.%d.%d.254/tcp/4001", j>>8&0xff, j&0xff))
		h, err := mn.AddPeer(k, addr)
		if err != nil {
			return out, fmt.Errorf("sybil %d: %w", i, err)
		}
		// GossipSub first, as a node starts: GossipSub takes a peer on
		// when identify says it speaks the protocol.
		s, err := NewSybil(ctx, h, opts)
		if err != nil {
			return out, err
		}
		for _, t := range targets {
			if _, err := mn.LinkPeers(h.ID(), t); err != nil {
				return out, fmt.Errorf("sybil %d: link %s: %w", i, t, err)
			}
			if _, err := mn.ConnectPeers(h.ID(), t); err != nil {
				return out, fmt.Errorf("sybil %d: connect %s: %w", i, t, err)
			}
		}
		out = append(out, s)
	}
	return out, nil
}

// ID is the Sybil's PeerID.
func (s *Sybil) ID() peer.ID { return s.h.ID() }

// Close closes the Sybil's host and with it its connections and streams.
// Its gossip router stops when the context NewSybil was given ends.
func (s *Sybil) Close() error { return s.h.Close() }

// Self is the Sybil's standing identity: one agent key, delegated by its
// host, used for every message of a one-key abuse.
func (s *Sybil) Self() Identity { return s.self }

// Fresh returns a new agent key delegated by the Sybil's host: a call from
// it names this peer as reply-to, so contractors reach it.
func (s *Sybil) Fresh() (Identity, error) { return newIdentity(s.nodeKey) }

// SetVerdict sets how proposals for this peer's calls are answered.
func (s *Sybil) SetVerdict(v Verdict) { s.verdict.Store(int32(v)) }

// Constraints are a call's constraints, as the intent carries them.
type Constraints struct {
	Deadline  time.Time
	BidWindow time.Duration
	Budget    float64
}

// IntentSpec says what intent to build. Zero fields take the defaults
// noted.
type IntentSpec struct {
	Capability string
	Kind       string // "task", "offer" or "event" (default)
	// Payload is marshalled to JSON; nil is {}.
	Payload     any
	Constraints *Constraints
	// Ahead dates the intent this far after now: the receiver's clock
	// skew allowance (30s) lets it in.
	Ahead time.Duration
	// TTL is from creation to expiry (default one minute).
	TTL time.Duration
	// ReplyTo names the requester's node (default: the identity's node).
	ReplyTo peer.ID
	// Delegation replaces the identity's own (a copied one, say).
	Delegation []byte
}

// Intent builds an intent signed by id. Each call has a new message ID.
func Intent(id Identity, spec IntentSpec) []byte {
	now := time.Now().Add(spec.Ahead)
	if spec.Kind == "" {
		spec.Kind = "event"
	}
	if spec.TTL <= 0 {
		spec.TTL = time.Minute
	}
	if spec.Payload == nil {
		spec.Payload = map[string]any{}
	}
	if spec.ReplyTo == "" {
		spec.ReplyTo = id.Node
	}
	if spec.Delegation == nil {
		spec.Delegation = id.Delegation
	}
	body := map[string]any{"kind": spec.Kind, "capability": spec.Capability, "payload": spec.Payload,
		"reply_to": map[string]any{"peer": spec.ReplyTo.String()}, "delegation": spec.Delegation}
	if c := spec.Constraints; c != nil {
		k := map[string]any{}
		if !c.Deadline.IsZero() {
			k["deadline"] = c.Deadline
		}
		if c.BidWindow > 0 {
			k["bid_window"] = c.BidWindow.String()
		}
		if c.Budget > 0 {
			k["budget"] = c.Budget
		}
		body["constraints"] = k
	}
	return sign(message("intent", intentVersion, id.Agent, now, now.Add(spec.TTL), body), id.Key)
}

// CallPayload is a call for proposals' payload: the task ID and the
// progress interval the requester asks its winner to keep.
func CallPayload(task string, progress time.Duration) map[string]any {
	return map[string]any{"task": task, "progress_ms": progress.Milliseconds()}
}

// Call builds a call for proposals for task by id and remembers it, so
// that proposals for it can be awarded (Award).
func (s *Sybil) Call(id Identity, task string, spec IntentSpec) []byte {
	spec.Kind = "task"
	if spec.Payload == nil {
		spec.Payload = CallPayload(task, 0)
	}
	s.mu.Lock()
	s.calls[task] = id
	s.mu.Unlock()
	return Intent(id, spec)
}

// NewTaskID returns a task ID like a requester's.
func NewTaskID() string { return newID() }

// errRawGossip: a raw Sybil has no GossipSub router to ask.
var errRawGossip = errors.New("hostile: a raw-gossip Sybil has no GossipSub router")

// topic joins capability's topic once.
func (s *Sybil) topic(capability string) (*pubsub.Topic, error) {
	if s.ps == nil {
		return nil, errRawGossip
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.topics[capability]; ok {
		return t, nil
	}
	t, err := s.ps.Join(topicPrefix + capability)
	if err != nil {
		return nil, err
	}
	s.topics[capability] = t
	return t, nil
}

// Publish gossips msgs on capability's topic.
func (s *Sybil) Publish(ctx context.Context, capability string, msgs ...[]byte) error {
	if s.ps == nil {
		return s.publishRaw(ctx, capability, msgs)
	}
	t, err := s.topic(capability)
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if err := t.Publish(ctx, m); err != nil {
			return err
		}
		s.Sent.Add(1)
	}
	return nil
}

// rawGossip is a raw Sybil's gossip stream to one peer.
type rawGossip struct {
	mu sync.Mutex
	st network.Stream
	w  msgio.WriteCloser
}

// publishRaw writes each of msgs, as one GossipSub RPC, to every connected
// peer.
func (s *Sybil) publishRaw(ctx context.Context, capability string, msgs [][]byte) error {
	topic := topicPrefix + capability
	for _, p := range s.h.Network().Peers() {
		g, err := s.rawTo(ctx, p)
		if err != nil {
			continue
		}
		for _, m := range msgs {
			g.mu.Lock()
			err = g.w.WriteMsg(gossipRPC(topic, m))
			g.mu.Unlock()
			if err != nil { // the victim reset it: open another next time
				_ = g.st.Reset()
				s.mu.Lock()
				delete(s.raw, p)
				s.mu.Unlock()
				break
			}
			s.Sent.Add(1)
		}
	}
	return nil
}

// gossipRPC encodes a GossipSub RPC publishing data on topic, from the
// protocol's schema: RPC{publish(2): Message{data(2), topic(4)}}.
func gossipRPC(topic string, data []byte) []byte {
	field := func(b []byte, num int, v []byte) []byte {
		b = binary.AppendUvarint(b, uint64(num<<3|2)) // length-delimited
		b = binary.AppendUvarint(b, uint64(len(v)))
		return append(b, v...)
	}
	msg := field(field(nil, 2, data), 4, []byte(topic))
	return field(nil, 2, msg)
}

// rawTo returns the raw gossip stream to p, opening it once.
func (s *Sybil) rawTo(ctx context.Context, p peer.ID) (*rawGossip, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if g, ok := s.raw[p]; ok {
		return g, nil
	}
	st, err := s.h.NewStream(ctx, p, gossipID)
	if err != nil {
		return nil, err
	}
	g := &rawGossip{st: st, w: msgio.NewVarintWriter(st)}
	s.raw[p] = g
	return g, nil
}

// TopicPeers returns the peers this Sybil knows on capability's topic.
func (s *Sybil) TopicPeers(capability string) []peer.ID {
	t, err := s.topic(capability)
	if err != nil {
		return nil
	}
	return t.ListPeers()
}

// Observed is an intent a Sybil saw on a topic, read without verifying,
// as an eavesdropper reads it.
type Observed struct {
	From       string
	ID         string
	Kind       string
	Task       string  // a call's task ID
	ReplyTo    peer.ID // the reply-to peer, or the delegation's signer
	Delegation []byte
	Raw        []byte
}

// Watch subscribes to capability's topic and sends each intent seen on
// it, decoded, until ctx ends. A slow reader misses intents.
func (s *Sybil) Watch(ctx context.Context, capability string) (<-chan Observed, error) {
	t, err := s.topic(capability)
	if err != nil {
		return nil, err
	}
	sub, err := t.Subscribe()
	if err != nil {
		return nil, err
	}
	out := make(chan Observed, 256)
	go func() {
		defer sub.Cancel()
		for {
			m, err := sub.Next(ctx)
			if err != nil {
				return
			}
			o, err := observe(m.Data)
			if err != nil {
				continue
			}
			select {
			case out <- o:
			default:
			}
		}
	}()
	return out, nil
}

type wireMessage struct {
	Type string          `json:"type"`
	From string          `json:"from"`
	ID   string          `json:"id"`
	Body json.RawMessage `json:"body"`
}

// open reads an envelope's message without verifying it.
func open(data []byte) (wireMessage, error) {
	var m wireMessage
	env, err := record.UnmarshalEnvelope(data)
	if err != nil {
		return m, err
	}
	err = json.Unmarshal(env.RawPayload, &m)
	return m, err
}

func observe(data []byte) (Observed, error) {
	m, err := open(data)
	if err != nil {
		return Observed{}, err
	}
	var b struct {
		Kind    string          `json:"kind"`
		Payload json.RawMessage `json:"payload"`
		ReplyTo struct {
			Peer peer.ID `json:"peer"`
		} `json:"reply_to"`
		Delegation []byte `json:"delegation"`
	}
	if err := json.Unmarshal(m.Body, &b); err != nil {
		return Observed{}, err
	}
	o := Observed{From: m.From, ID: m.ID, Kind: b.Kind, ReplyTo: b.ReplyTo.Peer, Delegation: b.Delegation, Raw: data}
	if o.ReplyTo == "" {
		// Left out, it is the delegation's signer.
		if env, err := record.UnmarshalEnvelope(b.Delegation); err == nil {
			o.ReplyTo, _ = peer.IDFromPublicKey(env.PublicKey)
		}
	}
	var c struct {
		Task string `json:"task"`
	}
	if json.Unmarshal(b.Payload, &c) == nil {
		o.Task = c.Task
	}
	return o, nil
}

// Frame builds a stream frame of type typ, version v, signed by id and
// dated ahead of now.
func Frame(id Identity, typ string, v int, ahead time.Duration, body any) []byte {
	now := time.Now().Add(ahead)
	return sign(message(typ, v, id.Agent, now, now.Add(frameLifetime), body), id.Key)
}

// Proposal is a proposal frame for task by id, with a rationale of the
// given size in bytes.
func Proposal(id Identity, task string, rationale int) []byte {
	return Frame(id, "propose", frameVersion, 0, map[string]any{"task": task, "price": 0.01, "eta_ms": 1,
		"rationale": strings.Repeat("x", rationale)})
}

// AskFrame is a direct ask of agent to on rpc, signed by id and dated
// ahead of now.
func AskFrame(id Identity, to, capability string, input json.RawMessage, ahead time.Duration) []byte {
	body := map[string]any{"to": to, "capability": capability}
	if input != nil {
		body["input"] = input
	}
	return Frame(id, "rpc.request", rpcVersion, ahead, body)
}

// Reply is the first frame a victim answered a stream with.
type Reply struct {
	Type   string          // its message type
	From   string          // its signer's claim
	Reason string          // a reject's reason, an rpc error
	Output json.RawMessage // an rpc response's output
}

// Send opens a stream to p on proto, writes frame and reads the first
// frame of the reply; the stream is reset after. A victim that resets or
// refuses the stream counts in Refused and returns an error.
func (s *Sybil) Send(ctx context.Context, p peer.ID, proto protocol.ID, frame []byte) (Reply, error) {
	st, err := s.h.NewStream(ctx, p, proto)
	if err != nil {
		s.Refused.Add(1)
		return Reply{}, err
	}
	defer st.Reset()
	stop := context.AfterFunc(ctx, func() { _ = st.Reset() })
	defer stop()
	if err := msgio.NewVarintWriter(st).WriteMsg(frame); err != nil {
		s.Refused.Add(1)
		return Reply{}, err
	}
	s.Sent.Add(1)
	b, err := msgio.NewVarintReaderSize(st, 1<<20).ReadMsg()
	if err != nil {
		s.Refused.Add(1)
		return Reply{}, err
	}
	m, err := open(b)
	if err != nil {
		return Reply{}, err
	}
	var body struct {
		Reason string          `json:"reason"`
		Error  string          `json:"error"`
		Output json.RawMessage `json:"output"`
	}
	_ = json.Unmarshal(m.Body, &body)
	return Reply{Type: m.Type, From: m.From, Reason: body.Reason + body.Error, Output: body.Output}, nil
}

// Propose sends one proposal to the requester p and returns its verdict.
func (s *Sybil) Propose(ctx context.Context, p peer.ID, frame []byte) (Reply, error) {
	return s.Send(ctx, p, negotiateID, frame)
}

// Ask sends one direct ask to p and returns the reply.
func (s *Sybil) Ask(ctx context.Context, p peer.ID, frame []byte) (Reply, error) {
	return s.Send(ctx, p, rpcID, frame)
}

// HoldStreams opens n streams to p on proto and holds them, silent, until
// ctx ends: each gets first written to it (nil writes nothing), and is
// then read and discarded, or, if mute, never read at all. It returns how
// many it opened.
func (s *Sybil) HoldStreams(ctx context.Context, p peer.ID, proto protocol.ID, n int, first []byte, mute bool) int {
	opened := 0
	for range n {
		st, err := s.h.NewStream(ctx, p, proto)
		if err != nil {
			s.Refused.Add(1)
			continue
		}
		opened++
		go func() {
			if first != nil {
				if err := msgio.NewVarintWriter(st).WriteMsg(first); err != nil {
					_ = st.Reset()
					return
				}
				s.Sent.Add(1)
			}
			s.hold(ctx, st, mute)
		}()
	}
	return opened
}

// hold keeps st open until ctx ends or the victim ends it.
func (s *Sybil) hold(ctx context.Context, st network.Stream, mute bool) {
	s.Holding.Add(1)
	defer s.Holding.Add(-1)
	stop := context.AfterFunc(ctx, func() { _ = st.Reset() })
	defer stop()
	if mute {
		<-ctx.Done()
		return
	}
	_, _ = io.Copy(io.Discard, st)
	_ = st.Reset()
}

// onNegotiate serves a stream a contractor opened to propose on one of
// this peer's calls, as the verdict says.
func (s *Sybil) onNegotiate(st network.Stream) {
	v := Verdict(s.verdict.Load())
	if v == Mute {
		s.Proposals.Add(1)
		s.hold(s.ctx, st, true)
		return
	}
	b, err := msgio.NewVarintReaderSize(st, maxFrame).ReadMsg()
	if err != nil {
		_ = st.Reset()
		return
	}
	s.Proposals.Add(1)
	if v == Award {
		s.award(st, b)
	}
	s.hold(s.ctx, st, false)
}

// award accepts the proposal in b, if it is for one of this peer's calls.
func (s *Sybil) award(st network.Stream, b []byte) {
	m, err := open(b)
	if err != nil || m.Type != "propose" {
		return
	}
	var w struct {
		Task  string  `json:"task"`
		Price float64 `json:"price"`
		ETA   int64   `json:"eta_ms"`
	}
	if json.Unmarshal(m.Body, &w) != nil {
		return
	}
	s.mu.Lock()
	id, ok := s.calls[w.Task]
	s.mu.Unlock()
	if !ok {
		return
	}
	accept := Frame(id, "accept", frameVersion, 0, map[string]any{"task": w.Task, "agent": m.From, "price": w.Price,
		"eta_ms": w.ETA, "rationale": "sybil"})
	if msgio.NewVarintWriter(st).WriteMsg(accept) == nil {
		s.Awards.Add(1)
		s.Sent.Add(1)
	}
}
