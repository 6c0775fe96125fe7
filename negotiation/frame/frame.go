// Package frame owns parley's stream framing: varint-length-prefixed
// frames (go-msgio) on a libp2p stream, each a signed identity envelope
// holding one typed JSON message. The negotiation and RPC protocols speak
// through it; it does not know their message types.
package frame

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-msgio"

	"github.com/parleynet/parley/identity"
)

// DefaultMaxSize caps one frame in bytes.
const DefaultMaxSize = 256 << 10

// Sentinel errors callers branch on.
var (
	// ErrUnexpectedSender: a verified frame was signed by an agent other
	// than the one this conversation is with.
	ErrUnexpectedSender = errors.New("frame from an unexpected agent")
	// ErrBadBody: a verified frame's body does not decode.
	ErrBadBody = errors.New("frame body does not decode")
	// ErrNoMemory: the resource manager refused the memory for a frame.
	ErrNoMemory = errors.New("no memory for the frame")
)

// Options configure a Conn.
type Options struct {
	// MaxSize caps a frame; zero means DefaultMaxSize.
	MaxSize int
	// TTL bounds the life of each frame sent; zero means one minute.
	TTL time.Duration
	// Replay, when set, refuses frames seen before.
	Replay *identity.ReplayWindow
}

// Conn sends and receives signed frames on one stream. Send is safe for
// concurrent use; Recv must have one caller at a time.
type Conn struct {
	sendMu sync.Mutex
	// readTimeout bounds each Recv. It is enforced with a timer that resets
	// the stream, not a stream deadline: mocknet streams ignore deadlines,
	// and a conversation that timed out is over anyway.
	readTimeout time.Duration
	timedOut    atomic.Bool

	s    network.Stream
	r    msgio.ReadCloser
	w    msgio.WriteCloser
	self *identity.Agent
	opts Options
	// peer is the agent on the other end once known; frames from anyone
	// else are refused.
	peer identity.AgentID
	// lastSum and sentSum are the SHA-256 of the last frame received and
	// sent, for protocols that bind a reply to its request.
	lastSum, sentSum [sha256.Size]byte
}

// New wraps s; frames sent are signed by self.
func New(s network.Stream, self *identity.Agent, opts Options) *Conn {
	if opts.MaxSize <= 0 {
		opts.MaxSize = DefaultMaxSize
	}
	if opts.TTL <= 0 {
		opts.TTL = time.Minute
	}
	return &Conn{
		s:    s,
		r:    msgio.NewVarintReaderSize(s, opts.MaxSize),
		w:    msgio.NewVarintWriter(s),
		self: self,
		opts: opts,
	}
}

// Stream returns the underlying stream.
func (c *Conn) Stream() network.Stream { return c.s }

// Self returns the agent that signs this side's frames.
func (c *Conn) Self() *identity.Agent { return c.self }

// Peer returns the agent on the other end, or "" before it is known.
func (c *Conn) Peer() identity.AgentID { return c.peer }

// SetSelf sets the agent that signs this side's frames, for a stream
// accepted before the local agent it is for was known.
func (c *Conn) SetSelf(a *identity.Agent) { c.self = a }

// ExpectPeer pins the agent on the other end: frames signed by anyone else
// are refused with ErrUnexpectedSender.
func (c *Conn) ExpectPeer(id identity.AgentID) { c.peer = id }

// Send signs body as a message of type typ and writes it as one frame.
func (c *Conn) Send(typ string, version int, body any) error {
	raw, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("frame: marshal %s: %w", typ, err)
	}
	now := time.Now()
	data, err := identity.Seal(c.self, identity.Message{Type: typ, V: version, Created: now, Expires: now.Add(c.opts.TTL), Body: raw})
	if err != nil {
		return fmt.Errorf("frame: seal %s: %w", typ, err)
	}
	if len(data) > c.opts.MaxSize {
		return fmt.Errorf("frame: %s is %d bytes, limit %d: %w", typ, len(data), c.opts.MaxSize, identity.ErrTooLarge)
	}
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	if err := c.w.WriteMsg(data); err != nil {
		return fmt.Errorf("frame: write %s: %w", typ, err)
	}
	c.sentSum = sha256.Sum256(data)
	return nil
}

// LastSum is the SHA-256 of the last frame Recv read.
func (c *Conn) LastSum() [sha256.Size]byte { return c.lastSum }

// LastSentSum is the SHA-256 of the last frame Send wrote.
func (c *Conn) LastSentSum() [sha256.Size]byte {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	return c.sentSum
}

// Recv reads and verifies the next frame and decodes its body into body
// (which may be nil). If no frame arrives within the read timeout, the
// stream is reset and the error wraps os.ErrDeadlineExceeded. Oversize,
// unsigned, wrongly signed, expired, replayed frames and frames from an
// agent other than the pinned peer are errors wrapping identity's or this
// package's sentinels; the caller should reset the stream.
func (c *Conn) Recv(body any) (*identity.Message, error) {
	if d := c.readTimeout; d > 0 {
		t := time.AfterFunc(d, func() {
			c.timedOut.Store(true)
			_ = c.s.Reset()
		})
		defer t.Stop()
	}
	data, err := c.read()
	if c.timedOut.Load() {
		return nil, fmt.Errorf("frame: no frame within %s: %w", c.readTimeout, os.ErrDeadlineExceeded)
	}
	if err != nil {
		return nil, err
	}
	defer c.r.ReleaseMsg(data)
	c.lastSum = sha256.Sum256(data)
	return Decode(data, c.peer, c.opts, body)
}

// read reads one frame's bytes, reserving their memory in the stream's
// resource scope first, so the resource manager's limits per protocol and
// peer bound what peers make this node buffer.
func (c *Conn) read() ([]byte, error) {
	n, err := c.r.NextMsgLen()
	if err != nil {
		return nil, fmt.Errorf("frame: read: %w", err)
	}
	if n > c.opts.MaxSize {
		return nil, fmt.Errorf("frame: %d bytes announced, limit %d: %w", n, c.opts.MaxSize, identity.ErrTooLarge)
	}
	scope := c.s.Scope()
	if err := scope.ReserveMemory(n, network.ReservationPriorityAlways); err != nil {
		return nil, fmt.Errorf("frame: %d bytes: %w: %v", n, ErrNoMemory, err)
	}
	defer scope.ReleaseMemory(n)
	data, err := c.r.ReadMsg()
	if err != nil {
		if errors.Is(err, msgio.ErrMsgTooLarge) {
			return nil, fmt.Errorf("frame: %w: %v", identity.ErrTooLarge, err)
		}
		return nil, fmt.Errorf("frame: read: %w", err)
	}
	return data, nil
}

// Decode verifies one frame's bytes as Recv does: the envelope, its
// signer, times and replay, that it comes from peer (if not ""), and
// decodes its body into body (if not nil).
func Decode(data []byte, peer identity.AgentID, opts Options, body any) (*identity.Message, error) {
	if opts.MaxSize <= 0 {
		opts.MaxSize = DefaultMaxSize
	}
	m, err := identity.Open(data, identity.OpenOptions{MaxSize: opts.MaxSize, Replay: opts.Replay})
	if err != nil {
		return nil, fmt.Errorf("frame: %w", err)
	}
	if peer != "" && m.From != peer {
		return nil, fmt.Errorf("frame: %s from %s, expected %s: %w", m.Type, m.From, peer, ErrUnexpectedSender)
	}
	if body != nil {
		if err := json.Unmarshal(m.Body, body); err != nil {
			return nil, fmt.Errorf("frame: %s body: %w: %v", m.Type, ErrBadBody, err)
		}
	}
	return m, nil
}

// SetReadTimeout bounds each following Recv to d; zero means no bound. A
// Recv that times out resets the stream.
func (c *Conn) SetReadTimeout(d time.Duration) { c.readTimeout = max(d, 0) }

// Close closes the stream for writing and reading, politely.
func (c *Conn) Close() error { return c.s.Close() }

// Reset aborts the stream; the other side's reads fail at once.
func (c *Conn) Reset() error { return c.s.Reset() }

// Reason names why a received frame was refused, for counters and logs.
func Reason(err error) string {
	switch {
	case errors.Is(err, identity.ErrTooLarge):
		return "oversize"
	case errors.Is(err, identity.ErrNotJSON), errors.Is(err, ErrBadBody):
		return "malformed"
	case errors.Is(err, identity.ErrMalformed):
		return "unsigned"
	case errors.Is(err, identity.ErrBadSignature):
		return "bad_signature"
	case errors.Is(err, identity.ErrWrongSigner), errors.Is(err, ErrUnexpectedSender):
		return "wrong_signer"
	case errors.Is(err, identity.ErrExpired), errors.Is(err, identity.ErrTooOld), errors.Is(err, identity.ErrNotYetValid):
		return "expired"
	case errors.Is(err, identity.ErrReplayed):
		return "replayed"
	case errors.Is(err, identity.ErrUnsupportedVersion):
		return "version"
	case errors.Is(err, ErrNoMemory):
		return "memory"
	}
	return ""
}
