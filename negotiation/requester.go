package negotiation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/intent"
	"github.com/parleynet/parley/negotiation/frame"
	"github.com/parleynet/parley/tracing"
)

// bidder is one bid and, until a verdict is sent, its open stream.
type bidder struct {
	info BidInfo
	conn *frame.Conn
}

// request is one task this node requested. Its runner (Service.Request's
// goroutine) owns the bids once the window closes; stream goroutines only
// add bids while the window is open, under mu.
type request struct {
	s       *Service
	id      string
	agent   *identity.Agent
	need    Need
	opts    RequestOptions
	hist    history
	created time.Time
	cancelF context.CancelCauseFunc

	mu       sync.Mutex
	window   int // the call whose window is open; 0 when closed
	taken    int // bids and refusals kept in this call's window
	pending  []*bidder
	enough   chan struct{} // closed when EnoughBids bids are pending
	all      []*bidder
	winner   *bidder
	why      string // the winner's award rationale
	result   json.RawMessage
	calls    int
	locals   []contractKey // this node's own agents asked about the open call
	late     int           // bids that came after a window closed, since the last noBids
	callSpan trace.Span    // the open call's span, for bid events
	commitAt time.Time
	outcome  *Outcome
	// The winner's questions (ask.go): how many it asked, the open one
	// and the stream to answer it on.
	asks     int
	question *Question
	askConn  *frame.Conn
	umu      sync.Mutex // serializes Updates calls: Answer makes them too
	quiet    bool       // umu's: Request has returned

	// For the success metrics.
	firstBidAt, firstAwardAt time.Time
	letDownAt                time.Time // the last award came to nothing; zero once a commit follows
	letDownAs                string    // and what became of that bid
	human                    bool      // a human approved the winner's award
}

var (
	errCanceledByUser = errors.New("canceled by the requester")
	errServiceClosed  = errors.New("node closing")
)

// Request runs a whole negotiation as agent and returns its outcome. The
// error wraps ErrTaskFailed or ErrCanceled when the task did not complete;
// the outcome is returned then too.
func (s *Service) Request(ctx context.Context, agent *identity.Agent, need Need, opts ...RequestOption) (*Outcome, error) {
	var o RequestOptions
	for _, opt := range opts {
		opt(&o)
	}
	s.fill(&o)
	if err := intent.ValidCapability(need.Capability); err != nil {
		return nil, err
	}
	for name, raw := range map[string]json.RawMessage{"summary": need.Summary, "input": need.Input} {
		if len(raw) > 0 && !json.Valid(raw) {
			return nil, fmt.Errorf("%w: need %s is not valid JSON", intent.ErrBadPayload, name)
		}
	}
	if s.cfg.Publish == nil {
		return nil, errors.New("negotiation: no Publish function configured")
	}
	id := identity.NewID()
	ctx, span := s.span(ctx, spanRequest, trace.SpanKindClient, id)
	defer span.End()
	if span.IsRecording() {
		span.SetAttributes(attribute.String("parley.capability", need.Capability), tracing.AttrAgent.String(string(agent.ID)),
			tracing.AttrName.String(agent.Name), attribute.Float64("parley.budget", need.Budget))
	}
	if g := s.cfg.Guard; g != nil {
		start := time.Now()
		err := g.Request(ctx, agent, need)
		policyEvent(ctx, spanPolicyRequest, start, err)
		if err != nil {
			_ = s.auditIn(ctx, Event{Kind: "policy", Role: RoleRequester, Capability: need.Capability, Agent: agent.ID, Rationale: err.Error()})
			failSpan(span, err.Error())
			return nil, fmt.Errorf("request %s as %s: %w", need.Capability, agent.Name, err)
		}
	}
	r := &request{s: s, id: id, agent: agent, need: need, opts: o, created: time.Now()}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	ctx, cancelT := context.WithTimeout(ctx, o.Timeout)
	defer cancelT()
	r.cancelF = cancel
	stop := context.AfterFunc(s.ctx, func() { cancel(errServiceClosed) })
	defer stop()

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	s.requests[r.id] = r
	s.mu.Unlock()
	r.hist.set(StateSubmitted, fmt.Sprintf("%s needs %s", agent.Name, need.Capability))
	if o.Started != nil {
		o.Started(r.id)
	}
	r.update(Update{State: StateSubmitted})

	reason := r.run(ctx)
	// Whatever ended the task (a result, the retry budget, a cancel in the
	// bid window, the node closing), no bidder is left waiting on it.
	r.closeWindow()
	r.rejectRest("task ended")
	out := r.finish(ctx, reason)
	r.hush()
	s.mu.Lock()
	s.endedLocked(r.id)
	s.mu.Unlock()
	s.m.outcomes.WithLabelValues(string(RoleRequester), string(out.State)).Inc()
	s.m.latency.Observe(out.Timings.Total.Seconds())
	if span.IsRecording() {
		span.SetAttributes(attribute.String("parley.state", string(out.State)), attribute.Int("parley.calls", out.Calls),
			attribute.Int("parley.bids", len(out.Bids)))
		if out.Winner != "" {
			span.SetAttributes(attribute.String("parley.winner", string(out.Winner)), attribute.String("parley.winner_name", out.WinnerName),
				attribute.String("parley.rationale", out.Rationale))
		}
		if out.State != StateCompleted {
			failSpan(span, out.Reason)
		}
	}
	switch out.State {
	case StateCompleted:
		return out, nil
	case StateCanceled:
		return out, fmt.Errorf("task %s: %w: %s", r.id, ErrCanceled, out.Reason)
	}
	return out, fmt.Errorf("task %s: %w: %s", r.id, ErrTaskFailed, out.Reason)
}

func (s *Service) fill(o *RequestOptions) {
	if o.BidWindow <= 0 {
		o.BidWindow = s.cfg.BidWindow
	}
	if o.Timeout <= 0 {
		o.Timeout = s.cfg.Timeout
	}
	if o.CommitTimeout <= 0 {
		o.CommitTimeout = s.cfg.CommitTimeout
	}
	if o.ProgressTimeout <= 0 {
		o.ProgressTimeout = s.cfg.ProgressTimeout
	}
	if o.Calls <= 0 {
		o.Calls = s.cfg.Calls
	}
	if o.Strategy == nil {
		o.Strategy = Cheapest()
	}
}

// cancel ends the task as canceled, why saying more than "canceled by
// the requester" if it is not empty; false if it had already ended.
func (r *request) cancel(why string) bool {
	if st, _, _ := r.hist.get(); st.Terminal() {
		return false
	}
	if why == "" {
		r.cancelF(errCanceledByUser)
	} else {
		r.cancelF(fmt.Errorf("%w: %s", errCanceledByUser, why))
	}
	return true
}

func (r *request) ended() bool {
	st, _, _ := r.hist.get()
	return st.Terminal()
}

// receiveBid takes a proposal or refusal from a bidder's stream. Only
// bids for an open window, within MaxBidsPerCall and admitted by the Guard
// are kept; the others are answered and forgotten.
func (r *request) receiveBid(conn *frame.Conn, typ string, from identity.AgentID, w wire) {
	b := &bidder{info: BidInfo{Agent: from, Name: displayName(w.Name), Peer: conn.Stream().Conn().RemotePeer(), Bid: w.bid()}, conn: conn}
	if g := r.s.cfg.Guard; g != nil && typ == msgPropose {
		start, bctx := time.Now(), r.bidCtx()
		err := g.Proposal(bctx, r.agent, r.id, b.info)
		policyEvent(bctx, spanPolicyProposal, start, err)
		if err != nil {
			r.s.m.dropped.WithLabelValues("denied").Inc()
			r.reject(conn, "bid refused: "+err.Error())
			return
		}
	}
	r.mu.Lock()
	b.info.Call = r.window
	refusal := ""
	switch {
	case r.window == 0:
		refusal = "bid window closed; thank you"
		r.late++
		r.s.m.dropped.WithLabelValues("late").Inc()
	case r.taken >= r.s.cfg.MaxBidsPerCall:
		refusal = "enough bids for this call; thank you"
		r.s.m.dropped.WithLabelValues("too_many_bids").Inc()
	}
	for _, p := range r.pending {
		if refusal == "" && p.info.Agent == from {
			refusal = "duplicate bid for this call"
		}
	}
	if refusal != "" {
		r.mu.Unlock()
		if typ == msgRefuse {
			_ = conn.Close()
		} else {
			r.reject(conn, refusal)
		}
		return
	}
	r.taken++
	if typ == msgPropose && r.firstBidAt.IsZero() {
		r.firstBidAt = time.Now()
	}
	if sp := r.callSpan; sp != nil && sp.IsRecording() {
		name := "bid"
		if typ == msgRefuse {
			name = "refusal"
		}
		sp.AddEvent(name, trace.WithAttributes(append(bidAttrs(b.info), attribute.String("parley.reason", w.Reason))...))
	}
	if typ == msgRefuse {
		b.info.Status, b.info.Note, b.conn = "refused", w.Reason, nil
	} else {
		r.pending = append(r.pending, b)
		if r.opts.EnoughBids > 0 && len(r.pending) == r.opts.EnoughBids {
			close(r.enough)
		}
	}
	r.all = append(r.all, b)
	r.mu.Unlock()
	if typ == msgRefuse {
		_ = conn.Close()
	}
}

// bidCtx is the context of the open call's span, for decisions on bids.
func (r *request) bidCtx() context.Context {
	r.mu.Lock()
	sp := r.callSpan
	r.mu.Unlock()
	if sp == nil {
		return r.s.ctx
	}
	return trace.ContextWithSpan(r.s.ctx, sp)
}

func (r *request) reject(conn *frame.Conn, reason string) {
	conn.SetReadTimeout(0)
	_ = conn.Send(msgReject, wireVersion, wire{Task: r.id, Reason: reason})
	_ = conn.Close()
}

// run calls for proposals and awards until the task completes, the retry
// budget is spent or ctx ends. It returns why the task did not complete,
// or "" if it did.
func (r *request) run(ctx context.Context) string {
	var reasons []string
	for call := 1; call <= r.opts.Calls; call++ {
		r.hist.set(StateNegotiating, fmt.Sprintf("call %d of %d", call, r.opts.Calls))
		r.update(Update{State: StateNegotiating, Note: fmt.Sprintf("call %d of %d", call, r.opts.Calls)})
		bids, err := r.callForProposals(ctx, call)
		if err != nil {
			return err.Error()
		}
		if ctx.Err() != nil {
			return strings.Join(reasons, "; ")
		}
		if cs, ok := r.opts.Strategy.(CounterStrategy); ok && len(bids) > 0 && r.s.cfg.MaxCounterRounds > 0 {
			bids = r.bargain(ctx, cs, bids)
			if ctx.Err() != nil {
				return strings.Join(reasons, "; ")
			}
		}
		if len(bids) == 0 {
			reasons = append(reasons, fmt.Sprintf("call %d: %s", call, r.noBids(call)))
			continue
		}
		ranked := r.rank(bids)
		for i, b := range ranked {
			rationale := fmt.Sprintf("ranked %d of %d by %s (price %g, eta %s)", i+1, len(ranked), r.opts.Strategy.Name(), b.info.Price, b.info.ETA)
			done, why := r.award(ctx, b, rationale)
			if done || ctx.Err() != nil {
				r.rejectRest("task ended")
				return ""
			}
			r.mu.Lock()
			r.letDownAt, r.letDownAs = time.Now(), b.info.Status
			r.mu.Unlock()
			reasons = append(reasons, fmt.Sprintf("%s %s", short(b.info.Agent), why))
			r.hist.note(fmt.Sprintf("%s %s; moving on", short(b.info.Agent), why))
		}
		r.rejectRest("no award this call")
	}
	return "no contractor completed it: " + strings.Join(reasons, "; ")
}

// callForProposals publishes call number n and returns the bids that
// arrived within the bid window and the budget.
func (r *request) callForProposals(ctx context.Context, n int) ([]*bidder, error) {
	deadline, _ := ctx.Deadline()
	ctx, span := r.s.span(ctx, spanCall, trace.SpanKindProducer, r.id)
	defer span.End()
	if span.IsRecording() {
		span.SetAttributes(attribute.Int("parley.call", n), attribute.String("parley.bid_window", r.opts.BidWindow.String()))
	}
	payload, err := json.Marshal(cfp{Task: r.id, Summary: r.need.Summary, ProgressMillis: r.opts.ProgressTimeout.Milliseconds(), Name: r.agent.Name,
		Asks: r.s.cfg.MaxAsks > 0})
	if err != nil {
		return nil, fmt.Errorf("marshal call: %w", err)
	}
	body := intent.Body{
		Kind:       intent.KindTask,
		Capability: r.need.Capability,
		Payload:    payload,
		Constraints: &intent.Constraints{
			Deadline:  deadline,
			BidWindow: intent.Duration(r.opts.BidWindow),
			Budget:    r.need.Budget,
		},
		Trace: tracing.Inject(ctx),
	}
	if err := r.s.auditIn(ctx, Event{Kind: "call", Role: RoleRequester, Task: r.id, Capability: r.need.Capability, Agent: r.agent.ID,
		Price: r.need.Budget, Rationale: fmt.Sprintf("call %d of %d, bid window %s", n, r.opts.Calls, r.opts.BidWindow), Queued: true}); err != nil {
		return nil, fmt.Errorf("audit call %d: %w", n, err)
	}
	r.mu.Lock()
	r.window, r.pending, r.calls, r.taken = n, nil, n, 0
	if span.IsRecording() {
		r.callSpan = span
	}
	r.enough = make(chan struct{})
	enough := r.enough
	r.mu.Unlock()
	in, err := r.s.cfg.Publish(ctx, r.agent, body, time.Until(deadline))
	if err != nil {
		r.closeWindow()
		if ctx.Err() != nil {
			return nil, nil
		}
		return nil, fmt.Errorf("publish call %d: %w", n, err)
	}
	// This node's own agents bid too, in-process (local.go); gossip does
	// not hand a node its own call.
	if in != nil && in.Origin == r.s.h.ID() {
		locals := r.s.handleCall(in, true)
		r.mu.Lock()
		r.locals = locals
		r.mu.Unlock()
	}
	t := time.NewTimer(r.opts.BidWindow)
	select {
	case <-t.C:
	case <-enough:
	case <-ctx.Done():
	}
	t.Stop()
	bids := r.closeWindow()
	if span.IsRecording() {
		span.SetAttributes(attribute.Int("parley.proposals", len(bids)))
	}
	var ok []*bidder
	for _, b := range bids {
		if r.need.Budget > 0 && b.info.Price > r.need.Budget {
			b.info.Status, b.info.Note = "over_budget", fmt.Sprintf("price %g over budget %g", b.info.Price, r.need.Budget)
			r.reject(b.conn, b.info.Note)
			b.conn = nil
			continue
		}
		ok = append(ok, b)
	}
	return ok, nil
}

func (r *request) closeWindow() []*bidder {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.window = 0
	r.callSpan = nil
	bids := r.pending
	r.pending = nil
	return bids
}

// rank orders bids by the strategy and records each one's rank.
func (r *request) rank(bids []*bidder) []*bidder {
	byAgent := map[identity.AgentID]*bidder{}
	infos := make([]BidInfo, len(bids))
	for i, b := range bids {
		byAgent[b.info.Agent] = b
		infos[i] = b.info
	}
	ranked := make([]*bidder, 0, len(bids))
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, in := range r.opts.Strategy.Rank(infos) {
		b := byAgent[in.Agent]
		b.info.Rank, b.info.Status = i+1, "standby"
		ranked = append(ranked, b)
	}
	return ranked
}

// rejectRest sends a verdict to every bidder still waiting on a stream.
func (r *request) rejectRest(reason string) {
	r.mu.Lock()
	var open []*frame.Conn
	for _, b := range r.all {
		if b.conn != nil {
			open = append(open, b.conn)
			b.conn = nil
		}
	}
	r.mu.Unlock()
	// Off the critical path: closing a stream can wait for the peer.
	for _, c := range open {
		if !r.s.goroutine(func() { r.reject(c, reason) }) {
			_ = c.Reset()
		}
	}
}

func (r *request) setStatus(b *bidder, status, note string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b.info.Status, b.info.Note = status, note
}

// award offers the task to b and, if it commits, sees the work through.
// It reports whether the task completed, or why b did not complete it.
func (r *request) award(ctx context.Context, b *bidder, rationale string) (bool, string) {
	ctx, span := r.s.span(ctx, spanAward, trace.SpanKindClient, r.id)
	defer span.End()
	if span.IsRecording() {
		span.SetAttributes(append(bidAttrs(b.info), attribute.Int("parley.rank", b.info.Rank), attribute.String("parley.rationale", rationale))...)
	}
	done, why := r.awardIn(ctx, b, rationale)
	if !done {
		failSpan(span, why)
	}
	return done, why
}

func (r *request) awardIn(ctx context.Context, b *bidder, rationale string) (bool, string) {
	ev := Event{Role: RoleRequester, Task: r.id, Capability: r.need.Capability, Agent: r.agent.ID, Other: b.info.Agent, Peer: b.info.Peer, Price: b.info.Price}
	var hold Hold = noHold{}
	if g := r.s.cfg.Guard; g != nil {
		start := time.Now()
		h, err := g.Award(ctx, r.agent, r.id, r.need.Capability, b.info)
		policyEvent(ctx, spanPolicyAward, start, err)
		if err != nil {
			e := ev
			e.Kind, e.Rationale = "policy", "award refused: "+err.Error()
			_ = r.s.auditIn(ctx, e)
			r.setStatus(b, "denied", err.Error())
			r.mu.Lock()
			conn := b.conn
			b.conn = nil
			r.mu.Unlock()
			if conn != nil {
				r.reject(conn, "not awarded: "+err.Error())
			}
			return false, "was not awarded: " + err.Error()
		}
		hold = h
	}
	human := false
	if h, ok := hold.(interface{ HumanApproved() bool }); ok {
		human = h.HumanApproved()
	}
	r.mu.Lock()
	if !r.letDownAt.IsZero() {
		r.s.m.reawards.WithLabelValues(reawardAfter(r.letDownAs)).Inc()
	}
	r.mu.Unlock()
	// The budget held for the award is spent only on a result.
	charged := false
	defer func() {
		if !charged {
			hold.Release()
		}
	}()
	ev.Kind, ev.Rationale = "award", rationale
	if err := r.s.auditIn(ctx, ev); err != nil {
		return false, "could not be awarded (audit log failed)"
	}
	r.mu.Lock()
	conn := b.conn
	b.conn = nil
	r.mu.Unlock()
	if conn == nil {
		// The bidder's stream is gone (we rejected it or it closed):
		// re-award on a new stream; it stands by until the deadline.
		st, err := r.s.openStream(ctx, b.info.Peer)
		if err != nil {
			r.setStatus(b, "failed", "unreachable: "+err.Error())
			return false, "was unreachable for the award"
		}
		conn = r.s.newConn(st, r.agent)
		conn.ExpectPeer(b.info.Agent)
	}
	// When the task is canceled, tell the contractor and end the stream,
	// which also ends a blocked read.
	stop := context.AfterFunc(ctx, func() {
		_ = conn.Stream().SetWriteDeadline(time.Now().Add(time.Second))
		_ = conn.Send(msgCancel, wireVersion, wire{Task: r.id, Reason: causeText(ctx)})
		_ = conn.Reset()
	})
	defer stop()
	ok := false
	defer func() {
		if !ok {
			_ = conn.Reset()
			return
		}
		// The result is in and the ack sent. A close may wait for the ack
		// to leave (mocknet's does, for a whole link latency: a seventh
		// leg in every simulated negotiation); the outcome need not.
		if !r.s.goroutine(func() { _ = conn.Close() }) {
			_ = conn.Close()
		}
	}()

	w := bidWire(r.id, b.info.Bid)
	w.Agent, w.Rationale, w.Trace = b.info.Agent, rationale, tracing.Inject(ctx)
	cctx, cspan := r.s.span(ctx, spanCommit, trace.SpanKindInternal, r.id)
	defer cspan.End()
	if err := conn.Send(msgAccept, wireVersion, w); err != nil {
		r.setStatus(b, "failed", err.Error())
		return false, "could not be sent the award"
	}
	r.setStatus(b, "awarded", rationale)
	r.hist.note(fmt.Sprintf("awarded to %s: %s", short(b.info.Agent), rationale))
	awardedAt := time.Now()
	r.mu.Lock()
	if r.firstAwardAt.IsZero() {
		r.firstAwardAt = awardedAt
	}
	r.mu.Unlock()

	conn.SetReadTimeout(r.opts.CommitTimeout)
	var in wire
	m, err := r.s.recv(conn, &in)
	if err != nil {
		return false, r.lost(ctx, conn, b, err, "commit")
	}
	switch m.Type {
	case msgCommit:
		e := ev
		e.Kind, e.Rationale, e.Queued = "commit", "committed", true
		if err := r.s.auditIn(cctx, e); err != nil {
			return false, "committed, but the audit log failed"
		}
		cspan.End()
	case msgDecline:
		ev.Kind, ev.Rationale = "decline", in.Reason
		_ = r.s.auditIn(cctx, ev)
		failSpan(cspan, "declined: "+in.Reason)
		r.setStatus(b, "declined", in.Reason)
		return false, "declined: " + in.Reason
	default:
		r.setStatus(b, "failed", "sent "+m.Type+" instead of commit")
		return false, "answered the award with " + m.Type
	}

	r.mu.Lock()
	r.winner, r.why, r.commitAt, r.human = b, rationale, time.Now(), human
	r.s.m.stages.WithLabelValues(stageCommit).Observe(r.commitAt.Sub(awardedAt).Seconds())
	if !r.letDownAt.IsZero() {
		r.s.m.recovery.Observe(r.commitAt.Sub(r.letDownAt).Seconds())
		r.letDownAt = time.Time{}
	}
	r.mu.Unlock()
	r.hist.set(StateWorking, short(b.info.Agent)+" committed")
	r.update(Update{State: StateWorking, Note: short(b.info.Agent) + " committed", Winner: b.info.Agent, WinnerName: b.info.Name})
	r.rejectRest(fmt.Sprintf("awarded to another bid (%s); standing by until the deadline", rationale))
	wctx, wspan := r.s.span(ctx, spanWork, trace.SpanKindInternal, r.id)
	defer wspan.End()
	if err := conn.Send(msgTask, wireVersion, wire{Task: r.id, Input: r.need.Input}); err != nil {
		r.setStatus(b, "failed", err.Error())
		return false, "could not be sent the task"
	}
	defer r.endAsks()
	for {
		conn.SetReadTimeout(r.opts.ProgressTimeout)
		in = wire{} // a keepalive must not repeat the last progress note
		m, err := r.s.recv(conn, &in)
		if err != nil {
			return false, r.lost(ctx, conn, b, err, "progress")
		}
		switch m.Type {
		case msgProgress:
			if in.Note != "" || in.Fraction != 0 {
				r.update(Update{State: r.hist.current(), Progress: true, Fraction: in.Fraction, Note: in.Note, Winner: b.info.Agent, WinnerName: b.info.Name})
			}
		case msgCommit: // alive; a repeated commit changes nothing
		case msgAsk:
			if why := r.asked(conn, b, in, ev); why != "" {
				return false, why
			}
		case msgResult:
			wspan.End()
			rctx, rspan := r.s.span(ctx, spanResult, trace.SpanKindInternal, r.id)
			if rspan.IsRecording() {
				rspan.SetAttributes(attribute.Int("parley.output_bytes", len(in.Output)))
			}
			ev.Kind, ev.Rationale = "result", fmt.Sprintf("%d bytes", len(in.Output))
			if err := r.s.auditIn(rctx, ev); err != nil {
				failSpan(rspan, err.Error())
				rspan.End()
				return false, "sent a result the audit log could not record"
			}
			r.mu.Lock()
			r.result = in.Output
			b.info.Status, b.info.Note = "completed", ""
			r.mu.Unlock()
			hold.Charge()
			charged = true
			_ = conn.Send(msgAck, wireVersion, wire{Task: r.id})
			rspan.End() // not deferred: a defer in this loop would allocate
			ok = true
			return true, ""
		case msgFailure:
			ev.Kind, ev.Rationale = "failure", in.Reason
			_ = r.s.auditIn(wctx, ev)
			failSpan(wspan, "failed: "+in.Reason)
			r.setStatus(b, "failed", in.Reason)
			return false, "failed: " + in.Reason
		case msgCancel:
			r.setStatus(b, "failed", "withdrew: "+in.Reason)
			return false, "withdrew: " + in.Reason
		default:
			r.setStatus(b, "failed", "sent "+m.Type+" while working")
			return false, "sent " + m.Type + " while working"
		}
	}
}

// lost explains a failed read from the awarded contractor and, if the task
// itself was canceled, tells the contractor.
func (r *request) lost(ctx context.Context, conn *frame.Conn, b *bidder, err error, waitingFor string) string {
	if ctx.Err() != nil {
		r.setStatus(b, "canceled", causeText(ctx))
		return "was canceled"
	}
	if reason := frame.Reason(err); reason != "" {
		r.s.m.dropped.WithLabelValues(reason).Inc()
		r.setStatus(b, "failed", "bad frame: "+reason)
		return "sent a bad frame (" + reason + ")"
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		timeout := r.opts.CommitTimeout
		if waitingFor == "progress" {
			timeout = r.opts.ProgressTimeout
		}
		r.setStatus(b, "silent", fmt.Sprintf("no %s within %s", waitingFor, timeout))
		return fmt.Sprintf("went silent (no %s within %s)", waitingFor, timeout)
	}
	r.setStatus(b, "failed", "stream lost: "+err.Error())
	return "was lost (stream closed while waiting for " + waitingFor + ")"
}

func causeText(ctx context.Context) string {
	cause := context.Cause(ctx)
	switch {
	case errors.Is(cause, context.DeadlineExceeded):
		return "deadline exceeded"
	case cause != nil:
		return cause.Error()
	}
	return "canceled"
}

// finish builds the outcome and sets the final state.
func (r *request) finish(ctx context.Context, failReason string) *Outcome {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	out := &Outcome{Task: r.id, Capability: r.need.Capability, Calls: r.calls, Result: r.result, Bids: []BidInfo{}}
	cause := context.Cause(ctx)
	switch {
	case r.result != nil:
		r.hist.set(StateCompleted, "result received and acknowledged")
	case errors.Is(cause, errServiceClosed):
		out.Reason = "node closed before the task ended"
		r.hist.set(StateFailed, out.Reason)
	case errors.Is(cause, context.DeadlineExceeded):
		// The caller's deadline may be shorter than the task's own.
		out.Reason = fmt.Sprintf("deadline exceeded after %s", now.Sub(r.created).Round(time.Millisecond))
		switch {
		case failReason != "":
			out.Reason += "; " + failReason
		case len(r.all) == 0:
			out.Reason += "; no bids so far"
		}
		r.hist.set(StateFailed, out.Reason)
	case cause != nil:
		out.Reason = causeText(ctx)
		r.hist.set(StateCanceled, out.Reason)
	default:
		out.Reason = failReason
		r.hist.set(StateFailed, out.Reason)
	}
	out.State, out.History, _ = r.hist.get()
	if r.winner != nil && r.result != nil {
		out.Winner, out.WinnerName, out.WinnerPeer, out.Rationale = r.winner.info.Agent, r.winner.info.Name, r.winner.info.Peer, r.why
	}
	for _, b := range r.all {
		out.Bids = append(out.Bids, b.info)
	}
	out.Timings.Total = now.Sub(r.created)
	if !r.commitAt.IsZero() {
		out.Timings.Negotiation = r.commitAt.Sub(r.created)
		if r.result != nil {
			out.Timings.Work = now.Sub(r.commitAt)
		}
	}
	r.observe(out)
	r.outcome = out
	return out
}

// observe records a finished task's stages and, if it completed, whether
// a human approved it. r.mu is held.
func (r *request) observe(out *Outcome) {
	m := r.s.m
	if !r.firstBidAt.IsZero() {
		m.stages.WithLabelValues(stageFirstBid).Observe(r.firstBidAt.Sub(r.created).Seconds())
	}
	if !r.firstAwardAt.IsZero() {
		m.stages.WithLabelValues(stageAward).Observe(r.firstAwardAt.Sub(r.created).Seconds())
	}
	if out.State == StateCompleted {
		m.stages.WithLabelValues(stageWork).Observe(out.Timings.Work.Seconds())
		approval := "none"
		if r.human {
			approval = "human"
		}
		m.completed.WithLabelValues(approval).Inc()
	}
}

// reawardAfter is the bounded label of a re-award's cause.
func reawardAfter(status string) string {
	switch status {
	case "failed", "declined", "silent", "denied":
		return status
	}
	return "other"
}

func (r *request) info() TaskInfo {
	st, steps, updated := r.hist.get()
	ti := TaskInfo{Task: r.id, Role: RoleRequester, Capability: r.need.Capability, Agent: r.agent.ID, AgentName: r.agent.Name, State: st, Updated: updated, History: steps}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.winner != nil {
		ti.Peer, ti.PeerName = r.winner.info.Agent, r.winner.info.Name
	}
	ti.Question = r.question
	ti.Outcome = r.outcome
	if r.outcome == nil {
		for _, b := range r.all {
			ti.Bids = append(ti.Bids, b.info)
		}
	}
	return ti
}

// noHold is the Hold of an award no Guard reserved budget for.
type noHold struct{}

func (noHold) Charge()  {}
func (noHold) Release() {}

// short abbreviates an AgentID for logs and notes.
func short(a identity.AgentID) string {
	s := string(a)
	if len(s) > 20 {
		return "…" + s[len(s)-8:]
	}
	return s
}

// noBids says why call n has no bid to award, as far as this node knows:
// nobody could hear it, every bidder refused or bid over the budget, or
// nobody answered in time.
func (r *request) noBids(n int) string {
	r.mu.Lock()
	var refused, over, dropped []string
	for _, b := range r.all {
		if b.info.Call != n {
			continue
		}
		who := short(b.info.Agent)
		if b.info.Name != "" {
			who = b.info.Name
		}
		switch b.info.Status {
		case "refused":
			refused = append(refused, fmt.Sprintf("%s: %s", who, b.info.Note))
		case "over_budget":
			over = append(over, fmt.Sprintf("%s: %s", who, b.info.Note))
		default:
			dropped = append(dropped, fmt.Sprintf("%s: %s %s", who, b.info.Status, b.info.Note))
		}
	}
	locals, late := r.locals, r.late
	r.late = 0
	r.mu.Unlock()
	// What became of this node's own agents that did not bid (policy,
	// their own refusal) is known here.
	var quiet []string
	for _, k := range locals {
		r.s.mu.Lock()
		c := r.s.contracts[k]
		r.s.mu.Unlock()
		if c == nil {
			continue
		}
		if st, steps, _ := c.hist.get(); st == StateRejected || st == StateFailed {
			if len(steps) > 0 {
				quiet = append(quiet, fmt.Sprintf("%s: %s", c.agent.Name, steps[len(steps)-1].Note))
			}
		}
	}
	reach := -1
	if f := r.s.cfg.Reach; f != nil {
		reach = f(r.need.Capability)
	}
	var parts []string
	switch answered := len(refused) + len(over) + len(dropped) + len(quiet); {
	case reach == 0 && len(locals) == 0:
		return fmt.Sprintf("no capable agent found: no peer is on the %s topic and no other agent of this node offers it", r.need.Capability)
	case answered == 0 && late > 0:
		return fmt.Sprintf("no bids within the %s bid window (%d came after it closed)", r.opts.BidWindow, late)
	case answered == 0:
		return fmt.Sprintf("no bids within the %s bid window", r.opts.BidWindow)
	case len(refused)+len(quiet) == answered:
		parts = append(parts, "every agent asked refused")
	default:
		parts = append(parts, "no bid left to award")
	}
	for _, l := range [][]string{refused, quiet, over, dropped} {
		parts = append(parts, l...)
	}
	return strings.Join(parts, "; ")
}
