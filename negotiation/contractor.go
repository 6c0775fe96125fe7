package negotiation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/intent"
	"github.com/parleynet/parley/negotiation/frame"
	"github.com/parleynet/parley/tracing"
)

// contractor is a hosted agent that bids on calls for its capabilities.
type contractor struct {
	agent *identity.Agent
	caps  map[string]bool
	h     Handler
}

// AddContractor makes agent bid, through h, on calls for capabilities.
// Adding the same agent again replaces its capabilities and handler.
func (s *Service) AddContractor(agent *identity.Agent, capabilities []string, h Handler) error {
	caps := map[string]bool{}
	for _, c := range capabilities {
		if err := intent.ValidCapability(c); err != nil {
			return err
		}
		caps[c] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.contractors[agent.ID] = &contractor{agent: agent, caps: caps, h: h}
	return nil
}

// RemoveContractor stops agent bidding. Tasks it holds run on.
func (s *Service) RemoveContractor(id identity.AgentID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.contractors, id)
}

// HandleCall considers a task intent seen on the mesh: every contractor
// offering its capability is asked whether to bid. Calls from this node
// itself are skipped here: the requester hands them to its own agents
// when it publishes them (local.go), so gossip's copy would be a second.
//
// The requester chooses its bid window, deadline and progress interval;
// this node clamps each to its own bounds before holding anything for
// them, and asks the Guard before any agent code runs.
func (s *Service) HandleCall(in *intent.Intent) {
	if in.Kind != intent.KindTask || in.Origin == s.h.ID() {
		return
	}
	s.handleCall(in, false)
}

// handleCall starts a bid by every local contractor offering the call's
// capability, other than its requester, and returns their contract keys
// if keys is set (the requester's own call: it tells why none bid).
func (s *Service) handleCall(in *intent.Intent, keys bool) []contractKey {
	// Who bids is known before anything is parsed: most calls a
	// requester makes have no local bidder, and cost nothing here.
	s.mu.Lock()
	var bidders []*contractor
	for _, con := range s.contractors {
		if con.caps[in.Capability] && con.agent.ID != in.From {
			bidders = append(bidders, con)
		}
	}
	s.mu.Unlock()
	if len(bidders) == 0 {
		return nil
	}
	var c cfp
	if err := json.Unmarshal(in.Payload, &c); err != nil || c.Task == "" {
		log.Debugw("ignoring task intent without a call", "intent", in.ID, "from", in.From)
		return nil
	}
	now := time.Now()
	call := Call{
		Task:          c.Task,
		Capability:    in.Capability,
		Requester:     in.From,
		RequesterPeer: in.Origin,
		RequesterName: displayName(c.Name),
		Summary:       c.Summary,
		Deadline:      in.Expires,
	}
	if k := in.Constraints; k != nil {
		call.Budget, call.BidWindow = k.Budget, time.Duration(k.BidWindow)
		if !k.Deadline.IsZero() && k.Deadline.Before(call.Deadline) {
			call.Deadline = k.Deadline
		}
	}
	if call.BidWindow <= 0 {
		call.BidWindow = s.cfg.BidWindow
	}
	call.BidWindow = min(call.BidWindow, s.cfg.MaxBidWindow)
	if latest := now.Add(s.cfg.MaxTaskDuration); call.Deadline.After(latest) {
		call.Deadline = latest
	}
	if now.After(call.Deadline) {
		return nil
	}
	progress := time.Duration(c.ProgressMillis) * time.Millisecond
	if progress <= 0 {
		progress = s.cfg.ProgressTimeout
	}
	progress = min(max(progress, 150*time.Millisecond), s.cfg.MaxProgressTimeout)
	var addrs []ma.Multiaddr
	for _, a := range in.ReplyTo.Addrs {
		m, err := ma.NewMultiaddr(a)
		if err != nil {
			continue
		}
		if !s.cfg.DialPrivateAddrs && (manet.IsPrivateAddr(m) || manet.IsIPLoopback(m) || manet.IsIPUnspecified(m)) {
			continue
		}
		addrs = append(addrs, m)
	}
	var started []contractKey
	for _, con := range bidders {
		if s.goroutine(func() {
			s.bid(con, call, progress, c.Asks, peer.AddrInfo{ID: call.RequesterPeer, Addrs: addrs}, in.Trace)
		}) && keys {
			started = append(started, contractKey{call.Requester, call.Task, con.agent.ID})
		}
	}
	return started
}

// contract is one task this node's agent bid on or works on.
type contract struct {
	s        *Service
	agent    *identity.Agent
	con      *contractor
	call     Call
	bid      Bid
	progress time.Duration
	asks     bool // the requester's node answers questions (cfp.Asks)
	hist     history

	mu       sync.Mutex
	busy     bool // an award is being served
	done     bool // a result was delivered
	result   json.RawMessage
	cancelF  context.CancelCauseFunc
	canceled bool
	question *Question // open while the work waits for an answer (ask.go)
}

// bid asks the handler about a call and, if it bids, proposes on a stream
// to the requester and waits there for the verdict.
func (s *Service) bid(con *contractor, call Call, progress time.Duration, asks bool, requester peer.AddrInfo, traceparent string) {
	key := contractKey{call.Requester, call.Task, con.agent.ID}
	s.mu.Lock()
	if old := s.contracts[key]; old != nil && old.holding() {
		s.mu.Unlock()
		return // a re-issued call for a task we already hold
	}
	c := &contract{s: s, agent: con.agent, con: con, call: call, progress: progress, asks: asks && s.cfg.MaxAsks > 0}
	if why := s.addContractLocked(key, c); why != "" {
		s.mu.Unlock()
		s.m.dropped.WithLabelValues(why).Inc()
		return
	}
	s.mu.Unlock()
	c.hist.set(StateSubmitted, "call from "+short(call.Requester))

	// The bid's span joins the requester's trace: its call is the parent.
	ctx, span := s.span(s.remote(s.ctx, traceparent), spanBid, trace.SpanKindConsumer, call.Task)
	defer span.End()
	if span.IsRecording() {
		span.SetAttributes(tracing.AttrAgent.String(string(con.agent.ID)), tracing.AttrName.String(con.agent.Name),
			tracing.AttrPeer.String(call.RequesterPeer.String()), attribute.String("parley.requester", string(call.Requester)),
			attribute.String("parley.capability", call.Capability))
	}
	bctx, cancel := context.WithTimeout(ctx, call.BidWindow)
	defer cancel()
	// The requester's node must answer before any agent code runs for
	// it: a delegation costs nothing to sign for a node that does not
	// exist, a connection does.
	if requester.ID != s.h.ID() { // this node's own call needs no connection
		if len(requester.Addrs) > 0 {
			s.h.Peerstore().AddAddrs(requester.ID, requester.Addrs, peerstore.TempAddrTTL)
		}
		if err := s.h.Connect(bctx, peer.AddrInfo{ID: requester.ID}); err != nil {
			c.end(StateFailed, "could not reach the requester's node: "+err.Error())
			return
		}
	}
	if g := s.cfg.Guard; g != nil {
		start := time.Now()
		release, err := g.Call(bctx, con.agent, call)
		policyEvent(bctx, spanPolicyCall, start, err)
		if err != nil {
			failSpan(span, err.Error())
			c.end(StateRejected, "not bidding: "+err.Error())
			return
		}
		bid, err := safeBid(bctx, con.h, call)
		release()
		s.proposeOrRefuse(ctx, c, con, call, requester, bid, err)
		return
	}
	bid, err := safeBid(bctx, con.h, call)
	s.proposeOrRefuse(ctx, c, con, call, requester, bid, err)
}

// proposeOrRefuse sends the handler's answer to the requester and, for a
// bid, waits on its stream for the verdict.
func (s *Service) proposeOrRefuse(ctx context.Context, c *contract, con *contractor, call Call, requester peer.AddrInfo, bid Bid, err error) {
	span := trace.SpanFromContext(ctx)
	if err != nil {
		if span.IsRecording() {
			span.SetAttributes(attribute.String("parley.verdict", "no bid: "+err.Error()))
		}
		if err == ErrNoBid {
			c.end(StateRejected, "no bid")
			return
		}
		c.end(StateRejected, "refused: "+err.Error())
		c.send(requester, msgRefuse, wire{Task: call.Task, Name: con.agent.Name, Reason: err.Error()})
		return
	}
	if call.Budget > 0 && bid.Price > call.Budget {
		c.end(StateRejected, fmt.Sprintf("own price %g over the budget %g; no bid", bid.Price, call.Budget))
		return
	}
	ev := Event{Role: RoleContractor, Task: call.Task, Capability: call.Capability, Agent: con.agent.ID, Other: call.Requester, Peer: call.RequesterPeer, Price: bid.Price}
	ev.Kind, ev.Rationale = "proposal", bid.Rationale
	if span.IsRecording() {
		span.SetAttributes(attribute.Float64("parley.price", bid.Price), attribute.Int64("parley.eta_ms", bid.ETA.Milliseconds()),
			attribute.String("parley.bid_rationale", bid.Rationale))
	}
	if err := s.auditIn(ctx, ev); err != nil {
		c.end(StateRejected, "audit log failed; no bid")
		return
	}
	c.setBid(bid)
	c.hist.set(StateNegotiating, fmt.Sprintf("proposed price %g, eta %s", bid.Price, bid.ETA))
	proposal := bidWire(call.Task, bid)
	proposal.Name, proposal.Trace = con.agent.Name, tracing.Inject(ctx)
	conn := c.send(requester, msgPropose, proposal)
	if conn == nil {
		return
	}
	// The verdict comes when the window closes, or later if we stand by
	// for a winner that has not yet committed: within StandbyWait of the
	// window, never past the deadline (which this node clamped). Counter
	// rounds come before it and do not move that end.
	end := time.Now().Add(min(time.Until(call.Deadline), call.BidWindow+s.cfg.StandbyWait))
	var w wire
	var m *identity.Message
	for rounds := 1; ; rounds++ {
		conn.SetReadTimeout(max(time.Until(end), time.Millisecond))
		w = wire{}
		m, err = s.recv(conn, &w)
		if err != nil {
			if frame.Reason(err) != "" {
				s.refuseFrame(conn.Stream(), err)
			} else {
				_ = conn.Reset()
			}
			c.hist.set(StateRejected, "no verdict: "+err.Error())
			return
		}
		if m.Type != msgCounter {
			break
		}
		if !s.answerCounter(ctx, c, conn, w, rounds) {
			return
		}
	}
	if span.IsRecording() {
		span.SetAttributes(attribute.String("parley.verdict", m.Type), attribute.String("parley.reason", w.Reason+w.Rationale))
	}
	span.End()
	switch m.Type {
	case msgAccept:
		c.serveAward(s.ctx, conn, w)
	case msgReject:
		// Stay eligible for a re-award until the deadline.
		c.hist.set(StateRejected, "rejected: "+w.Reason)
		_ = conn.Close()
	default:
		s.refuseFrame(conn.Stream(), fmt.Errorf("%w: %q as a verdict", frame.ErrBadBody, m.Type))
	}
}

// send opens a stream to the requester and sends one frame on it.
func (c *contract) send(requester peer.AddrInfo, typ string, w wire) *frame.Conn {
	s := c.s
	ctx, cancel := context.WithTimeout(s.ctx, max(c.call.BidWindow, time.Second))
	defer cancel()
	st, err := s.openStream(ctx, requester.ID)
	if err != nil {
		c.hist.set(StateFailed, "could not reach the requester: "+err.Error())
		return nil
	}
	conn := s.newConn(st, c.agent)
	conn.ExpectPeer(c.call.Requester)
	if err := conn.Send(typ, wireVersion, w); err != nil {
		_ = conn.Reset()
		c.hist.set(StateFailed, "could not send "+typ+": "+err.Error())
		return nil
	}
	if typ == msgRefuse {
		_ = conn.Close()
		return nil
	}
	return conn
}

// setBid records the terms this contract last proposed.
func (c *contract) setBid(b Bid) {
	c.mu.Lock()
	c.bid = b
	c.mu.Unlock()
}

// lastBid is the terms this contract last proposed.
func (c *contract) lastBid() Bid {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bid
}

// holding reports whether the contract has an award in hand or done, so a
// repeated call must not start another bid.
func (c *contract) holding() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.busy || c.done
}

// over reports whether the contract can be forgotten: no award is being
// served and it ended, or it stands by past its deadline.
func (c *contract) over(now time.Time) bool {
	c.mu.Lock()
	working := c.busy && !c.done
	c.mu.Unlock()
	if working {
		return false
	}
	return c.hist.current().Terminal() || now.After(c.call.Deadline)
}

func (c *contract) end(st State, note string) {
	c.hist.set(st, note)
	c.s.m.outcomes.WithLabelValues(string(RoleContractor), string(st)).Inc()
}

// cancel stops the work of an awarded task; false if none is running.
func (c *contract) cancel(why string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cancelF == nil || c.done {
		return false
	}
	c.canceled = true
	c.cancelF(errors.New(why))
	return true
}

// serveAward answers an accept on conn: commit or decline, receive the
// input, run the work with progress, send the result, wait for the ack. A
// repeated award for a task already served changes nothing.
func (c *contract) serveAward(ctx context.Context, conn *frame.Conn, accept wire) {
	defer conn.Close()
	// The award's spans are children of the requester's award.
	ctx = c.s.remote(ctx, accept.Trace)
	cctx, cspan := c.s.span(ctx, spanCommit, trace.SpanKindServer, c.call.Task)
	defer cspan.End()
	if cspan.IsRecording() {
		cspan.SetAttributes(tracing.AttrAgent.String(string(c.agent.ID)), tracing.AttrName.String(c.agent.Name),
			attribute.String("parley.rationale", accept.Rationale))
	}
	c.mu.Lock()
	switch {
	case c.done:
		result := c.result
		c.mu.Unlock()
		_ = conn.Send(msgResult, wireVersion, wire{Task: c.call.Task, Output: result})
		return
	case c.busy:
		c.mu.Unlock()
		_ = conn.Send(msgDecline, wireVersion, wire{Task: c.call.Task, Reason: "already working on this task"})
		return
	}
	c.busy = true
	// The terms committed to are the last proposed; a counter round on
	// the bid's stream may still be changing them when a re-award comes.
	bid := c.bid
	c.mu.Unlock()
	release := func() {
		c.mu.Lock()
		c.busy = false
		c.mu.Unlock()
	}
	if time.Now().After(c.call.Deadline) {
		release()
		_ = conn.Send(msgDecline, wireVersion, wire{Task: c.call.Task, Reason: "past the deadline"})
		return
	}
	if cm, ok := c.con.h.(Committer); ok {
		if err := safeCommit(cctx, cm, c.call, bid); err != nil {
			release()
			failSpan(cspan, err.Error())
			c.hist.set(StateRejected, "declined the award: "+err.Error())
			_ = conn.Send(msgDecline, wireVersion, wire{Task: c.call.Task, Reason: err.Error()})
			return
		}
	}
	ev := Event{Role: RoleContractor, Task: c.call.Task, Capability: c.call.Capability, Agent: c.agent.ID, Other: c.call.Requester, Peer: c.call.RequesterPeer, Price: bid.Price}
	if g := c.s.cfg.Guard; g != nil {
		start := time.Now()
		free, err := g.Commit(cctx, c.agent, c.call, bid)
		policyEvent(cctx, spanPolicyCommit, start, err)
		if err != nil {
			release()
			e := ev
			e.Kind, e.Rationale = "policy", "commit refused: "+err.Error()
			_ = c.s.auditIn(cctx, e)
			failSpan(cspan, err.Error())
			c.hist.set(StateRejected, "declined the award: "+err.Error())
			_ = conn.Send(msgDecline, wireVersion, wire{Task: c.call.Task, Reason: err.Error()})
			return
		}
		if free != nil {
			defer free()
		}
	}
	ev.Kind, ev.Rationale = "commit", accept.Rationale
	if err := c.s.auditIn(cctx, ev); err != nil {
		release()
		_ = conn.Send(msgDecline, wireVersion, wire{Task: c.call.Task, Reason: "cannot record the commitment"})
		return
	}
	if err := conn.Send(msgCommit, wireVersion, wire{Task: c.call.Task}); err != nil {
		release()
		c.hist.set(StateFailed, "could not commit: "+err.Error())
		return
	}
	c.hist.revive(StateWorking, "awarded: "+accept.Rationale)

	conn.SetReadTimeout(c.s.cfg.CommitTimeout)
	var w wire
	m, err := c.s.recv(conn, &w)
	if err != nil || m.Type != msgTask {
		release()
		if err != nil && frame.Reason(err) != "" {
			c.s.refuseFrame(conn.Stream(), err)
		}
		c.end(StateCanceled, "no task input after commit")
		return
	}

	cspan.End()
	wctx, wspan := c.s.span(ctx, spanWork, trace.SpanKindInternal, c.call.Task)
	defer wspan.End()
	wctx, cancel := context.WithDeadline(wctx, c.call.Deadline)
	wctx, cancelCause := context.WithCancelCause(wctx)
	defer cancel()
	c.mu.Lock()
	c.cancelF = cancelCause
	c.mu.Unlock()

	var sendMu sync.Mutex
	send := func(typ string, w wire) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		_ = conn.Stream().SetWriteDeadline(time.Now().Add(c.s.cfg.CommitTimeout))
		return conn.Send(typ, wireVersion, w)
	}
	ask := newAsker(c, wctx, send)
	// The reader hears cancel, answers and ack while the work runs; a
	// lost stream cancels the work, since nobody is waiting for its result.
	acked := make(chan struct{})
	var readers sync.WaitGroup
	readers.Add(1)
	go func() {
		defer readers.Done()
		conn.SetReadTimeout(0)
		for {
			var in wire
			m, err := c.s.recv(conn, &in)
			if err != nil {
				cancelCause(fmt.Errorf("requester gone: %w", err))
				return
			}
			switch m.Type {
			case msgCancel:
				c.mu.Lock()
				c.canceled = true
				c.mu.Unlock()
				why := errCanceledByUser.Error()
				if in.Reason != "" && !strings.HasPrefix(in.Reason, why) {
					why += ": " + in.Reason
				}
				cancelCause(errors.New(why))
			case msgAnswer:
				if !ask.deliver(in) {
					c.s.refuseFrame(conn.Stream(), fmt.Errorf("%w: an answer to no open question, or over %d bytes", frame.ErrBadBody, c.s.cfg.MaxAnswer))
					cancelCause(errors.New("the requester broke the protocol: an answer to no open question"))
					return
				}
			case msgAck:
				close(acked)
				return
			}
		}
	}()
	// Keepalives let the requester tell slow work from a dead contractor.
	keepalive := time.NewTicker(max(c.progress/3, 50*time.Millisecond))
	stopKeepalive := make(chan struct{})
	readers.Add(1)
	go func() {
		defer readers.Done()
		defer keepalive.Stop()
		for {
			select {
			case <-keepalive.C:
				_ = send(msgProgress, wire{Task: c.call.Task})
			case <-stopKeepalive:
				return
			case <-wctx.Done():
				return
			}
		}
	}()

	task := Task{Call: c.call, Bid: bid, Input: w.Input, Progress: func(f float64, note string) {
		_ = send(msgProgress, wire{Task: c.call.Task, Fraction: f, Note: note})
	}}
	if c.asks {
		task.Ask = ask.ask
	}
	out, werr := safeWork(wctx, c.con.h, task)
	close(stopKeepalive)

	c.mu.Lock()
	canceled := c.canceled
	c.mu.Unlock()
	switch {
	case canceled || (wctx.Err() != nil && werr != nil):
		c.mu.Lock()
		c.busy = false
		c.mu.Unlock()
		_ = conn.Reset()
		readers.Wait()
		failSpan(wspan, context.Cause(wctx).Error())
		c.end(StateCanceled, context.Cause(wctx).Error())
		return
	case werr != nil:
		ev.Kind, ev.Rationale = "failure", werr.Error()
		failSpan(wspan, werr.Error())
		_ = c.s.auditIn(wctx, ev)
		_ = send(msgFailure, wire{Task: c.call.Task, Reason: werr.Error()})
		c.mu.Lock()
		c.busy = false
		c.mu.Unlock()
		_ = conn.Close()
		readers.Wait()
		c.end(StateFailed, werr.Error())
		return
	}
	if len(out) == 0 {
		out = json.RawMessage("null")
	}
	wspan.End()
	rctx, rspan := c.s.span(ctx, spanResult, trace.SpanKindInternal, c.call.Task)
	defer rspan.End()
	if rspan.IsRecording() {
		rspan.SetAttributes(attribute.Int("parley.output_bytes", len(out)))
	}
	ev.Kind, ev.Rationale = "result", fmt.Sprintf("%d bytes", len(out))
	if err := c.s.auditIn(rctx, ev); err != nil {
		c.mu.Lock()
		c.busy = false
		c.mu.Unlock()
		_ = send(msgFailure, wire{Task: c.call.Task, Reason: "result could not be recorded"})
		_ = conn.Close()
		readers.Wait()
		c.end(StateFailed, "audit log failed")
		return
	}
	c.mu.Lock()
	c.done, c.result = true, out
	c.mu.Unlock()
	if err := send(msgResult, wire{Task: c.call.Task, Output: out}); err != nil {
		_ = conn.Reset()
		readers.Wait()
		c.end(StateFailed, "could not deliver the result: "+err.Error())
		return
	}
	select {
	case <-acked:
	case <-time.After(c.s.cfg.CommitTimeout):
	case <-ctx.Done():
	}
	_ = conn.Close()
	readers.Wait()
	c.end(StateCompleted, "result delivered")
}

func (c *contract) info() TaskInfo {
	st, steps, updated := c.hist.get()
	c.mu.Lock()
	q := c.question
	c.mu.Unlock()
	return TaskInfo{Task: c.call.Task, Role: RoleContractor, Capability: c.call.Capability, Agent: c.agent.ID,
		AgentName: c.agent.Name, Peer: c.call.Requester, PeerName: c.call.RequesterName, State: st, Updated: updated, History: steps, Question: q}
}

// revive moves a contract out of "rejected" when a stand-by bid is
// awarded after all.
func (h *history) revive(st State, note string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now()
	h.state, h.updated = st, now
	h.steps = append(h.steps, Transition{State: st, At: now, Note: note})
}

// The handler is the agent author's code: a panic in it must not take the
// node down.
func safeBid(ctx context.Context, h Handler, call Call) (b Bid, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("bid handler panicked: %v", r)
		}
	}()
	return h.Bid(ctx, call)
}

func safeWork(ctx context.Context, h Handler, t Task) (out json.RawMessage, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("work handler panicked: %v", r)
		}
	}()
	return h.Work(ctx, t)
}

func safeCommit(ctx context.Context, c Committer, call Call, b Bid) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("commit handler panicked: %v", r)
		}
	}()
	return c.Commit(ctx, call, b)
}
