// Package demo runs parley's demo: a few real nodes on loopback TCP in one
// process, each with its own temporary home, whose agents gossip intents to
// each other while the demo prints what happens and then a summary.
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
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/parleynet/parley/intent"
	"github.com/parleynet/parley/internal/home"
	"github.com/parleynet/parley/node"
)

// Config sizes the demo. The zero value is the default demo.
type Config struct {
	Nodes  int           // default 5
	Rounds int           // intents each node publishes; default 3
	Every  time.Duration // pause between rounds; default 400ms
}

// role is what one demo node stands for.
type role struct{ name, capability, payload string }

// roles is the demo's story: each node stands for a business whose agent
// reports on one capability and listens to all of them.
func roles() []role {
	return []role{
		{"warehouse", "inventory", `{"sku":"bolt-m8","on_hand":%d}`},
		{"carrier", "shipping", `{"lane":"OSL-HAM","trucks_free":%d}`},
		{"supplier", "pricing", `{"sku":"bolt-m8","price_eur":%d}`},
		{"factory", "inventory", `{"sku":"nut-m8","on_hand":%d}`},
		{"retailer", "pricing", `{"sku":"nut-m8","price_eur":%d}`},
	}
}

type delivery struct {
	at      string
	latency time.Duration
}

// Run starts the nodes, lets their agents gossip, prints each delivery to
// out as it happens and a summary at the end, and stops everything. It
// returns an error if any intent failed to reach a node.
func Run(ctx context.Context, out io.Writer) error {
	return RunConfig(ctx, out, Config{})
}

// RunConfig is Run with a Config.
func RunConfig(ctx context.Context, out io.Writer, cfg Config) error {
	if cfg.Nodes <= 0 {
		cfg.Nodes = 5
	}
	if cfg.Rounds <= 0 {
		cfg.Rounds = 3
	}
	if cfg.Every <= 0 {
		cfg.Every = 400 * time.Millisecond
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

	roles := roles()
	caps := map[string]bool{}
	for i := range cfg.Nodes {
		caps[roles[i%len(roles)].capability] = true
	}
	capabilities := make([]string, 0, len(caps))
	for c := range caps {
		capabilities = append(capabilities, c)
	}
	slices.Sort(capabilities)

	nodes := make([]*node.Node, 0, cfg.Nodes)
	names := map[peer.ID]string{}
	defer func() {
		// Last first, so no node sees its bootstrap peer go away.
		for i := len(nodes) - 1; i >= 0; i-- {
			_ = nodes[i].Close()
		}
	}()
	for i := range cfg.Nodes {
		role := roles[i%len(roles)].name
		if i >= len(roles) {
			role = fmt.Sprintf("%s-%d", role, i)
		}
		h, err := home.Init(filepath.Join(tmp, role), false)
		if err != nil {
			return fmt.Errorf("demo: init home of %s: %w", role, err)
		}
		nc, err := h.NodeConfig()
		if err != nil {
			return fmt.Errorf("demo: config of %s: %w", role, err)
		}
		nc.ListenAddrs = []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/0")}
		nc.BootstrapBackoff = 100 * time.Millisecond
		if i > 0 {
			// Each node knows only the first: the mesh forms from there.
			infos, err := peer.AddrInfosFromP2pAddrs(nodes[0].Addrs()...)
			if err != nil {
				return fmt.Errorf("demo: %w", err)
			}
			nc.Bootstrap = infos
		}
		n, err := node.New(nc)
		if err != nil {
			return fmt.Errorf("demo: node %s: %w", role, err)
		}
		if err := n.Start(ctx); err != nil {
			return fmt.Errorf("demo: start %s: %w", role, err)
		}
		nodes = append(nodes, n)
		names[n.ID()] = role
		a := n.Agents()[0]
		say("%-10s up   peer %s  agent %s", role, short(n.ID().String()), short(a.ID.String()))
	}

	// Every node listens to every capability.
	var (
		mu        sync.Mutex
		delivered = map[string][]delivery{} // intent ID -> deliveries
		wg        sync.WaitGroup
	)
	subCtx, stopSubs := context.WithCancel(ctx)
	defer func() { stopSubs(); wg.Wait() }()
	for _, n := range nodes {
		for _, c := range capabilities {
			sub, err := n.Subscribe(subCtx, c)
			if err != nil {
				return fmt.Errorf("demo: subscribe: %w", err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer sub.Close()
				for {
					in, err := sub.Next(subCtx)
					if err != nil {
						return
					}
					if in.ReplyTo.Peer == n.ID() {
						continue // a node's own intent
					}
					lat := time.Since(in.Created)
					mu.Lock()
					delivered[in.ID] = append(delivered[in.ID], delivery{names[n.ID()], lat})
					mu.Unlock()
					say("%-10s <- %-9s from %-10s %s  (%s)", names[n.ID()], in.Capability, names[in.ReplyTo.Peer], in.Payload, lat.Round(time.Microsecond))
				}
			}()
		}
	}
	if err := waitMesh(ctx, nodes); err != nil {
		return err
	}
	say("mesh formed: %d nodes, capabilities %v", len(nodes), capabilities)

	var published []*intent.Intent
	for round := range cfg.Rounds {
		for i, n := range nodes {
			r := roles[i%len(roles)]
			payload := fmt.Sprintf(r.payload, 100+10*round+i)
			in, err := n.Publish(ctx, node.PublishRequest{Capability: r.capability, Payload: json.RawMessage(payload)})
			if err != nil {
				return fmt.Errorf("demo: %s publish: %w", names[n.ID()], err)
			}
			published = append(published, in)
			say("%-10s -> %-9s %s", names[n.ID()], r.capability, payload)
		}
		if !sleep(ctx, cfg.Every) {
			break
		}
	}

	// Wait for the last deliveries.
	expected := len(published) * (len(nodes) - 1)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && count(&mu, delivered) < expected && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
	}
	stopSubs()
	wg.Wait()

	mu.Lock()
	got := 0
	var lats []time.Duration
	for _, in := range published {
		for _, d := range delivered[in.ID] {
			got++
			lats = append(lats, d.latency)
		}
	}
	mu.Unlock()
	slices.Sort(lats)
	var dropped uint64
	for _, n := range nodes {
		for _, c := range n.Stats().Dropped {
			dropped += c
		}
	}
	fmt.Fprintf(out, "\nsummary: %d nodes, %d intents published, %d of %d deliveries (%.0f%%), %d dropped as invalid\n",
		len(nodes), len(published), got, expected, 100*float64(got)/float64(max(expected, 1)), dropped)
	if len(lats) > 0 {
		fmt.Fprintf(out, "latency: p50 %s, max %s (publish to verified delivery)\n",
			lats[len(lats)/2].Round(time.Microsecond), lats[len(lats)-1].Round(time.Microsecond))
	}
	fmt.Fprintf(out, "elapsed: %s\n", time.Since(start).Round(time.Millisecond))
	if got < expected {
		return fmt.Errorf("demo: only %d of %d deliveries arrived", got, expected)
	}
	return nil
}

// waitMesh waits until every node sees every other node's subscriptions,
// so the first intents are not published into a half-formed mesh.
func waitMesh(ctx context.Context, nodes []*node.Node) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		ready := true
		for _, n := range nodes {
			if len(n.Peers()) == 0 {
				ready = false
			}
		}
		if ready {
			// Subscriptions travel right after connecting; one heartbeat
			// lets GossipSub graft its meshes.
			if !sleep(ctx, 1200*time.Millisecond) {
				return ctx.Err()
			}
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return errors.New("demo: nodes did not connect within 10 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func count(mu *sync.Mutex, m map[string][]delivery) int {
	mu.Lock()
	defer mu.Unlock()
	n := 0
	for _, d := range m {
		n += len(d)
	}
	return n
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func short(s string) string {
	if len(s) <= 16 {
		return s
	}
	return s[:10] + "…" + s[len(s)-5:]
}
