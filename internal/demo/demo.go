// Package demo runs parley's supply-chain demo: real nodes on loopback TCP
// in one process, each with its own temporary home. A shop agent places
// orders; each order needs inventory, pricing and shipping, and for each
// the shop negotiates with competing contractor agents (different prices
// and speeds, one of them flaky) over parley's contract net. The demo
// prints every negotiation as it happens and a summary, and ends by itself.
package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/internal/home"
	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/node"
)

// Config sizes the demo. The zero value is the default demo.
type Config struct {
	Orders int // default 6
}

// contractor is one competing agent of the story.
type contractor struct {
	name       string
	capability string
	node       int // which node hosts it (1..)
	price      float64
	work       time.Duration
	// failFirst makes it fail its first task, to show a re-award.
	failFirst bool
}

func cast() []contractor {
	return []contractor{
		{"inventory-north", "inventory", 1, 4, 80 * time.Millisecond, false},
		{"inventory-south", "inventory", 2, 6, 40 * time.Millisecond, false},
		{"pricing-fast", "pricing", 3, 3, 30 * time.Millisecond, false},
		{"pricing-cheap", "pricing", 1, 2, 60 * time.Millisecond, false},
		{"shipping-budget", "shipping", 4, 5, 120 * time.Millisecond, true},
		{"shipping-express", "shipping", 5, 7, 60 * time.Millisecond, false},
	}
}

// Run runs the default demo.
func Run(ctx context.Context, out io.Writer) error { return RunConfig(ctx, out, Config{}) }

// RunConfig runs the demo and returns an error if any order failed.
func RunConfig(ctx context.Context, out io.Writer, cfg Config) error {
	if cfg.Orders <= 0 {
		cfg.Orders = 6
	}
	ctx, cancel := context.WithTimeout(ctx, 25*time.Second)
	defer cancel()
	start := time.Now()
	var printMu sync.Mutex
	say := func(format string, args ...any) {
		printMu.Lock()
		defer printMu.Unlock()
		fmt.Fprintf(out, "%6.2fs  "+format+"\n", append([]any{time.Since(start).Seconds()}, args...)...)
	}

	tmp, err := os.MkdirTemp("", "parley-demo-")
	if err != nil {
		return fmt.Errorf("demo: temp dir: %w", err)
	}
	defer os.RemoveAll(tmp)

	roles := []string{"inventory", "pricing", "shipping"}
	const nodes = 6
	nodeNames := []string{"shop", "north-depot", "south-depot", "pricing-desk", "budget-freight", "express-freight"}
	var ns []*node.Node
	defer func() {
		// Last first, so no node sees its bootstrap peer go away.
		for i := len(ns) - 1; i >= 0; i-- {
			_ = ns[i].Close()
		}
	}()
	for i := range nodes {
		h, err := home.Init(filepath.Join(tmp, nodeNames[i]), false)
		if err != nil {
			return fmt.Errorf("demo: init home of %s: %w", nodeNames[i], err)
		}
		nc, err := h.NodeConfig()
		if err != nil {
			return fmt.Errorf("demo: config of %s: %w", nodeNames[i], err)
		}
		nc.ListenAddrs = []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/0")}
		nc.BootstrapBackoff = 100 * time.Millisecond
		nc.MDNS, nc.DHTMode = false, "off"
		if i > 0 {
			infos, err := peer.AddrInfosFromP2pAddrs(ns[0].Addrs()...)
			if err != nil {
				return fmt.Errorf("demo: %w", err)
			}
			nc.Bootstrap = infos
		}
		n, err := node.New(nc)
		if err != nil {
			return fmt.Errorf("demo: node %s: %w", nodeNames[i], err)
		}
		if err := n.Start(ctx); err != nil {
			return fmt.Errorf("demo: start %s: %w", nodeNames[i], err)
		}
		ns = append(ns, n)
		say("%-16s up on %s", nodeNames[i], n.Addrs()[0])
	}

	names := map[identity.AgentID]string{}
	for _, c := range cast() {
		a, err := ns[c.node].AddAgent(node.AgentCard{Name: c.name, Capabilities: []string{c.capability}}, newAgent(c, say))
		if err != nil {
			return fmt.Errorf("demo: agent %s: %w", c.name, err)
		}
		names[a.ID] = c.name
		say("%-16s offers %-9s at %g, takes ~%s%s", c.name, c.capability, c.price, c.work, map[bool]string{true: " (flaky)"}[c.failFirst])
	}
	shop := ns[0]
	for _, r := range roles {
		for len(shop.TopicPeers(r)) < 2 {
			if ctx.Err() != nil {
				return errors.New("demo: the mesh did not form")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	say("mesh formed: %d nodes; the shop places %d orders", nodes, cfg.Orders)

	var (
		negLat, orderLat []time.Duration
		completed        int
		reawards         int
	)
	for o := 1; o <= cfg.Orders; o++ {
		ostart := time.Now()
		outs := make([]*negotiation.Outcome, len(roles))
		errs := make([]error, len(roles))
		var wg sync.WaitGroup
		for k, role := range roles {
			wg.Add(1)
			go func() {
				defer wg.Done()
				say("order %d: call for %s (public: sku and quantity; the address goes only to the winner)", o, role)
				outs[k], errs[k] = shop.Request(ctx, negotiation.Need{
					Capability: role,
					Summary:    json.RawMessage(fmt.Sprintf(`{"order":%d,"sku":"bolt-m8","qty":%d}`, o, 100*o)),
					Input:      json.RawMessage(fmt.Sprintf(`{"order":%d,"sku":"bolt-m8","qty":%d,"ship_to":"Storgata %d, Oslo"}`, o, 100*o, o)),
				}, negotiation.WithBidWindow(250*time.Millisecond), negotiation.WithEnoughBids(2),
					negotiation.WithTimeout(8*time.Second), negotiation.WithProgressTimeout(time.Second))
			}()
		}
		wg.Wait()
		ok := true
		for k, out := range outs {
			if errs[k] != nil || out == nil {
				ok = false
				say("order %d: %s FAILED: %v", o, roles[k], errs[k])
				continue
			}
			var bids []string
			failed := ""
			for _, b := range out.Bids {
				bids = append(bids, fmt.Sprintf("%s %g/%s", names[b.Agent], b.Price, b.ETA))
				if b.Status == "failed" || b.Status == "declined" || b.Status == "silent" {
					failed = fmt.Sprintf("%s %s (%s)", names[b.Agent], b.Status, b.Note)
				}
			}
			say("order %d: %-9s bids [%s]", o, roles[k], strings.Join(bids, ", "))
			if failed != "" {
				reawards++
				say("order %d: %-9s %s -> re-awarded", o, roles[k], failed)
			}
			say("order %d: %-9s won by %s: %s; result %s in %s", o, roles[k], names[out.Winner], out.Rationale, out.Result, out.Timings.Total.Round(time.Millisecond))
			negLat = append(negLat, out.Timings.Total)
		}
		if ok {
			completed++
			orderLat = append(orderLat, time.Since(ostart))
		}
	}

	fmt.Fprintf(out, "\nsummary\n")
	fmt.Fprintf(out, "  %-26s %d\n", "orders placed", cfg.Orders)
	fmt.Fprintf(out, "  %-26s %d (%.0f%%)\n", "orders completed", completed, 100*float64(completed)/float64(cfg.Orders))
	fmt.Fprintf(out, "  %-26s %d\n", "negotiations completed", len(negLat))
	fmt.Fprintf(out, "  %-26s %d\n", "re-awards after a failure", reawards)
	fmt.Fprintf(out, "  %-26s p50 %s  p99 %s\n", "negotiation latency", pct(negLat, 0.5), pct(negLat, 0.99))
	fmt.Fprintf(out, "  %-26s p50 %s  p99 %s\n", "order latency", pct(orderLat, 0.5), pct(orderLat, 0.99))
	fmt.Fprintf(out, "  %-26s %s\n", "elapsed", time.Since(start).Round(time.Millisecond))
	if completed < cfg.Orders {
		return fmt.Errorf("demo: %d of %d orders failed", cfg.Orders-completed, cfg.Orders)
	}
	return nil
}

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	d = slices.Clone(d)
	slices.Sort(d)
	return d[int(p*float64(len(d)-1))].Round(time.Millisecond)
}

// newAgent is a contractor's handler: it bids its price and speed, works
// with progress, and (if flaky) fails its first task.
func newAgent(c contractor, say func(string, ...any)) negotiation.Handler {
	var tasks atomic.Int32
	return negotiation.HandlerFuncs{
		BidFunc: func(context.Context, negotiation.Call) (negotiation.Bid, error) {
			return negotiation.Bid{Price: c.price, ETA: c.work, Rationale: fmt.Sprintf("%s can do it in %s", c.name, c.work)}, nil
		},
		WorkFunc: func(ctx context.Context, t negotiation.Task) (json.RawMessage, error) {
			n := tasks.Add(1)
			var order struct {
				Order  int    `json:"order"`
				ShipTo string `json:"ship_to"`
			}
			_ = json.Unmarshal(t.Input, &order)
			if c.failFirst && n == 1 {
				say("%-16s order %d: truck broke down, giving up", c.name, order.Order)
				return nil, errors.New("truck broke down")
			}
			t.Progress(0.5, "halfway")
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(c.work):
			}
			return json.Marshal(map[string]any{"by": c.name, "order": order.Order, "done": c.capability})
		},
	}
}
