package rpc_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	"github.com/libp2p/go-msgio"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/negotiation/frame"
	"github.com/parleynet/parley/negotiation/rpc"
)

func newAgent(t *testing.T, name string) *identity.Agent {
	t.Helper()
	k, err := identity.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	a, err := identity.NewAgent(name, k)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// newTestMesh returns n connected mocknet hosts, each with an rpc service
// made with cfg; both are closed when the test ends.
func newTestMesh(t *testing.T, n int, cfg rpc.Config) ([]host.Host, []*rpc.Service) {
	t.Helper()
	mn := mocknet.New()
	t.Cleanup(func() { _ = mn.Close() })
	hs := make([]host.Host, n)
	ss := make([]*rpc.Service, n)
	for i := range n {
		k, err := identity.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		h, err := mn.AddPeer(k, ma.StringCast(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", 4000+i)))
		if err != nil {
			t.Fatal(err)
		}
		hs[i] = h
	}
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		for j := i + 1; j < n; j++ {
			if _, err := mn.ConnectPeers(hs[i].ID(), hs[j].ID()); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, h := range hs {
		ss[i] = rpc.New(h, cfg)
		t.Cleanup(func() { _ = ss[i].Close() })
	}
	return hs, ss
}

func TestAsk(t *testing.T) {
	hs, ss := newTestMesh(t, 2, rpc.Config{Timeout: 5 * time.Second})
	client, server := ss[0], ss[1]
	alice, bob := newAgent(t, "alice"), newAgent(t, "bob")
	server.Handle(bob, func(_ context.Context, req rpc.Request) (json.RawMessage, error) {
		switch string(req.Input) {
		case `"fail"`:
			return nil, errors.New("out of stock")
		case `"panic"`:
			panic("handler bug")
		case `"bad json"`:
			return json.RawMessage(`{`), nil
		}
		if req.From != alice.ID || req.To != bob.ID || req.Capability != "echo" {
			return nil, fmt.Errorf("wrong request %+v", req)
		}
		return req.Input, nil
	})
	cases := []struct {
		name    string
		to      identity.AgentID
		input   string
		want    string
		wantErr error
		wantMsg string
	}{
		{"round trip", bob.ID, `{"x":1}`, `{"x":1}`, nil, ""},
		{"no input", bob.ID, ``, ``, nil, ""},
		{"handler error", bob.ID, `"fail"`, "", rpc.ErrRemote, "out of stock"},
		{"handler panic", bob.ID, `"panic"`, "", rpc.ErrRemote, "handler failed"},
		{"invalid output", bob.ID, `"bad json"`, "", rpc.ErrRemote, "invalid JSON"},
		{"unknown agent", alice.ID, `1`, "", rpc.ErrUnknownAgent, ""},
		{"after a panic, still serving", bob.ID, `[1,2]`, `[1,2]`, nil, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var in json.RawMessage
			if tc.input != "" {
				in = json.RawMessage(tc.input)
			}
			out, err := client.Ask(context.Background(), alice, hs[1].ID(), tc.to, "echo", in)
			if !errors.Is(err, tc.wantErr) || string(out) != tc.want {
				t.Fatalf("Ask = %s, %v; want %s, %v", out, err, tc.want, tc.wantErr)
			}
			if tc.wantMsg != "" && !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("error %q does not carry %q", err, tc.wantMsg)
			}
		})
	}
	if d := server.Dropped(); len(d) != 0 {
		t.Errorf("good asks counted as dropped: %v", d)
	}
}

func TestAskRefusesBadArguments(t *testing.T) {
	hs, ss := newTestMesh(t, 2, rpc.Config{})
	alice, bob := newAgent(t, "alice"), newAgent(t, "bob")
	for name, call := range map[string]func() error{
		"no signer": func() error { _, err := ss[0].Ask(context.Background(), nil, hs[1].ID(), bob.ID, "", nil); return err },
		"no agent":  func() error { _, err := ss[0].Ask(context.Background(), alice, hs[1].ID(), "", "", nil); return err },
		"bad capability": func() error {
			_, err := ss[0].Ask(context.Background(), alice, hs[1].ID(), bob.ID, "Bad Cap", nil)
			return err
		},
		"bad input": func() error {
			_, err := ss[0].Ask(context.Background(), alice, hs[1].ID(), bob.ID, "", json.RawMessage(`{`))
			return err
		},
	} {
		if call() == nil {
			t.Errorf("%s: Ask returned no error", name)
		}
	}
}

// blocker is a handler that blocks until its context ends and reports
// that it started and how it ended.
type blocker struct {
	started chan struct{}
	ended   chan error
}

func newBlocker() *blocker {
	return &blocker{started: make(chan struct{}, 1), ended: make(chan error, 1)}
}

func (b *blocker) handle(ctx context.Context, _ rpc.Request) (json.RawMessage, error) {
	b.started <- struct{}{}
	<-ctx.Done()
	b.ended <- ctx.Err()
	return nil, ctx.Err()
}

func (b *blocker) waitEnded(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case err := <-b.ended:
		if err == nil {
			t.Fatal("handler context ended without an error")
		}
	case <-time.After(within):
		t.Fatal("handler context was not cancelled")
	}
}

func TestHandlerPastTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	hs, ss := newTestMesh(t, 2, rpc.Config{Timeout: timeout})
	alice, bob := newAgent(t, "alice"), newAgent(t, "bob")
	b := newBlocker()
	ss[1].Handle(bob, b.handle)
	start := time.Now()
	_, err := ss[0].Ask(context.Background(), alice, hs[1].ID(), bob.ID, "", nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Ask past the timeout = %v, want a deadline error", err)
	}
	if d := time.Since(start); d > timeout+time.Second {
		t.Fatalf("Ask took %s with a %s timeout", d, timeout)
	}
	b.waitEnded(t, timeout+time.Second)
}

func TestAskerGoingAwayCancelsTheHandler(t *testing.T) {
	hs, ss := newTestMesh(t, 2, rpc.Config{Timeout: time.Minute})
	alice, bob := newAgent(t, "alice"), newAgent(t, "bob")
	b := newBlocker()
	ss[1].Handle(bob, b.handle)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := ss[0].Ask(ctx, alice, hs[1].ID(), bob.ID, "", nil)
		done <- err
	}()
	<-b.started
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Ask = %v, want context.Canceled", err)
	}
	b.waitEnded(t, 2*time.Second)
}

func TestCloseCancelsInFlightHandlers(t *testing.T) {
	hs, ss := newTestMesh(t, 2, rpc.Config{Timeout: time.Minute})
	alice, bob := newAgent(t, "alice"), newAgent(t, "bob")
	b := newBlocker()
	ss[1].Handle(bob, b.handle)
	done := make(chan error, 1)
	go func() {
		_, err := ss[0].Ask(context.Background(), alice, hs[1].ID(), bob.ID, "", nil)
		done <- err
	}()
	<-b.started
	closed := make(chan struct{})
	go func() { _ = ss[1].Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not return")
	}
	// Close waited for the handler, so it has ended.
	select {
	case err := <-b.ended:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("handler context ended with %v, want context.Canceled", err)
		}
	default:
		t.Fatal("Close returned before the handler")
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Ask whose handler was cancelled returned no error")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Ask did not return after the server closed")
	}
	if _, err := ss[0].Ask(context.Background(), alice, hs[1].ID(), bob.ID, "", nil); err == nil {
		t.Fatal("Ask of a closed service succeeded")
	}
	_ = ss[0].Close()
	if _, err := ss[0].Ask(context.Background(), alice, hs[1].ID(), bob.ID, "", nil); !errors.Is(err, rpc.ErrClosed) {
		t.Fatalf("Ask on a closed service = %v, want ErrClosed", err)
	}
}

// forge returns a frame of type typ that claims to be from claimed and is
// signed with key, which need not be claimed's.
func forge(t *testing.T, typ string, claimed identity.AgentID, key crypto.PrivKey, body any) []byte {
	t.Helper()
	raw, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	m := identity.Message{Type: typ, V: 2, ID: identity.NewID(), From: claimed, Created: now, Expires: now.Add(time.Minute), Body: raw}
	env, err := record.Seal(&m, key)
	if err != nil {
		t.Fatal(err)
	}
	data, err := env.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestBadRequestsResetOnlyTheirStream(t *testing.T) {
	const maxFrame = 4 << 10
	var forgedMu sync.Mutex
	forged := map[string]int{} // what the Forged hook heard, by reason
	hs, ss := newTestMesh(t, 2, rpc.Config{MaxFrameSize: maxFrame, Timeout: 300 * time.Millisecond,
		Forged: func(_ peer.ID, reason string) { forgedMu.Lock(); forged[reason]++; forgedMu.Unlock() }})
	alice, bob, mallory := newAgent(t, "alice"), newAgent(t, "bob"), newAgent(t, "mallory")
	ss[1].Handle(bob, func(_ context.Context, req rpc.Request) (json.RawMessage, error) { return req.Input, nil })
	wrongType, err := identity.Seal(alice, identity.Message{Type: "rpc.response", V: 1, Body: json.RawMessage(`{"output":1}`)})
	if err != nil {
		t.Fatal(err)
	}
	replayed := forge(t, "rpc.request", alice.ID, alice.Key, map[string]any{"to": bob.ID, "input": "x"})

	cases := []struct {
		name   string
		frames [][]byte // nil: send nothing
		reason string
	}{
		{"garbage", [][]byte{[]byte("garbage")}, "unsigned"},
		{"oversize", [][]byte{make([]byte, 2*maxFrame)}, "oversize"},
		{"signed by another key than its From", [][]byte{forge(t, "rpc.request", alice.ID, mallory.Key, map[string]any{"to": bob.ID})}, "wrong_signer"},
		{"not a request", [][]byte{wrongType}, "unexpected_type"},
		{"silence", nil, "stream"},
		{"replayed", [][]byte{replayed}, "replayed"}, // after the good one below
	}
	// The first sending of the replayed frame is a good ask.
	if got := rawAsk(t, hs[0], hs[1], replayed); got.err != nil || !strings.Contains(string(got.data), `"x"`) {
		t.Fatalf("first sending of a raw request: %q, %v", got.data, got.err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := ss[1].Dropped()[tc.reason]
			var got rawResult
			if tc.frames == nil {
				got = rawAsk(t, hs[0], hs[1])
			} else {
				got = rawAsk(t, hs[0], hs[1], tc.frames...)
			}
			if got.err == nil || len(got.data) > 0 {
				t.Fatalf("server answered %q, %v; want the stream reset", got.data, got.err)
			}
			// A silent stream is reset by the read timer before it is
			// counted, so the count may trail the reset a little.
			for deadline := time.Now().Add(time.Second); ss[1].Dropped()[tc.reason] != before+1; time.Sleep(5 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("dropped[%s] = %d, want %d (all: %v)", tc.reason, ss[1].Dropped()[tc.reason], before+1, ss[1].Dropped())
				}
			}
			// Only what no honest peer sends is reported as forged.
			forgedMu.Lock()
			heard := forged[tc.reason]
			forgedMu.Unlock()
			if want := map[string]bool{"unsigned": true, "bad_signature": true, "wrong_signer": true, "malformed": true}[tc.reason]; want != (heard > 0) {
				t.Errorf("Forged heard %d %s requests; want forged reported: %v", heard, tc.reason, want)
			}
			out, err := ss[0].Ask(context.Background(), alice, hs[1].ID(), bob.ID, "", json.RawMessage(`"still here"`))
			if err != nil || string(out) != `"still here"` {
				t.Fatalf("good ask after a bad one: %s, %v", out, err)
			}
		})
	}
}

type rawResult struct {
	data []byte
	err  error
}

// rawAsk opens an rpc stream from a to b, writes frames as they are, and
// reads what comes back until the stream ends.
func rawAsk(t *testing.T, a, b host.Host, frames ...[]byte) rawResult {
	t.Helper()
	s, err := a.NewStream(context.Background(), b.ID(), rpc.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Reset() }()
	w := msgio.NewVarintWriter(s)
	for _, f := range frames {
		if err := w.WriteMsg(f); err != nil {
			return rawResult{err: err}
		}
	}
	data, err := io.ReadAll(s)
	return rawResult{data, err}
}

func TestReplyFromTheWrongAgentIsRefused(t *testing.T) {
	alice, bob, mallory := newAgent(t, "alice"), newAgent(t, "bob"), newAgent(t, "mallory")
	// Each reply is forged for the request it gets (req is its hash), or
	// for another one.
	cases := []struct {
		name    string
		reply   func(t *testing.T, req string) []byte
		wantErr error
	}{
		{"another agent's answer", func(t *testing.T, req string) []byte {
			return forge(t, "rpc.response", mallory.ID, mallory.Key, map[string]any{"request": req, "output": 1})
		}, frame.ErrUnexpectedSender},
		{"another agent's error", func(t *testing.T, req string) []byte {
			return forge(t, "rpc.error", mallory.ID, mallory.Key, map[string]any{"request": req, "error": "no"})
		}, frame.ErrUnexpectedSender},
		{"another agent's answer dressed as unknown agent", func(t *testing.T, req string) []byte {
			return forge(t, "rpc.response", mallory.ID, mallory.Key, map[string]any{"request": req, "error": "unknown agent", "output": 1})
		}, frame.ErrUnexpectedSender},
		{"the asked agent's ID, another key", func(t *testing.T, req string) []byte {
			return forge(t, "rpc.response", bob.ID, mallory.Key, map[string]any{"request": req, "output": 1})
		}, identity.ErrWrongSigner},
		// bob really signed this answer, but for someone else's ask: a
		// node that once asked bob must not replay his answer to others.
		{"the asked agent's answer to another request", func(t *testing.T, _ string) []byte {
			return forge(t, "rpc.response", bob.ID, bob.Key, map[string]any{"request": strings.Repeat("ab", 32), "output": 1})
		}, rpc.ErrNotBound},
		{"the asked agent's answer without a request", func(t *testing.T, _ string) []byte {
			return forge(t, "rpc.response", bob.ID, bob.Key, map[string]any{"output": 1})
		}, rpc.ErrNotBound},
		{"an answer in a version this node does not speak", func(t *testing.T, req string) []byte {
			raw, _ := json.Marshal(map[string]any{"request": req, "output": 1})
			data, err := identity.Seal(bob, identity.Message{Type: "rpc.response", V: 1, Body: raw})
			if err != nil {
				t.Fatal(err)
			}
			return data
		}, identity.ErrUnsupportedVersion},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hs, ss := newTestMesh(t, 2, rpc.Config{Timeout: 2 * time.Second})
			// A raw server in place of the rpc service.
			hs[1].SetStreamHandler(rpc.ID, func(s network.Stream) {
				req, err := msgio.NewVarintReaderSize(s, frame.DefaultMaxSize).ReadMsg()
				if err != nil {
					_ = s.Reset()
					return
				}
				sum := sha256.Sum256(req)
				_ = msgio.NewVarintWriter(s).WriteMsg(tc.reply(t, hex.EncodeToString(sum[:])))
				_ = s.Close()
			})
			out, err := ss[0].Ask(context.Background(), alice, hs[1].ID(), bob.ID, "", json.RawMessage(`1`))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Ask = %s, %v; want %v", out, err, tc.wantErr)
			}
		})
	}
}
