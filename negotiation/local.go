package negotiation

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	ic "github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
)

// A node's own agents bid on its own calls over an in-process stream: a
// libp2p host cannot dial itself, and the conversation stays the one both
// state machines already speak. Every frame on it is still signed by its
// agent and verified by the other side (replay window included), and both
// sides audit each step as they do over the network, so a self-call's
// trail is a remote call's.

// maxLocalBuffer bounds what one end of a local stream holds unread: the
// frames are this node's own, but a reader that stops reading must not
// grow it without end.
const maxLocalBuffer = 4 << 20

var errLocalReset = errors.New("local stream reset")

// openStream opens a negotiation stream to p; to this node itself it is a
// local stream whose other end is served like any accepted stream.
func (s *Service) openStream(ctx context.Context, p peer.ID) (network.Stream, error) {
	if p != s.h.ID() {
		return s.h.NewStream(limitedOK(ctx), p, ProtocolID)
	}
	a, b := s.localPair()
	if !s.goroutine(func() { s.serveStream(b) }) {
		_ = a.Reset()
		return nil, ErrClosed
	}
	return a, nil
}

// localPair makes both ends of a local stream and keeps them until they
// are done, so Close can reset them as it resets network streams.
func (s *Service) localPair() (*localStream, *localStream) {
	id := s.localIDs.Add(1)
	c := &localConn{self: s.h.ID(), pub: s.h.Peerstore().PubKey(s.h.ID()), id: fmt.Sprintf("local-%d", id)}
	a := &localStream{id: fmt.Sprintf("local-%d-a", id), conn: c, in: newLocalBuf(), s: s}
	b := &localStream{id: fmt.Sprintf("local-%d-b", id), conn: c, in: newLocalBuf(), s: s}
	a.peer, b.peer = b, a
	s.mu.Lock()
	if s.locals == nil {
		s.locals = map[*localStream]struct{}{}
	}
	s.locals[a], s.locals[b] = struct{}{}, struct{}{}
	s.mu.Unlock()
	return a, b
}

func (s *Service) forgetLocal(st *localStream) {
	s.mu.Lock()
	delete(s.locals, st)
	s.mu.Unlock()
}

// resetLocals resets every open local stream.
func (s *Service) resetLocals() {
	s.mu.Lock()
	open := make([]*localStream, 0, len(s.locals))
	for st := range s.locals {
		open = append(open, st)
	}
	s.mu.Unlock()
	for _, st := range open {
		_ = st.Reset()
	}
}

// localBuf is one direction of a local stream: bytes written by one end
// and not yet read by the other.
type localBuf struct {
	mu     sync.Mutex
	data   []byte
	eof    bool // the writer closed its side
	reset  bool
	notify chan struct{} // signalled on every change
	rdl    time.Time     // read deadline
}

func newLocalBuf() *localBuf { return &localBuf{notify: make(chan struct{}, 1)} }

func (b *localBuf) signal() {
	select {
	case b.notify <- struct{}{}:
	default:
	}
}

func (b *localBuf) read(p []byte) (int, error) {
	for {
		b.mu.Lock()
		switch {
		case b.reset:
			b.mu.Unlock()
			return 0, errLocalReset
		case len(b.data) > 0:
			n := copy(p, b.data)
			b.data = b.data[n:]
			if len(b.data) == 0 {
				b.data = nil
			}
			b.mu.Unlock()
			return n, nil
		case b.eof:
			b.mu.Unlock()
			return 0, io.EOF
		}
		dl := b.rdl
		b.mu.Unlock()
		if dl.IsZero() {
			<-b.notify
			continue
		}
		d := time.Until(dl)
		if d <= 0 {
			return 0, os.ErrDeadlineExceeded
		}
		t := time.NewTimer(d)
		select {
		case <-b.notify:
			t.Stop()
		case <-t.C:
			return 0, os.ErrDeadlineExceeded
		}
	}
}

func (b *localBuf) write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.reset:
		return 0, errLocalReset
	case b.eof:
		return 0, errors.New("local stream closed for writing")
	case len(b.data)+len(p) > maxLocalBuffer:
		return 0, fmt.Errorf("local stream: %d bytes unread, limit %d", len(b.data), maxLocalBuffer)
	}
	b.data = append(b.data, p...)
	b.signal()
	return len(p), nil
}

func (b *localBuf) close() {
	b.mu.Lock()
	b.eof = true
	b.mu.Unlock()
	b.signal()
}

func (b *localBuf) doReset() {
	b.mu.Lock()
	b.reset, b.data = true, nil
	b.mu.Unlock()
	b.signal()
}

// localStream is one end of an in-process negotiation stream.
type localStream struct {
	id     string
	conn   *localConn
	in     *localBuf // what the other end wrote
	peer   *localStream
	s      *Service
	closed atomic.Int32 // bit 1: write side closed, bit 2: read side closed
}

var _ network.Stream = (*localStream)(nil)

func (l *localStream) Read(p []byte) (int, error) { return l.in.read(p) }

func (l *localStream) Write(p []byte) (int, error) { return l.peer.in.write(p) }

// Close closes both directions: the other end reads EOF after what was
// written, and this end reads no more.
func (l *localStream) Close() error {
	_ = l.CloseWrite()
	return l.CloseRead()
}

func (l *localStream) CloseWrite() error {
	l.peer.in.close()
	l.done(1)
	return nil
}

func (l *localStream) CloseRead() error {
	l.in.doReset()
	l.done(2)
	return nil
}

// Reset aborts both directions for both ends.
func (l *localStream) Reset() error {
	l.in.doReset()
	l.peer.in.doReset()
	l.done(3)
	l.peer.done(3)
	return nil
}

func (l *localStream) ResetWithError(network.StreamErrorCode) error { return l.Reset() }

func (l *localStream) done(bits int32) {
	for {
		old := l.closed.Load()
		if l.closed.CompareAndSwap(old, old|bits) {
			if old|bits == 3 && old != 3 {
				l.s.forgetLocal(l)
			}
			return
		}
	}
}

func (l *localStream) SetDeadline(t time.Time) error { return l.SetReadDeadline(t) }

func (l *localStream) SetReadDeadline(t time.Time) error {
	l.in.mu.Lock()
	l.in.rdl = t
	l.in.mu.Unlock()
	l.in.signal()
	return nil
}

// SetWriteDeadline is accepted and has nothing to bound: a write never
// blocks (it fails past maxLocalBuffer).
func (l *localStream) SetWriteDeadline(time.Time) error { return nil }

func (l *localStream) ID() string                               { return l.id }
func (l *localStream) Protocol() protocol.ID                    { return ProtocolID }
func (l *localStream) SetProtocol(protocol.ID) error            { return nil }
func (l *localStream) Stat() network.Stats                      { return network.Stats{Direction: network.DirOutbound} }
func (l *localStream) Conn() network.Conn                       { return l.conn }
func (l *localStream) Scope() network.StreamScope               { return &network.NullScope{} }
func (l *localConn) Close() error                               { return nil }
func (l *localConn) CloseWithError(network.ConnErrorCode) error { return nil }
func (l *localConn) LocalPeer() peer.ID                         { return l.self }
func (l *localConn) RemotePeer() peer.ID                        { return l.self }
func (l *localConn) RemotePublicKey() ic.PubKey                 { return l.pub }
func (l *localConn) ConnState() network.ConnectionState {
	return network.ConnectionState{Transport: "in-process"}
}
func (l *localConn) LocalMultiaddr() ma.Multiaddr  { return nil }
func (l *localConn) RemoteMultiaddr() ma.Multiaddr { return nil }
func (l *localConn) Stat() network.ConnStats       { return network.ConnStats{} }
func (l *localConn) Scope() network.ConnScope      { return &network.NullScope{} }
func (l *localConn) ID() string                    { return l.id }
func (l *localConn) IsClosed() bool                { return false }
func (l *localConn) As(any) bool                   { return false }

// NewStream is refused: a local conversation has its two ends only.
func (l *localConn) NewStream(context.Context) (network.Stream, error) {
	return nil, errors.New("local conn: no new streams")
}

func (l *localConn) GetStreams() []network.Stream { return nil }

// localConn is the "connection" of a local stream: this node to itself.
type localConn struct {
	self peer.ID
	pub  ic.PubKey
	id   string
}

var _ network.Conn = (*localConn)(nil)
