package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/parleynet/parley/node"
)

// startLoopback starts a node on loopback TCP with cfg's other fields.
func startLoopback(t *testing.T, ctx context.Context, cfg node.Config) *node.Node {
	t.Helper()
	cfg.ListenAddrs = loopback
	n, err := node.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := n.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

// TestWaitReadyThenPublishArrives: once WaitReady returns, an intent
// published at once reaches the subscriber. GossipSub learns a peer's
// subscriptions before it has a stream to send to it, and what is published
// in between is dropped: readiness on topic membership alone lost about
// one first intent in twenty here.
func TestWaitReadyThenPublishArrives(t *testing.T) {
	for i := range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		listener := startLoopback(t, ctx, node.Config{})
		sub, err := listener.Subscribe(ctx, "weather.alert")
		if err != nil {
			t.Fatal(err)
		}
		speaker := startLoopback(t, ctx, node.Config{Bootstrap: []string{listener.Addrs()[0].String()}})
		if err := speaker.WaitReady(ctx, "weather.alert"); err != nil {
			t.Fatalf("run %d: WaitReady: %v", i, err)
		}
		if _, err := speaker.Publish(ctx, node.PublishRequest{Capability: "weather.alert", Payload: json.RawMessage(`{"n":1}`)}); err != nil {
			t.Fatal(err)
		}
		if _, err := sub.Next(ctx); err != nil {
			t.Fatalf("run %d: the first intent after WaitReady did not arrive: %v (speaker's stats %+v)", i, err, speaker.Stats())
		}
		sub.Close()
		_ = speaker.Close()
		_ = listener.Close()
		cancel()
	}
}

func TestWaitReadyErrors(t *testing.T) {
	ctx := context.Background()
	t.Run("not started", func(t *testing.T) {
		n, err := node.New(node.Config{})
		if err != nil {
			t.Fatal(err)
		}
		if err := n.WaitReady(ctx, "x"); !errors.Is(err, node.ErrNotStarted) {
			t.Fatalf("WaitReady before Start = %v, want ErrNotStarted", err)
		}
	})
	t.Run("nobody there", func(t *testing.T) {
		n := startLoopback(t, ctx, node.Config{})
		short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		if err := n.WaitReady(short, "x"); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("WaitReady alone = %v, want the deadline", err)
		}
	})
	t.Run("closed while waiting", func(t *testing.T) {
		n := startLoopback(t, ctx, node.Config{})
		done := make(chan error, 1)
		go func() { done <- n.WaitReady(ctx, "x") }()
		time.Sleep(10 * time.Millisecond) // let it wait; the outcome is the same if it has not
		_ = n.Close()
		if err := <-done; !errors.Is(err, node.ErrClosed) {
			t.Fatalf("WaitReady across Close = %v, want ErrClosed", err)
		}
	})
	t.Run("bad capability", func(t *testing.T) {
		n := startLoopback(t, ctx, node.Config{})
		if err := n.WaitReady(ctx, "Not A Capability"); err == nil {
			t.Fatal("WaitReady on an invalid capability succeeded")
		}
	})
}

func TestNewDefaults(t *testing.T) {
	n, err := node.New(node.Config{})
	if err != nil {
		t.Fatalf("New(Config{}): %v", err)
	}
	if a := n.Agents(); len(a) != 1 || a[0].Name != node.DefaultAgentName {
		t.Fatalf("agents of a zero config = %v, want one named %q", a, node.DefaultAgentName)
	}
}
