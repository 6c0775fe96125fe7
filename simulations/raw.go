package simulations

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	"google.golang.org/protobuf/proto"

	"github.com/parleynet/parley/node/nodetest"
)

// RunRaw runs the scenario's topology and intents on raw GossipSub — no
// parley code, no signatures of ours, no validators — as the baseline for
// parley's figures. Only the intents part of the result is filled.
func RunRaw(ctx context.Context, sc Scenario) (*IntentStats, error) {
	if err := sc.Validate(); err != nil {
		return nil, err
	}
	mn := mocknet.New()
	defer mn.Close()
	if sc.Latency > 0 || sc.Bandwidth > 0 {
		mn.SetLinkDefaults(mocknet.LinkOptions{Latency: sc.Latency, Bandwidth: sc.Bandwidth})
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	topics := make([]*pubsub.Topic, sc.Nodes)
	tracers := make([]rpcCounter, sc.Nodes)
	ids := make([]peer.ID, sc.Nodes)
	var (
		mu        sync.Mutex
		delivered int
		lat       []time.Duration
		wg        sync.WaitGroup
	)
	defer wg.Wait()
	for i := range sc.Nodes {
		key, err := nodetestKey()
		if err != nil {
			return nil, err
		}
		h, err := mn.AddPeer(key, nodetest.Addr(i))
		if err != nil {
			return nil, err
		}
		ids[i] = h.ID()
		ps, err := pubsub.NewGossipSub(ctx, h, pubsub.WithFloodPublish(true), pubsub.WithRawTracer(&tracers[i]),
			pubsub.WithMessageIdFn(func(m *pb.Message) string { s := sha256.Sum256(m.Data); return string(s[:]) }))
		if err != nil {
			return nil, err
		}
		t, err := ps.Join(gossipCapability)
		if err != nil {
			return nil, err
		}
		topics[i] = t
		sub, err := t.Subscribe()
		if err != nil {
			return nil, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer sub.Cancel()
			for {
				m, err := sub.Next(ctx)
				if err != nil {
					return
				}
				if m.ReceivedFrom == h.ID() || len(m.Data) < 8 {
					continue
				}
				sent := time.Unix(0, int64(binary.BigEndian.Uint64(m.Data)))
				mu.Lock()
				delivered++
				lat = append(lat, time.Since(sent))
				mu.Unlock()
			}
		}()
	}
	// Only the topology's pairs are linked: LinkAll is quadratic.
	for _, e := range nodetest.Random(sc.Degree, sc.Seed)(sc.Nodes) {
		if _, err := mn.LinkPeers(ids[e[0]], ids[e[1]]); err != nil {
			return nil, fmt.Errorf("link: %w", err)
		}
		if _, err := mn.ConnectPeers(ids[e[0]], ids[e[1]]); err != nil {
			return nil, fmt.Errorf("connect: %w", err)
		}
	}
	sleep(ctx, sc.Warmup)
	cpu0, wire0 := cpuSeconds(), sumWire(tracers)
	rng := rand.New(rand.NewPCG(sc.Seed, sc.Seed^0x5eed))
	for k := range sc.Intents.Count {
		msg := make([]byte, 8, 64)
		binary.BigEndian.PutUint64(msg, uint64(time.Now().UnixNano()))
		msg = fmt.Appendf(msg, `{"n":%d}`, k)
		if err := topics[rng.IntN(sc.Nodes)].Publish(ctx, msg); err != nil {
			return nil, err
		}
		sleep(ctx, sc.Intents.Every)
	}
	sleep(ctx, 2*time.Second+10*sc.Latency)
	cancel()
	mu.Lock()
	defer mu.Unlock()
	st := &IntentStats{Published: sc.Intents.Count, Delivered: delivered, Expected: sc.Intents.Count * (sc.Nodes - 1)}
	if st.Expected > 0 {
		st.DeliveryRatio = float64(st.Delivered) / float64(st.Expected)
		onTime := 0
		for _, l := range lat {
			if l <= time.Second {
				onTime++
			}
		}
		st.OnTimeRatio = float64(onTime) / float64(st.Expected)
	}
	st.LatencyMs = percentiles(lat)
	st.setCPU(cpu0)
	st.setWire(sumWire(tracers).minus(wire0), sc.Nodes)
	return st, nil
}

// rpcCounter counts the RPCs a raw node received as parley's nodes do
// (node.Stats RPCs and RPCBytes): every one, and its protobuf size.
type rpcCounter struct {
	rpcs, bytes atomic.Uint64
}

func (c *rpcCounter) RecvRPC(rpc *pubsub.RPC) {
	c.rpcs.Add(1)
	c.bytes.Add(uint64(proto.Size(&rpc.RPC)))
}

func (*rpcCounter) AddPeer(peer.ID, protocol.ID)                         {}
func (*rpcCounter) RemovePeer(peer.ID)                                   {}
func (*rpcCounter) Join(string)                                          {}
func (*rpcCounter) Leave(string)                                         {}
func (*rpcCounter) Graft(peer.ID, string)                                {}
func (*rpcCounter) Prune(peer.ID, string)                                {}
func (*rpcCounter) ValidateMessage(*pubsub.Message)                      {}
func (*rpcCounter) DeliverMessage(*pubsub.Message)                       {}
func (*rpcCounter) RejectMessage(*pubsub.Message, string)                {}
func (*rpcCounter) DuplicateMessage(*pubsub.Message)                     {}
func (*rpcCounter) ThrottlePeer(peer.ID)                                 {}
func (*rpcCounter) SendRPC(*pubsub.RPC, peer.ID)                         {}
func (*rpcCounter) DropRPC(*pubsub.RPC, peer.ID)                         {}
func (*rpcCounter) UndeliverableMessage(*pubsub.Message)                 {}
func (*rpcCounter) SendRPCCompleted(*pubsub.RPC, peer.ID, time.Duration) {}
func (*rpcCounter) OnNewOutboundStream(peer.ID, protocol.ID)             {}
func (*rpcCounter) OnClosedOutboundStream(peer.ID)                       {}

func sumWire(cs []rpcCounter) wire {
	var w wire
	for i := range cs {
		w.rpcs += cs[i].rpcs.Load()
		w.bytes += cs[i].bytes.Load()
	}
	return w
}

// RunRawVirtual is RunRaw in a synctest bubble; like RunVirtual it does
// not return: it hands done the baseline with its wall time and peak RSS
// and exits.
func RunRawVirtual(sc Scenario, done func(*Baseline, error) error) {
	start := time.Now()
	stdout, discard := os.Stdout, devNull()
	os.Stdout = discard
	os.Args = os.Args[:1]
	testing.Main(func(string, string) (bool, error) { return true, nil }, []testing.InternalTest{{
		Name: "parley-sim-raw",
		F: func(t *testing.T) {
			var (
				st  *IntentStats
				err error
			)
			synctest.Test(t, func(*testing.T) { st, err = RunRaw(context.Background(), sc) })
			var b *Baseline
			if st != nil {
				b = &Baseline{Clock: "virtual", Intents: *st, WallS: time.Since(start).Seconds(), RSSMB: peakRSSMB()}
			}
			os.Stdout = stdout
			derr := done(b, err)
			os.Stdout = discard
			if derr != nil {
				fmt.Fprintf(os.Stderr, "parley: %v\n", derr)
				t.Fail()
			}
		},
	}}, nil, nil)
}

// RunRawReal runs the raw baseline on the machine's clock, as RunReal
// runs parley: a real-time run is only comparable with a real-time
// baseline, since virtual time hides what the CPU costs.
func RunRawReal(ctx context.Context, sc Scenario) (*Baseline, error) {
	start := time.Now()
	st, err := RunRaw(ctx, sc)
	if err != nil {
		return nil, fmt.Errorf("raw baseline %s: %w", sc.Name, err)
	}
	return &Baseline{Clock: "real", Intents: *st, WallS: time.Since(start).Seconds(), RSSMB: peakRSSMB()}, nil
}
