package negotiation_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-msgio"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parleynet/parley/admission"
	"github.com/parleynet/parley/audit"
	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/internal/otlpsink"
	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/node"
	"github.com/parleynet/parley/node/nodetest"
	"github.com/parleynet/parley/tracing"
)

const benchInput = `{"sku":"bolt-m8","qty":500,"deliver_to":"warehouse-7"}`

// loopbackNode is a real node on 127.0.0.1 TCP with tracing tc and, as
// a daemon has, an audit log on disk (the test's temporary directory),
// whose metrics the returned Gatherer holds. One agent calls as fast as
// the machine goes, past the default 500 calls a second a node takes from
// one agent: the admission layer stays on, with room for the benchmark.
func loopbackNode(b *testing.B, bootstrap *node.Node, tc tracing.Config) (*node.Node, prometheus.Gatherer) {
	b.Helper()
	var boot []*node.Node
	if bootstrap != nil {
		boot = append(boot, bootstrap)
	}
	reg := prometheus.NewRegistry()
	n := nodetest.Loopback(b, func(c *node.Config) {
		l, err := audit.Open(b.TempDir(), c.NodeKey, audit.Options{Registerer: reg})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = l.Close() }) // after the node's Close: cleanups run last first
		c.AuditLog = l
		c.Tracing = tc
		c.DHTMode = node.DefaultConfig().DHTMode // as the README's figures were measured
		fast := admission.Rate{PerSecond: 1e6, Burst: 1e6}
		c.Limits.IntentsPerForwarder, c.Limits.IntentsPerOrigin, c.Limits.IntentsPerAgent = fast, fast, fast
	}, boot...)
	return n, reg
}

// auditWait is how long, in all, Appends to the audit logs whose metrics
// gs hold have taken so far: what the nodes' steps waited for their disk.
func auditWait(b *testing.B, gs ...prometheus.Gatherer) time.Duration {
	b.Helper()
	var sum float64
	for _, g := range gs {
		mfs, err := g.Gather()
		if err != nil {
			b.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "parley_audit_append_seconds" {
				sum += mf.GetMetric()[0].GetHistogram().GetSampleSum()
			}
		}
	}
	return time.Duration(sum * float64(time.Second))
}

var echo = negotiation.HandlerFuncs{
	BidFunc: func(context.Context, negotiation.Call) (negotiation.Bid, error) {
		return negotiation.Bid{Price: 1, ETA: time.Millisecond}, nil
	},
	WorkFunc: func(_ context.Context, t negotiation.Task) (json.RawMessage, error) { return t.Input, nil },
}

// BenchmarkNegotiation is one whole negotiation per op between two real
// nodes on loopback TCP: call (gossip), propose, accept, commit, task,
// result, ack, every frame signed and verified, every step in the audit
// log on disk. The window closes at the first bid. Compare with
// BenchmarkNegotiationFloor. tracing=on records every span and exports
// them by OTLP/HTTP to a local receiver; off is the default.
func BenchmarkNegotiation(b *testing.B) {
	b.Run("tracing=off", func(b *testing.B) { benchNegotiation(b, tracing.Config{}) })
	b.Run("tracing=on", func(b *testing.B) {
		sink := otlpsink.Start(b)
		benchNegotiation(b, tracing.Config{Enabled: true, OTLP: tracing.OTLPConfig{Protocol: tracing.ProtocolHTTP, Endpoint: sink.URL, Insecure: true}})
	})
}

func benchNegotiation(b *testing.B, tc tracing.Config) {
	requester, rm := loopbackNode(b, nil, tc)
	contractor, cm := loopbackNode(b, requester, tc)
	if _, err := contractor.AddAgent(node.AgentCard{Name: "echo", Capabilities: []string{"echo"}}, echo); err != nil {
		b.Fatal(err)
	}
	for len(requester.TopicPeers("echo")) == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	need := negotiation.Need{Capability: "echo", Input: json.RawMessage(benchInput)}
	ctx := context.Background()
	waited := auditWait(b, rm, cm)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		out, err := requester.Request(ctx, need, negotiation.WithEnoughBids(1), negotiation.WithBidWindow(5*time.Second))
		if err != nil {
			b.Fatalf("negotiation: %v", err)
		}
		if len(out.Result) == 0 {
			b.Fatal("no result")
		}
	}
	b.StopTimer()
	b.ReportMetric(float64((auditWait(b, rm, cm)-waited).Microseconds())/float64(b.N), "audit-µs/op")
	// However many negotiations ran (-benchtime 10000x), both sides keep
	// at most their bound of tasks (the default KeepTasks, 1000).
	for _, n := range []*node.Node{requester, contractor} {
		if got := len(n.Tasks()); got > 1000 {
			b.Fatalf("a node remembers %d tasks after %d negotiations, want at most 1000", got, b.N)
		}
	}
}

// BenchmarkNegotiationConcurrent runs negotiations from 1, 4 and 16
// requesters at once on one node, to one contractor node, on loopback
// TCP, and reports negotiations a second: how it scales with cores.
func BenchmarkNegotiationConcurrent(b *testing.B) {
	for _, n := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("requesters=%d", n), func(b *testing.B) {
			requester, _ := loopbackNode(b, nil, tracing.Config{})
			contractor, _ := loopbackNode(b, requester, tracing.Config{})
			if _, err := contractor.AddAgent(node.AgentCard{Name: "echo", Capabilities: []string{"echo"}}, echo); err != nil {
				b.Fatal(err)
			}
			for len(requester.TopicPeers("echo")) == 0 {
				time.Sleep(10 * time.Millisecond)
			}
			need := negotiation.Need{Capability: "echo", Input: json.RawMessage(benchInput)}
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= int64(b.N) {
						if _, err := requester.Request(context.Background(), need, negotiation.WithEnoughBids(1), negotiation.WithBidWindow(5*time.Second)); err != nil {
							b.Errorf("negotiation: %v", err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "negotiations/s")
		})
	}
}

// rawPair is two plain libp2p hosts on loopback TCP, connected, the
// second echoing each msgio message on proto until the stream closes.
func rawPair(b *testing.B, proto protocol.ID) [2]host.Host {
	var hosts [2]host.Host
	for i := range hosts {
		h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = h.Close() })
		hosts[i] = h
	}
	hosts[1].SetStreamHandler(proto, func(s network.Stream) {
		defer s.Close()
		r, w := msgio.NewVarintReader(s), msgio.NewVarintWriter(s)
		for {
			msg, err := r.ReadMsg()
			if err != nil {
				return
			}
			if err := w.WriteMsg(msg); err != nil {
				_ = s.Reset()
				return
			}
		}
	})
	if err := hosts[0].Connect(context.Background(), peer.AddrInfo{ID: hosts[1].ID(), Addrs: hosts[1].Addrs()}); err != nil {
		b.Fatal(err)
	}
	return hosts
}

// roundTrips opens a stream from hosts[0] and makes n request-reply
// exchanges on it.
func roundTrips(b *testing.B, hosts [2]host.Host, proto protocol.ID, n int) {
	s, err := hosts[0].NewStream(context.Background(), hosts[1].ID(), proto)
	if err != nil {
		b.Fatal(err)
	}
	r, w := msgio.NewVarintReader(s), msgio.NewVarintWriter(s)
	for range n {
		if err := w.WriteMsg([]byte(benchInput)); err != nil {
			b.Fatal(err)
		}
		if _, err := r.ReadMsg(); err != nil {
			b.Fatal(err)
		}
	}
	_ = s.CloseWrite()
	_, _ = io.Copy(io.Discard, s)
	_ = s.Close()
}

// BenchmarkRawStreamRoundTrip is the baseline: two plain libp2p hosts on
// loopback TCP, one new stream per op carrying one msgio request and one
// reply, with no signatures.
func BenchmarkRawStreamRoundTrip(b *testing.B) {
	const proto = "/bench/echo/1.0.0"
	hosts := rawPair(b, proto)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		roundTrips(b, hosts, proto, 1)
	}
}

// BenchmarkNegotiationFloor is what one negotiation cannot do without,
// measured on this machine in this run:
//   - the seven signed messages of a negotiation with one bidder (the
//     call, propose, accept, commit, task, result, ack), each sealed by one
//     agent and opened by the other;
//   - six durable records, each signed by a node key, written and fsynced
//     on the disk the nodes' audit logs use: what each side acknowledges,
//     recorded before it does — the call as published, the proposal, the
//     award, the commit, the result sent and the result received;
//   - the call's one GossipSub hop, and the contractor's one stream with
//     its three request-reply exchanges (propose/accept, commit/task,
//     result/ack). The hop and the stream are raw libp2p and raw
//     GossipSub, with parley's message-level choices (no second peer
//     signature, content IDs, flood publishing), whose costs the protocol
//     pays whatever it does.
//
// BenchmarkNegotiation divided by this is how far the protocol is from
// its floor.
func BenchmarkNegotiationFloor(b *testing.B) {
	const proto = "/bench/floor/1.0.0"
	hosts := rawPair(b, proto)
	pub, sub := rawTopic(b, hosts)
	agent, err := nodetest.NewAgent("floor")
	if err != nil {
		b.Fatal(err)
	}
	disk, err := os.OpenFile(filepath.Join(b.TempDir(), "records"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	defer disk.Close()
	line := []byte(`{"seq":1,"kind":"award","task":"0123456789abcdef","agent":"did:key:z6MkfloorfloorfloorfloorfloorfloorfloorfloorfloorfloorAB","prev":"` +
		strings.Repeat("0", 64) + `","sig":`)
	body := json.RawMessage(`{"task":"0123456789abcdef","price":1,"eta":"1ms","input":` + benchInput + `}`)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	var onDisk time.Duration
	for i := range b.N {
		start := time.Now()
		for range 6 {
			sig, err := agent.Key.Sign(line)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := disk.Write(fmt.Appendf(line[:len(line):len(line)], "%q}\n", base64.StdEncoding.EncodeToString(sig))); err != nil {
				b.Fatal(err)
			}
			if err := disk.Sync(); err != nil {
				b.Fatal(err)
			}
		}
		onDisk += time.Since(start)
		for range 7 {
			raw, err := identity.Seal(agent, identity.Message{Type: "propose", V: 1, Body: body})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := identity.Open(raw, identity.OpenOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		// The call: a fresh message (content IDs dedupe the same bytes).
		if err := pub.Publish(ctx, fmt.Appendf(nil, `{"n":%d,"need":%s}`, i, benchInput)); err != nil {
			b.Fatal(err)
		}
		if _, err := sub.Next(ctx); err != nil {
			b.Fatal(err)
		}
		roundTrips(b, hosts, proto, 3)
	}
	b.ReportMetric(float64(onDisk.Microseconds())/float64(b.N), "disk-µs/op")
}

// rawTopic joins both hosts to one raw GossipSub topic and waits until
// the first sees the second on it: hosts[0] publishes, hosts[1] receives.
func rawTopic(b *testing.B, hosts [2]host.Host) (*pubsub.Topic, *pubsub.Subscription) {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	var topics [2]*pubsub.Topic
	for i, h := range hosts {
		ps, err := pubsub.NewGossipSub(ctx, h, pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign), pubsub.WithNoAuthor(),
			pubsub.WithFloodPublish(true),
			pubsub.WithMessageIdFn(func(m *pb.Message) string { s := sha256.Sum256(m.Data); return string(s[:]) }))
		if err != nil {
			b.Fatal(err)
		}
		if topics[i], err = ps.Join("floor"); err != nil {
			b.Fatal(err)
		}
	}
	sub, err := topics[1].Subscribe()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(sub.Cancel)
	if _, err := topics[0].Subscribe(); err != nil { // parley's requester is on the topic too
		b.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); len(topics[0].ListPeers()) == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatal("the raw topic never formed")
		}
	}
	return topics[0], sub
}

// BenchmarkNegotiationLatency runs negotiations on mocknet with 50 ms links
// and 10 bidders, each directly connected to the requester, and reports the
// median latency against the protocol's floor: the call's one gossip hop
// plus the five one-way legs (propose, accept, commit, task, result).
func BenchmarkNegotiationLatency(b *testing.B) {
	const link = 50 * time.Millisecond
	const bidders = 10
	m := nodetest.NewMesh(b, bidders+1, nodetest.WithLatency(link))
	for i, n := range m.Nodes[1:] {
		if _, err := n.AddAgent(node.AgentCard{Name: "bidder", Capabilities: []string{"echo"}}, negotiation.HandlerFuncs{
			BidFunc: func(context.Context, negotiation.Call) (negotiation.Bid, error) {
				return negotiation.Bid{Price: float64(1 + i), ETA: time.Millisecond}, nil
			},
			WorkFunc: echo.WorkFunc,
		}); err != nil {
			b.Fatal(err)
		}
	}
	for len(m.Nodes[0].TopicPeers("echo")) < bidders {
		time.Sleep(20 * time.Millisecond)
	}
	need := negotiation.Need{Capability: "echo", Input: json.RawMessage(benchInput)}
	ctx := context.Background()
	var lat []time.Duration
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if _, err := m.Nodes[0].Request(ctx, need, negotiation.WithEnoughBids(bidders), negotiation.WithBidWindow(5*time.Second)); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	floor := 6 * link
	b.ReportMetric(float64(lat[len(lat)/2].Milliseconds()), "p50-ms")
	b.ReportMetric(float64(lat[len(lat)/2])/float64(floor), "x-floor")
}
