package sharedctx

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	logging "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/negotiation/frame"
)

var log = logging.Logger("parley/sharedctx")

// ProtocolID is the shared context protocol: a participant's node reads
// and writes a workflow's context on the requester's node.
const ProtocolID = "/parley/context/1.0.0"

// Message types, each at version 1. One stream carries one exchange: the
// participant sends context.read {"task","keys","since","epoch"} or
// context.write {"task","entries"}, signed by its agent; the home answers
// with context.entries {"request","workflow","entries","seq","epoch",
// "reads","writes"}
// or context.written {"request","workflow","applied","seq"}, signed by the
// context's owner, or context.error {"request","error","denied","rule"}.
// Every answer carries the hex SHA-256 of the request frame it answers.
// An error for a task with no context here cannot be signed by an owner;
// the node signs it with a key of its own, and it carries no data.
const (
	msgRead    = "context.read"
	msgWrite   = "context.write"
	msgEntries = "context.entries"
	msgWritten = "context.written"
	msgError   = "context.error"
	version    = 1
	// ruleNone marks the context.error that tells a task's winner its
	// task has no context.
	ruleNone = "context.none"
	// ruleTooLarge and ruleBadEntry mark errors for writes over the
	// limits and entries that do not verify.
	ruleTooLarge = "context.too_large"
	ruleBadEntry = "context.bad_entry"
)

type readReq struct {
	Task string `json:"task"`
	// Keys are the keys wanted; none means every key the grant reads.
	Keys []string `json:"keys,omitempty"`
	// Since is the home's seq from an earlier answer of Epoch: only
	// entries the home applied after it are sent. Under another epoch (the
	// home restarted) it counts from zero.
	Since uint64 `json:"since,omitempty"`
	Epoch string `json:"epoch,omitempty"`
}

type writeReq struct {
	Task    string   `json:"task"`
	Entries [][]byte `json:"entries"`
}

type answer struct {
	Request  string   `json:"request"`
	Workflow string   `json:"workflow,omitempty"`
	Entries  [][]byte `json:"entries,omitempty"`
	Applied  []bool   `json:"applied,omitempty"`
	Seq      uint64   `json:"seq,omitempty"`
	Epoch    string   `json:"epoch,omitempty"`
	Reads    []string `json:"reads,omitempty"`
	Writes   []string `json:"writes,omitempty"`
	Error    string   `json:"error,omitempty"`
	Denied   bool     `json:"denied,omitempty"`
	Rule     string   `json:"rule,omitempty"`
}

// handle is the stream handler: one exchange per stream.
func (s *Service) handle(st network.Stream) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = st.Reset()
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	defer func() {
		if r := recover(); r != nil {
			log.Errorw("context: serving a stream panicked; stream reset", "peer", st.Conn().RemotePeer(), "panic", r)
			_ = st.Reset()
		}
	}()
	s.serveStream(st)
}

func (s *Service) serveStream(st network.Stream) {
	p := st.Conn().RemotePeer()
	if g := s.cfg.Gate; g != nil {
		if err := g.ContextStream(p); err != nil {
			s.refuse(st, "rate", err)
			return
		}
	}
	// Nothing the peer sends chooses how long this stream is held.
	ctx, cancel := context.WithTimeout(s.ctx, s.lim.Timeout)
	defer cancel()
	defer context.AfterFunc(ctx, func() { _ = st.Reset() })()
	conn := frame.New(st, nil, frame.Options{MaxSize: s.lim.maxFrame(), Replay: s.cfg.Replay})
	m, err := conn.Recv(nil)
	if err != nil {
		s.refuse(st, frame.Reason(err), err)
		return
	}
	if m.V != version {
		s.refuse(st, "version", fmt.Errorf("%s version %d from %s: %w", m.Type, m.V, m.From, identity.ErrUnsupportedVersion))
		return
	}
	sum := conn.LastSum()
	typ, ans, owner := s.serve(ctx, p, m)
	ans.Request = hex.EncodeToString(sum[:])
	if owner == nil {
		owner = s.nodeAgent()
	}
	if owner == nil {
		_ = st.Reset()
		return
	}
	conn.SetSelf(owner)
	if err := conn.Send(typ, version, ans); err != nil {
		log.Debugw("context: answer not sent", "peer", p, "err", err)
		_ = st.Reset()
		return
	}
	_ = conn.Close()
}

// nodeAgent signs refusals no context owner can sign.
func (s *Service) nodeAgent() *identity.Agent {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.node == nil {
		if k, err := identity.GenerateKey(); err == nil {
			s.node, _ = identity.NewAgent("node", k)
		}
	}
	return s.node
}

func (s *Service) refuse(st network.Stream, reason string, err error) {
	if reason == "" {
		reason = "stream"
	}
	s.count(reason)
	log.Debugw("context: request refused; stream reset", "peer", st.Conn().RemotePeer(), "reason", reason, "err", err)
	_ = st.Reset()
}

func (s *Service) count(reason string) { s.dropped.WithLabelValues(reason).Inc() }

// serve answers one verified request m from peer p; the answer is to be
// signed by owner (nil: no context to speak for).
func (s *Service) serve(ctx context.Context, p peer.ID, m *identity.Message) (string, answer, *identity.Agent) {
	fail := func(err error, r *Replica) (string, answer, *identity.Agent) {
		ans := answer{Error: err.Error(), Denied: errors.Is(err, ErrDenied)}
		switch {
		case errors.Is(err, ErrNoContext):
			ans.Rule = ruleNone
		case errors.Is(err, ErrTooLarge):
			ans.Rule = ruleTooLarge
		case errors.Is(err, ErrBadEntry), errors.Is(err, ErrBadKey), errors.Is(err, ErrClockSkew):
			ans.Rule = ruleBadEntry
		}
		var owner *identity.Agent
		if r != nil {
			owner = r.owner
		}
		return msgError, ans, owner
	}
	switch m.Type {
	case msgRead:
		var req readReq
		if err := json.Unmarshal(m.Body, &req); err != nil {
			s.count("malformed")
			return fail(fmt.Errorf("%s body: %w", m.Type, err), nil)
		}
		if len(req.Keys) > s.lim.MaxKeys {
			return fail(fmt.Errorf("%w: %d keys asked, limit %d", ErrTooLarge, len(req.Keys), s.lim.MaxKeys), nil)
		}
		g, r, err := s.admit(ctx, p, m.From, req.Task, OpRead, req.Keys)
		if err != nil {
			return fail(err, r)
		}
		allow := func(k string) bool { return granted(g.Reads, k) }
		if len(req.Keys) > 0 {
			allow = func(k string) bool { return slices.Contains(req.Keys, k) }
		}
		since := req.Since
		if req.Epoch != r.epoch {
			since = 0
		}
		es, seq := r.Since(since, allow)
		ans := answer{Workflow: r.workflow, Seq: seq, Epoch: r.epoch, Reads: g.Reads, Writes: g.Writes, Entries: make([][]byte, len(es))}
		for i, e := range es {
			ans.Entries[i] = e.Signed
		}
		return msgEntries, ans, r.owner
	case msgWrite:
		var req writeReq
		if err := json.Unmarshal(m.Body, &req); err != nil {
			s.count("malformed")
			return fail(fmt.Errorf("%s body: %w", m.Type, err), nil)
		}
		if len(req.Entries) == 0 || len(req.Entries) > s.lim.MaxBatch {
			return fail(fmt.Errorf("%w: a write of %d entries, want 1 to %d", ErrTooLarge, len(req.Entries), s.lim.MaxBatch), nil)
		}
		// The participant first (cheap), then the entries' signatures,
		// then the keys they write.
		g, r, err := s.admit(ctx, p, m.From, req.Task, OpWrite, nil)
		if err != nil {
			return fail(err, r)
		}
		es, keys, err := s.openWrites(m.From, g, req)
		if err != nil {
			s.count("bad_entry")
			return fail(err, r)
		}
		if _, _, err := s.admit(ctx, p, m.From, req.Task, OpWrite, keys); err != nil {
			return fail(err, r)
		}
		won, err := r.Apply(es...)
		if err != nil {
			s.count("over_limits")
			return fail(err, r)
		}
		for _, w := range won {
			if w {
				s.applied.Inc()
			}
		}
		return msgWritten, answer{Workflow: r.workflow, Applied: won, Seq: r.Seq()}, r.owner
	}
	s.count("unexpected_type")
	return fail(fmt.Errorf("a context stream may not open with %q", m.Type), nil)
}

// openWrites verifies a write's entries: each fresh, signed by the agent
// that sent the write, for the grant's workflow and task, its HLC within
// the node's skew, and within the value limit.
func (s *Service) openWrites(from identity.AgentID, g *Grant, req writeReq) ([]Entry, []string, error) {
	es := make([]Entry, 0, len(req.Entries))
	keys := make([]string, 0, len(req.Entries))
	for i, raw := range req.Entries {
		e, err := OpenFresh(raw, s.lim.maxEntry())
		switch {
		case err != nil:
		case e.Writer != from:
			err = fmt.Errorf("%w: signed by %s, not by %s who sent it", ErrBadEntry, e.Writer, from)
		case e.Workflow != g.Workflow || e.Task != g.Task:
			err = fmt.Errorf("%w: for workflow %q task %q, not %q task %q", ErrBadEntry, e.Workflow, e.Task, g.Workflow, g.Task)
		case len(e.Value) > s.lim.MaxValueSize:
			err = fmt.Errorf("%w: value of %q is %d bytes, limit %d", ErrTooLarge, e.Key, len(e.Value), s.lim.MaxValueSize)
		default:
			err = s.clock.Check(e.HLC)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("entry %d: %w", i, err)
		}
		es = append(es, e)
		keys = append(keys, e.Key)
	}
	return es, keys, nil
}

// Client reads and writes a workflow's context on its home node as the
// winner of one task there, and keeps a replica of what it read. Safe
// for concurrent use.
type Client struct {
	s     *Service
	self  *identity.Agent
	home  peer.ID
	owner identity.AgentID
	task  string

	mu       sync.Mutex
	workflow string
	replica  *Replica
	seq      uint64 // the home's, of epoch
	epoch    string
	reads    []string
	writes   []string
}

// Client returns a client for task, requested by agent owner on node
// home, reading and writing as self (the task's winner).
func (s *Service) Client(self *identity.Agent, home peer.ID, owner identity.AgentID, task string) *Client {
	return &Client{s: s, self: self, home: home, owner: owner, task: task}
}

// Task returns the task the client is bound to.
func (c *Client) Task() string { return c.task }

// Granted returns the keys the grant reads and writes, once an exchange
// with the home has told them.
func (c *Client) Granted() (reads, writes []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.reads), slices.Clone(c.writes)
}

// Replica returns the client's replica of what it read and wrote; nil
// before the first exchange.
func (c *Client) Replica() *Replica {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.replica
}

// Get reads keys (none: every key the step may read) from the home and
// returns their entries, each verified. A key that is not set is absent.
func (c *Client) Get(ctx context.Context, keys ...string) (map[string]Entry, error) {
	for _, k := range keys {
		if err := ValidKey(k); err != nil {
			return nil, err
		}
	}
	es, err := c.read(ctx, readReq{Task: c.task, Keys: keys}, false)
	if err != nil {
		return nil, err
	}
	out := make(map[string]Entry, len(es))
	for _, e := range es {
		if r := c.Replica(); r != nil {
			if cur, ok := r.Get(e.Key); ok {
				e = cur // a newer write of ours may hold it
			}
		}
		out[e.Key] = e
	}
	return out, nil
}

// Sync pulls what the home applied since the last Sync into the client's
// replica and returns those entries.
func (c *Client) Sync(ctx context.Context) ([]Entry, error) {
	c.mu.Lock()
	since, epoch := c.seq, c.epoch
	c.mu.Unlock()
	return c.read(ctx, readReq{Task: c.task, Since: since, Epoch: epoch}, true)
}

func (c *Client) read(ctx context.Context, req readReq, cursor bool) ([]Entry, error) {
	typ, ans, err := c.exchange(ctx, msgRead, req)
	if err != nil {
		return nil, err
	}
	if typ != msgEntries {
		return nil, fmt.Errorf("context: %s answered a read with %s", c.home, typ)
	}
	es := make([]Entry, 0, len(ans.Entries))
	for i, raw := range ans.Entries {
		e, err := OpenStored(raw, c.s.lim.maxEntry())
		if err == nil && e.Workflow != ans.Workflow {
			err = fmt.Errorf("%w: for workflow %q in an answer for %q", ErrBadEntry, e.Workflow, ans.Workflow)
		}
		if err != nil {
			return nil, fmt.Errorf("context: %s answered entry %d: %w", c.home, i, err)
		}
		es = append(es, e)
	}
	r, err := c.bind(ans)
	if err != nil {
		return nil, err
	}
	if _, err := r.Apply(es...); err != nil {
		return nil, fmt.Errorf("context: answer from %s: %w", c.home, err)
	}
	if cursor {
		c.mu.Lock()
		if ans.Epoch != c.epoch {
			c.seq, c.epoch = 0, ans.Epoch
		}
		c.seq = max(c.seq, ans.Seq)
		c.mu.Unlock()
	}
	return es, nil
}

// bind learns the workflow and grant from an answer and makes the replica.
func (c *Client) bind(ans answer) (*Replica, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.workflow == "":
		if err := validWorkflow(ans.Workflow); err != nil {
			return nil, fmt.Errorf("context: answer from %s: %w", c.home, err)
		}
		c.workflow = ans.Workflow
		c.replica = newReplica(ans.Workflow, nil, c.s.clock, c.s.lim)
	case ans.Workflow != c.workflow:
		return nil, fmt.Errorf("context: %s answered for workflow %q, not %q", c.home, ans.Workflow, c.workflow)
	}
	if ans.Reads != nil || ans.Writes != nil {
		c.reads, c.writes = ans.Reads, ans.Writes
	}
	return c.replica, nil
}

// Bind tells the client its task's workflow, when the caller knows it,
// so that a write needs no read first. The home still checks it: an
// entry for another workflow than the grant's is refused.
func (c *Client) Bind(workflow string) error {
	_, err := c.bind(answer{Workflow: workflow})
	return err
}

// Put writes key = value (one JSON value), signed by the client's agent.
// The entry returned says whether it holds the key (a newer write may).
func (c *Client) Put(ctx context.Context, key string, value json.RawMessage) (Entry, error) {
	es, _, err := c.PutAll(ctx, map[string]json.RawMessage{key: value})
	if err != nil {
		return Entry{}, err
	}
	return es[0], nil
}

// PutAll writes every key of values in one exchange, all or nothing, and
// reports which entries hold their key at the home.
func (c *Client) PutAll(ctx context.Context, values map[string]json.RawMessage) ([]Entry, []bool, error) {
	if len(values) == 0 {
		return nil, nil, nil
	}
	c.mu.Lock()
	wf := c.workflow
	c.mu.Unlock()
	if wf == "" {
		// Learn the workflow (and the grant) first.
		if _, err := c.Sync(ctx); err != nil {
			return nil, nil, err
		}
		c.mu.Lock()
		wf = c.workflow
		c.mu.Unlock()
	}
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	req := writeReq{Task: c.task, Entries: make([][]byte, 0, len(keys))}
	es := make([]Entry, 0, len(keys))
	for _, k := range keys {
		v := values[k]
		if len(v) > c.s.lim.MaxValueSize {
			return nil, nil, fmt.Errorf("%w: value of %q is %d bytes, limit %d", ErrTooLarge, k, len(v), c.s.lim.MaxValueSize)
		}
		e, err := Sign(c.self, wf, c.task, k, v, c.s.clock.Now())
		if err != nil {
			return nil, nil, err
		}
		es = append(es, e)
		req.Entries = append(req.Entries, e.Signed)
	}
	typ, ans, err := c.exchange(ctx, msgWrite, req)
	if err != nil {
		return nil, nil, err
	}
	if typ != msgWritten || len(ans.Applied) != len(es) {
		return nil, nil, fmt.Errorf("context: %s answered a write of %d entries with %s of %d", c.home, len(es), typ, len(ans.Applied))
	}
	if r := c.Replica(); r != nil {
		_, _ = r.Apply(es...) // the home took them; so does our copy
	}
	return es, ans.Applied, nil
}

// exchange sends one request and returns the verified answer; a
// context.error answer is returned as an error (wrapping ErrDenied for a
// refusal).
func (c *Client) exchange(ctx context.Context, typ string, req any) (string, answer, error) {
	ctx, cancel := context.WithTimeout(ctx, c.s.lim.Timeout)
	defer cancel()
	defer context.AfterFunc(c.s.ctx, cancel)()
	var (
		ans answer
		got string
		err error
	)
	if h := c.s.cfg.Host; h == nil || c.home == h.ID() {
		got, ans, err = c.local(ctx, typ, req)
	} else {
		got, ans, err = c.remote(ctx, typ, req)
	}
	switch {
	case err != nil && c.s.ctx.Err() != nil:
		return "", answer{}, fmt.Errorf("context %s on %s: %w", typ, c.home, ErrClosed)
	case err != nil:
		return "", answer{}, fmt.Errorf("context %s for task %s on %s: %w", typ, c.task, c.home, err)
	case got == msgError && ans.Rule == ruleNone:
		return "", answer{}, fmt.Errorf("context %s for task %s on %s: %w", typ, c.task, c.home, ErrNoContext)
	case got == msgError && ans.Rule == ruleTooLarge:
		return "", answer{}, fmt.Errorf("context %s for task %s on %s: %w: %s", typ, c.task, c.home, ErrTooLarge, ans.Error)
	case got == msgError && ans.Rule == ruleBadEntry:
		return "", answer{}, fmt.Errorf("context %s for task %s on %s: %w: %s", typ, c.task, c.home, ErrBadEntry, ans.Error)
	case got == msgError && ans.Denied:
		return "", answer{}, fmt.Errorf("context %s for task %s on %s: %w: %s", typ, c.task, c.home, ErrDenied, ans.Error)
	case got == msgError:
		return "", answer{}, fmt.Errorf("context %s for task %s on %s: %s", typ, c.task, c.home, ans.Error)
	}
	return got, ans, nil
}

// local serves a request for a context this node holds (a self-call), as
// the stream handler would, without a stream.
func (c *Client) local(ctx context.Context, typ string, req any) (string, answer, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return "", answer{}, err
	}
	var self peer.ID
	if h := c.s.cfg.Host; h != nil {
		self = h.ID()
	}
	got, ans, _ := c.s.serve(ctx, self, &identity.Message{Type: typ, V: version, From: c.self.ID, Created: time.Now(), Body: body})
	return got, ans, nil
}

func (c *Client) remote(ctx context.Context, typ string, req any) (string, answer, error) {
	st, err := c.s.cfg.Host.NewStream(network.WithAllowLimitedConn(ctx, "parley context"), c.home, ProtocolID)
	if err != nil {
		return "", answer{}, fmt.Errorf("open stream: %w", err)
	}
	defer context.AfterFunc(ctx, func() { _ = st.Reset() })()
	conn := frame.New(st, c.self, frame.Options{MaxSize: c.s.lim.maxFrame(), Replay: c.s.cfg.Replay})
	if err := conn.Send(typ, version, req); err != nil {
		_ = st.Reset()
		return "", answer{}, err
	}
	sent := conn.LastSentSum()
	var ans answer
	m, err := conn.Recv(&ans)
	if err != nil {
		_ = st.Reset()
		return "", answer{}, fmt.Errorf("answer: %w", err)
	}
	_ = st.Close()
	switch {
	case m.V != version:
		return "", answer{}, fmt.Errorf("%s version %d, this node speaks %d: %w", m.Type, m.V, version, identity.ErrUnsupportedVersion)
	case ans.Request != hex.EncodeToString(sent[:]):
		return "", answer{}, fmt.Errorf("%s from %s answers another request", m.Type, m.From)
	case m.Type != msgError && m.From != c.owner:
		// Only the context's owner speaks for its entries; an error
		// carries nothing and may come from the node itself.
		return "", answer{}, fmt.Errorf("%s signed by %s, not the requester %s: %w", m.Type, m.From, c.owner, frame.ErrUnexpectedSender)
	}
	return m.Type, ans, nil
}
