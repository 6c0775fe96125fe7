package rpc_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	"github.com/libp2p/go-msgio"

	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/negotiation/rpc"
)

func agent(t *testing.T, name string) *identity.Agent {
	t.Helper()
	k, _ := identity.GenerateKey()
	a, err := identity.NewAgent(name, k)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// pair is two hosts on mocknet with an rpc service each.
func pair(t *testing.T, timeout time.Duration) (host.Host, host.Host, *rpc.Service, *rpc.Service) {
	t.Helper()
	mn, err := mocknet.FullMeshConnected(2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mn.Close() })
	hs := mn.Hosts()
	a := rpc.New(hs[0], rpc.Config{Timeout: timeout, Replay: identity.NewReplayWindow(0, 0)})
	b := rpc.New(hs[1], rpc.Config{Timeout: timeout, Replay: identity.NewReplayWindow(0, 0)})
	t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
	return hs[0], hs[1], a, b
}

func TestAsk(t *testing.T) {
	_, hb, client, server := pair(t, 2*time.Second)
	alice, bob := agent(t, "alice"), agent(t, "bob")
	started := make(chan struct{})
	server.Handle(bob, func(ctx context.Context, req rpc.Request) (json.RawMessage, error) {
		switch string(req.Input) {
		case `"fail"`:
			return nil, errors.New("out of stock")
		case `"block"`:
			close(started)
			<-ctx.Done()
			return nil, ctx.Err()
		}
		if req.From != alice.ID || req.Capability != "echo" {
			return nil, errors.New("wrong request " + string(req.From))
		}
		return req.Input, nil
	})
	ctx := context.Background()
	cases := []struct {
		name    string
		to      identity.AgentID
		input   string
		want    string
		wantErr error
	}{
		{"round trip", bob.ID, `{"x":1}`, `{"x":1}`, nil},
		{"handler error", bob.ID, `"fail"`, "", rpc.ErrRemote},
		{"unknown agent", alice.ID, `1`, "", rpc.ErrUnknownAgent},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := client.Ask(ctx, alice, hb.ID(), tc.to, "echo", json.RawMessage(tc.input))
			if !errors.Is(err, tc.wantErr) || string(out) != tc.want {
				t.Fatalf("Ask = %s, %v; want %s, %v", out, err, tc.want, tc.wantErr)
			}
		})
	}
	t.Run("remote error keeps its message", func(t *testing.T) {
		_, err := client.Ask(ctx, alice, hb.ID(), bob.ID, "echo", json.RawMessage(`"fail"`))
		if err == nil || !strings.Contains(err.Error(), "out of stock") {
			t.Fatalf("error %v, want the handler's message", err)
		}
	})
	t.Run("timeout cancels the handler", func(t *testing.T) {
		short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		done := make(chan error, 1)
		go func() {
			_, err := client.Ask(short, alice, hb.ID(), bob.ID, "echo", json.RawMessage(`"block"`))
			done <- err
		}()
		<-started
		if err := <-done; err == nil {
			t.Fatal("Ask past its deadline returned no error")
		}
	})
}

func TestBadRequestsResetOnlyTheirStream(t *testing.T) {
	ha, hb, client, server := pair(t, time.Second)
	alice, bob := agent(t, "alice"), agent(t, "bob")
	server.Handle(bob, func(_ context.Context, req rpc.Request) (json.RawMessage, error) { return req.Input, nil })
	for name, payload := range map[string][]byte{
		"garbage":  []byte("garbage"),
		"oversize": make([]byte, 300<<10),
	} {
		s, err := ha.NewStream(context.Background(), hb.ID(), rpc.ID)
		if err != nil {
			t.Fatal(err)
		}
		_ = msgio.NewVarintWriter(s).WriteMsg(payload)
		if b, _ := io.ReadAll(s); len(b) > 0 {
			t.Errorf("%s: server answered %q", name, b)
		}
		_ = s.Reset()
	}
	out, err := client.Ask(context.Background(), alice, hb.ID(), bob.ID, "", json.RawMessage(`"still here"`))
	if err != nil || string(out) != `"still here"` {
		t.Fatalf("good ask after bad ones: %s, %v", out, err)
	}
}

func TestReplyFromTheWrongAgentIsRefused(t *testing.T) {
	_, hb, client, server := pair(t, time.Second)
	alice, bob, mallory := agent(t, "alice"), agent(t, "bob"), agent(t, "mallory")
	// The server signs as mallory while the client asked bob: register
	// mallory's key under bob's ID.
	impostor := &identity.Agent{Name: "bob", ID: bob.ID, Key: mallory.Key}
	server.Handle(impostor, func(_ context.Context, req rpc.Request) (json.RawMessage, error) { return req.Input, nil })
	_, err := client.Ask(context.Background(), alice, hb.ID(), bob.ID, "", json.RawMessage(`1`))
	if err == nil {
		t.Fatal("a reply not signed by the asked agent was accepted")
	}
}
