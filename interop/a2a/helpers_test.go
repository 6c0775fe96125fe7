package a2a_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/parleynet/parley/admission"
	"github.com/parleynet/parley/interop/a2a"
	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/node"
	"github.com/parleynet/parley/node/nodetest"
)

const testToken = "test-token-0123456789abcdef"

// quoter bids 4 and answers with a price after two progress notes.
var quoter = negotiation.HandlerFuncs{
	BidFunc: func(context.Context, negotiation.Call) (negotiation.Bid, error) {
		return negotiation.Bid{Price: 4, ETA: 100 * time.Millisecond, Rationale: "quotes fast"}, nil
	},
	WorkFunc: func(ctx context.Context, t negotiation.Task) (json.RawMessage, error) {
		var in struct {
			Kg float64 `json:"kg"`
		}
		if err := json.Unmarshal(t.Input, &in); err != nil {
			return nil, err
		}
		t.Progress(0.3, "weighing")
		time.Sleep(20 * time.Millisecond)
		t.Progress(0.8, "pricing")
		out, _ := json.Marshal(map[string]any{"price": 2.5 * in.Kg, "currency": "EUR"})
		return out, nil
	},
}

// sleeper bids and then works until its task is canceled.
func sleeper(started chan<- string) negotiation.Handler {
	return negotiation.HandlerFuncs{
		BidFunc: func(context.Context, negotiation.Call) (negotiation.Bid, error) {
			return negotiation.Bid{Price: 1, ETA: time.Minute}, nil
		},
		WorkFunc: func(ctx context.Context, t negotiation.Task) (json.RawMessage, error) {
			t.Progress(0.1, "started")
			select {
			case started <- t.Task:
			default:
			}
			<-ctx.Done()
			return nil, ctx.Err()
		},
	}
}

// gatewayMesh is two nodes on loopback TCP: node 1 hosts the contractors
// (quote, slow) and node 0 serves the gateway, exporting both capabilities
// (its own agents offer none).
type gatewayMesh struct {
	nodes   []*node.Node
	gw      *a2a.Gateway
	url     string
	started chan string // sleeper's tasks, as they start
}

func newGatewayMesh(t *testing.T, mutate func(*a2a.Config)) *gatewayMesh {
	t.Helper()
	n0 := loopbackNode(t, nil)
	n1 := loopbackNode(t, n0)
	gm := &gatewayMesh{nodes: []*node.Node{n0, n1}, started: make(chan string, 4)}
	if _, err := n1.AddAgent(node.AgentCard{Name: "quoter", Capabilities: []string{"quote"}}, quoter); err != nil {
		t.Fatal(err)
	}
	if _, err := n1.AddAgent(node.AgentCard{Name: "sleeper", Capabilities: []string{"slow"}}, sleeper(gm.started)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, c := range []string{"quote", "slow"} {
		if err := n0.WaitReady(ctx, c); err != nil {
			t.Fatalf("WaitReady %s: %v", c, err)
		}
	}
	cfg := a2a.Config{Node: n0, Token: testToken, Export: []string{"quote", "slow"}, Version: "test",
		Agents: func() []a2a.HostedAgent { return []a2a.HostedAgent{{Name: "default"}} }}
	if mutate != nil {
		mutate(&cfg)
	}
	gw, err := a2a.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- gw.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := gw.Close(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("gateway Close: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("gateway Serve: %v", err)
		}
	})
	gm.gw, gm.url = gw, "http://"+ln.Addr().String()
	return gm
}

// loopbackNode is a started node on loopback TCP (no mDNS, no DHT),
// joined to bootstrap if given, with room in the intent rates (a
// benchmark's requester publishes back to back) and its spans in its ring.
func loopbackNode(tb testing.TB, bootstrap *node.Node) *node.Node {
	tb.Helper()
	var boot []*node.Node
	if bootstrap != nil {
		boot = append(boot, bootstrap)
	}
	return nodetest.Loopback(tb, func(c *node.Config) {
		c.Tracing.Enabled = true // spans in the ring, exported nowhere
		fast := admission.Rate{PerSecond: 1e6, Burst: 1e6}
		c.Limits.IntentsPerForwarder, c.Limits.IntentsPerOrigin, c.Limits.IntentsPerAgent = fast, fast, fast
	}, boot...)
}
