package node

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/peer"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap/zapcore"

	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/intent"
	"github.com/parleynet/parley/tracing"
)

// Errors Publish returns for what the caller can fix.
var (
	// ErrPayloadTooLarge: the signed intent is over MaxIntentSize.
	ErrPayloadTooLarge = errors.New("intent too large")
	// ErrBadTTL: the TTL is negative or over the node's IntentTTL.
	ErrBadTTL = errors.New("invalid intent TTL")
)

// messageID names a gossip message by the hash of its bytes, so the same
// envelope is the same message whichever peer forwards it.
func messageID(m *pb.Message) string {
	sum := sha256.Sum256(m.Data)
	return string(sum[:])
}

// PublishRequest is what an agent wants to announce.
type PublishRequest struct {
	Agent       string              // hosted agent's name; "" is the default agent
	Kind        intent.Kind         // "" means event
	Capability  string              // the topic
	Payload     json.RawMessage     // JSON; only what readers need to decide
	Constraints *intent.Constraints // optional
	TTL         time.Duration       // 0 means Config.IntentTTL
}

// Publish signs an intent as the named agent and gossips it on its
// capability's topic. If no peer is on the topic yet, it waits up to
// Config.PublishWait (bounded by ctx) for one before it sends.
func (n *Node) Publish(ctx context.Context, req PublishRequest) (*intent.Intent, error) {
	if _, err := n.running(); err != nil {
		return nil, err
	}
	a, err := n.Agent(req.Agent)
	if err != nil {
		return nil, err
	}
	if req.Kind == "" {
		req.Kind = intent.KindEvent
	}
	switch {
	case req.TTL < 0:
		return nil, fmt.Errorf("%w: TTL %s is negative", ErrBadTTL, req.TTL)
	case req.TTL > n.cfg.IntentTTL:
		return nil, fmt.Errorf("%w: TTL %s is over this node's limit of %s (IntentTTL)", ErrBadTTL, req.TTL, n.cfg.IntentTTL)
	case req.TTL == 0:
		req.TTL = n.cfg.IntentTTL
	}
	return n.publishSealed(ctx, a, intent.Body{
		Kind:        req.Kind,
		Capability:  req.Capability,
		Payload:     req.Payload,
		Constraints: req.Constraints,
	}, req.TTL)
}

// publishAs signs body as agent a, with this node as the reply-to, and
// gossips it. It is also how the negotiation service sends its calls.
func (n *Node) publishAs(ctx context.Context, a *identity.Agent, body intent.Body, ttl time.Duration) (*intent.Intent, error) {
	if ttl <= 0 || ttl > n.cfg.IntentTTL {
		ttl = n.cfg.IntentTTL
	}
	return n.publishSealed(ctx, a, body, ttl)
}

// publishSealed signs and gossips body with a ttl already within bounds.
func (n *Node) publishSealed(ctx context.Context, a *identity.Agent, body intent.Body, ttl time.Duration) (*intent.Intent, error) {
	ctx, span := tracing.Start(ctx, n.tracing.Tracer("parley/node"), "intent.publish", trace.SpanKindProducer)
	defer span.End()
	in, err := n.publishIn(ctx, a, body, ttl)
	if span.IsRecording() {
		span.SetAttributes(attribute.String("parley.capability", body.Capability), attribute.String("parley.kind", string(body.Kind)),
			tracing.AttrAgent.String(string(a.ID)))
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		} else {
			span.SetAttributes(attribute.Int("parley.bytes", len(in.Raw)))
		}
	}
	return in, err
}

func (n *Node) publishIn(ctx context.Context, a *identity.Agent, body intent.Body, ttl time.Duration) (*intent.Intent, error) {
	err := n.admitPublish(a, body.Kind, body.Capability)
	if err != nil {
		return nil, err
	}
	// Receivers' spans (validation, a contractor's bid) of a call for
	// work are children of this publish. Other intents keep their trace
	// to this node: every node of a topic would record a span for each,
	// and a busy topic would push the tasks' spans out of every ring.
	if span := trace.SpanFromContext(ctx); span.IsRecording() && body.Kind == intent.KindTask {
		body.Trace = tracing.Inject(ctx)
	}
	// The peer is left out: the delegation proves it.
	body.ReplyTo = intent.ReplyTo{Addrs: addrStrings(n)}
	if body.Delegation, err = n.delegationOf(a); err != nil {
		return nil, fmt.Errorf("delegate agent %s: %w", a.Name, err)
	}
	in, err := intent.SealCached(a, body, ttl, n.delegations)
	if err != nil {
		return nil, err
	}
	if len(in.Raw) > n.cfg.MaxIntentSize {
		return nil, fmt.Errorf("%w: %d bytes signed, limit %d", ErrPayloadTooLarge, len(in.Raw), n.cfg.MaxIntentSize)
	}
	t, err := n.topic(body.Capability)
	if err != nil {
		return nil, err
	}
	if !n.reachable(t) {
		wait, cancel := context.WithTimeout(ctx, n.cfg.PublishWait)
		_ = n.waitReachable(wait, t) // past PublishWait it is sent to whoever is there
		cancel()
	}
	if err := n.recordPeer("intent.published", "", string(a.ID), "", string(body.Kind)+" on "+body.Capability, intentDetail(in)); err != nil {
		return nil, err
	}
	id := messageID(&pb.Message{Data: in.Raw})
	n.publishing.Store(id, in)
	err = t.Publish(ctx, in.Raw)
	n.publishing.Delete(id)
	if err != nil {
		return nil, fmt.Errorf("publish intent on %s: %w", intent.Topic(body.Capability), err)
	}
	n.metrics.published.Inc()
	return in, nil
}

// waitForTopicPeer waits, within PublishWait and ctx, until some peer is on
// topic t, so a publish right after joining a mesh is not sent to no one.
// reachable reports whether a message published on t now would be sent
// to at least one peer.
func (n *Node) reachable(t *pubsub.Topic) bool {
	for _, p := range t.ListPeers() {
		if n.router.canSend(p) {
			return true
		}
	}
	return false
}

// waitReachable waits until a message on t would reach a peer: one is on
// the topic and GossipSub has a stream to it.
func (n *Node) waitReachable(ctx context.Context, t *pubsub.Topic) error {
	events, err := t.EventHandler()
	if err != nil {
		return fmt.Errorf("watch topic %s: %w", t.String(), err)
	}
	defer events.Cancel()
	ctx, cancel := context.WithCancelCause(ctx)
	joined := make(chan struct{}, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // ends with ctx
		defer wg.Done()
		for {
			if _, err := events.NextPeerEvent(ctx); err != nil {
				return
			}
			select {
			case joined <- struct{}{}:
			default:
			}
		}
	}()
	defer wg.Wait()
	defer cancel(nil)
	for {
		opened := n.router.streamOpened()
		if n.reachable(t) {
			return nil
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-opened:
		case <-joined:
		}
	}
}

func addrStrings(n *Node) []string {
	h := n.Host()
	if h == nil {
		return nil
	}
	var out []string
	for _, a := range h.Addrs() {
		out = append(out, a.String())
	}
	return out
}

// topic joins the capability's topic once and registers its validator.
func (n *Node) topic(capability string) (*pubsub.Topic, error) {
	if err := intent.ValidCapability(capability); err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, ErrClosed
	}
	if t, ok := n.topics[capability]; ok {
		return t, nil
	}
	name := intent.Topic(capability)
	// Inline: the validator is CPU work (one signature, a parse, the
	// admission layer's maps) that would otherwise start a goroutine per
	// message — up to 8,192 at once, each holding its message, while the
	// audit queue pushes back. Run on GossipSub's per-CPU validation
	// workers, a backed-up node fills its bounded validation queue and
	// drops there instead.
	if err := n.ps.RegisterTopicValidator(name, n.traced(n.validator(capability)), pubsub.WithValidatorInline(true)); err != nil {
		return nil, fmt.Errorf("register validator for %s: %w", name, err)
	}
	t, err := n.ps.Join(name)
	if err != nil {
		_ = n.ps.UnregisterTopicValidator(name)
		return nil, fmt.Errorf("join %s: %w", name, err)
	}
	if !n.cfg.NoPeerScoring {
		if err := t.SetScoreParams(topicScoreParams()); err != nil {
			return nil, fmt.Errorf("score params for %s: %w", name, err)
		}
	}
	n.topics[capability] = t
	return t, nil
}

// received is what the validator hands subscribers: the verified intent,
// and whether this node's policy lets it reach local agents.
type received struct {
	in      *intent.Intent
	deliver bool
}

// validator checks every message on a capability's topic before GossipSub
// delivers or forwards it, cheapest check first: size; the forwarding
// peer's rate (before any signature is verified); the envelope, the
// agent's signature and its node's delegation; the origin node's and the
// agent's rates; only then the replay window, so a message refused for
// its rate never takes a place there. The policy's peer and agent lists
// decide delivery to local agents, not relaying (unless RelayFilter). A
// verified intent rides on to subscribers in ValidatorData so it is
// decoded once.
func (n *Node) validator(capability string) pubsub.ValidatorEx {
	self := n.ID()
	return func(_ context.Context, from peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
		if len(msg.Data) > n.cfg.MaxIntentSize {
			return n.drop(from, nil, "oversize", fmt.Errorf("%w: %d bytes, limit %d", identity.ErrTooLarge, len(msg.Data), n.cfg.MaxIntentSize))
		}
		// The forwarder's rate was applied to the RPC (forwarders.go).
		remote := from != self
		if remote && n.bans.banned(from) {
			// Queued for validation before the ban: as unread as
			// what the ban keeps out.
			n.metrics.dropped.WithLabelValues(reasonBanned).Inc()
			return pubsub.ValidationIgnore
		}
		var in *intent.Intent
		if v, ok := n.publishing.Load(msg.ID); ok && !remote {
			in = v.(*intent.Intent) // sealed here a moment ago
		} else {
			var err error
			in, err = intent.Open(msg.Data, capability, intent.OpenOptions{
				OpenOptions: identity.OpenOptions{MaxSize: n.cfg.MaxIntentSize},
				Delegations: n.delegations,
			})
			if err != nil {
				return n.drop(from, nil, intent.DropReason(err), err)
			}
		}
		if remote {
			if reason := n.adm.Intent(in, from); reason != "" {
				return n.ignore(from, in, reason)
			}
		}
		if err := n.replay.Check(in.From, in.ID, in.Created, time.Now()); err != nil {
			return n.drop(from, in, intent.DropReason(err), err)
		}
		deliver := true
		if remote {
			if err := n.adm.Deliver(in, from); err != nil {
				deliver = false
				n.metrics.dropped.WithLabelValues("denied").Inc()
				if n.cfg.RelayFilter {
					return pubsub.ValidationIgnore
				}
			} else {
				if n.cfg.AuditLog != nil {
					if err := n.recordQueued("intent.received", "", string(in.From), from, string(in.Kind)+" on "+in.Capability, intentDetail(in)); err != nil {
						// Relayed, but not delivered: no agent acts on
						// what the log could not record. Counted, and
						// logged by audit.
						deliver = false
						n.metrics.dropped.WithLabelValues("audit").Inc()
					}
				}
				if deliver {
					n.metrics.received.Inc()
				}
			}
		}
		if remote && !n.adm.Relay() {
			// Seen now, so GossipSub drops its later copies: this is
			// the one delivery.
			n.metrics.notRelayed.Inc()
			if deliver {
				n.deliverLocal(capability, in)
			}
			return pubsub.ValidationIgnore
		}
		msg.ValidatorData = received{in, deliver}
		return pubsub.ValidationAccept
	}
}

// ignore counts an intent the admission layer refused for its origin's or
// agent's rate: it is ignored, not rejected, since it is valid and its
// forwarder may be an honest relay (a peer over the rates with its own
// agents' intents pays through the layer's penalty).
func (n *Node) ignore(from peer.ID, in *intent.Intent, reason string) pubsub.ValidationResult {
	n.metrics.dropped.WithLabelValues(reason).Inc()
	if debugging() {
		log.Debugw("intent refused by admission", intentFields(from, in, "reason", reason)...)
	}
	return pubsub.ValidationIgnore
}

// drop counts and logs a rejected message (in is nil if it did not open).
// Replays and stale messages are ignored rather than rejected: an honest
// peer can forward them late, and a reject would cost it its score.
func (n *Node) drop(from peer.ID, in *intent.Intent, reason string, err error) pubsub.ValidationResult {
	n.metrics.dropped.WithLabelValues(reason).Inc()
	if debugging() {
		log.Debugw("dropped intent", intentFields(from, in, "reason", reason, "err", err)...)
	}
	if from != n.ID() && identity.Forged(err) {
		n.forgedFrame(n.host.Network(), from, "intent "+reason)
	}
	if reason == "replayed" || reason == "expired" {
		return pubsub.ValidationIgnore
	}
	return pubsub.ValidationReject
}

// subscriptionBuffer is how many intents a subscriber may fall behind
// before the next are dropped for it (counted as lost, slow_subscriber).
const subscriptionBuffer = 256

// Subscription delivers the verified intents of one capability.
type Subscription struct {
	sub *pubsub.Subscription
	// out holds what reaches the subscriber: GossipSub's deliveries,
	// handed on by pump, and the intents the node took without relaying
	// them (deliverLocal). pump closes it, under the node's subsMu, when
	// it stops; err says why.
	out  chan *intent.Intent
	err  error
	stop chan struct{}
	once sync.Once
}

// Subscribe starts receiving the verified intents published on a
// capability's topic, including this node's own.
func (n *Node) Subscribe(ctx context.Context, capability string) (*Subscription, error) {
	if _, err := n.running(); err != nil {
		return nil, err
	}
	t, err := n.topic(capability)
	if err != nil {
		return nil, err
	}
	ps, err := t.Subscribe(pubsub.WithBufferSize(subscriptionBuffer))
	if err != nil {
		return nil, fmt.Errorf("subscribe to %s: %w", intent.Topic(capability), err)
	}
	s := &Subscription{sub: ps, out: make(chan *intent.Intent, subscriptionBuffer), stop: make(chan struct{})}
	// Counted under mu, where Close marks the node closed before it waits.
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		ps.Cancel()
		return nil, ErrClosed
	}
	n.wg.Add(1)
	n.mu.Unlock()
	n.subsMu.Lock()
	if n.subs[capability] == nil {
		n.subs[capability] = map[*Subscription]struct{}{}
	}
	n.subs[capability][s] = struct{}{}
	n.subsMu.Unlock()
	go n.pump(capability, s)
	return s, nil
}

// pump hands GossipSub's deliveries to s until s or the node is closed.
func (n *Node) pump(capability string, s *Subscription) {
	defer n.wg.Done()
	err := n.pumpUntilStopped(s)
	n.subsMu.Lock()
	defer n.subsMu.Unlock()
	delete(n.subs[capability], s)
	if len(n.subs[capability]) == 0 {
		delete(n.subs, capability)
	}
	s.err = err
	close(s.out)
}

func (n *Node) pumpUntilStopped(s *Subscription) error {
	for {
		m, err := s.sub.Next(n.ctx)
		if err != nil {
			return err
		}
		r, ok := m.ValidatorData.(received)
		if !ok || !r.deliver {
			continue
		}
		select {
		case s.out <- r.in:
		case <-s.stop:
			return pubsub.ErrSubscriptionCancelled
		case <-n.ctx.Done():
			return n.ctx.Err()
		}
	}
}

// deliverLocal hands an intent the node did not relay to the
// capability's subscribers; a subscriber that is behind misses it.
func (n *Node) deliverLocal(capability string, in *intent.Intent) {
	n.subsMu.Lock()
	defer n.subsMu.Unlock()
	for s := range n.subs[capability] {
		select {
		case s.out <- in:
		default:
			n.metrics.lost.WithLabelValues(lostSlowSubscriber).Inc()
		}
	}
}

// Next blocks until the next verified intent arrives, ctx ends, or the
// subscription or node is closed.
func (s *Subscription) Next(ctx context.Context) (*intent.Intent, error) {
	select {
	case in, ok := <-s.out:
		if !ok {
			return nil, s.err
		}
		return in, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Close stops the subscription.
func (s *Subscription) Close() {
	s.once.Do(func() {
		close(s.stop)
		s.sub.Cancel()
	})
}

// TopicPeers returns the peers this node knows to be subscribed to a
// capability's topic. It joins the topic (without subscribing) if needed.
func (n *Node) TopicPeers(capability string) []peer.ID {
	if _, err := n.running(); err != nil {
		return nil
	}
	t, err := n.topic(capability)
	if err != nil {
		return nil
	}
	return t.ListPeers()
}

// intentDetail is what the audit log keeps of an intent: enough to find
// it, not its payload.
func intentDetail(in *intent.Intent) map[string]any {
	return map[string]any{"id": in.ID, "kind": in.Kind, "capability": in.Capability, "from": in.From, "bytes": len(in.Raw)}
}

// WaitReady returns once a call or intent on capability would reach
// another node: a peer is on its topic and GossipSub has a stream to it.
// A program that publishes or requests right after Start otherwise races
// the mesh forming, and its first call can reach nobody. It returns ctx's
// error if ctx ends first, and ErrNotStarted or ErrClosed for a node that
// is not running or closes meanwhile.
func (n *Node) WaitReady(ctx context.Context, capability string) error {
	if _, err := n.running(); err != nil {
		return err
	}
	t, err := n.topic(capability)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	n.mu.Lock()
	stop := context.AfterFunc(n.ctx, func() { cancel(ErrClosed) })
	n.mu.Unlock()
	defer stop()
	if err := n.waitReachable(ctx, t); err != nil {
		return fmt.Errorf("no peer reachable on %s: %w", capability, err)
	}
	return nil
}

// debugging says whether the node logs at debug: the fields of a line
// about every intent are not built for nothing.
func debugging() bool { return log.Desugar().Core().Enabled(zapcore.DebugLevel) }

// intentFields are the fields of a log line about an intent from a
// forwarder: its ID, agent, origin node and trace ID when it opened.
func intentFields(from peer.ID, in *intent.Intent, kv ...any) []any {
	f := append([]any{"from", from}, kv...)
	if in == nil {
		return f
	}
	f = append(f, "intent", in.ID, "agent", in.From, "origin", in.Origin)
	if sc, err := tracing.ParseTraceparent(in.Trace); err == nil {
		f = append(f, "trace_id", sc.TraceID().String())
	}
	return f
}
