package a2a_test

import (
	"context"
	"encoding/json"
	"iter"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/a2aproject/a2a-go/v2/a2a"
	"github.com/a2aproject/a2a-go/v2/a2aclient"
	"github.com/a2aproject/a2a-go/v2/a2asrv"

	parleya2a "github.com/parleynet/parley/interop/a2a"
	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/node"
)

const benchInput = `{"sku":"bolt-m8","qty":500,"deliver_to":"warehouse-7"}`

// echoExecutor is the baseline A2A agent: it answers a message with its
// data as an artifact, in a task, as the gateway does.
type echoExecutor struct{}

func (echoExecutor) Execute(_ context.Context, ec *a2asrv.ExecutorContext) iter.Seq2[a2a.Event, error] {
	return func(yield func(a2a.Event, error) bool) {
		if !yield(a2a.NewSubmittedTask(ec, ec.Message), nil) ||
			!yield(a2a.NewArtifactEvent(ec, a2a.NewDataPart(ec.Message.Parts[0].Data())), nil) {
			return
		}
		yield(a2a.NewStatusUpdateEvent(ec, a2a.TaskStateCompleted, nil), nil)
	}
}

func (echoExecutor) Cancel(_ context.Context, ec *a2asrv.ExecutorContext) iter.Seq2[a2a.Event, error] {
	return func(yield func(a2a.Event, error) bool) {
		yield(a2a.NewStatusUpdateEvent(ec, a2a.TaskStateCanceled, nil), nil)
	}
}

func serve(b *testing.B, h http.Handler) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

var benchEcho = negotiation.HandlerFuncs{
	BidFunc: func(context.Context, negotiation.Call) (negotiation.Bid, error) {
		return negotiation.Bid{Price: 1, ETA: time.Millisecond}, nil
	},
	WorkFunc: func(_ context.Context, t negotiation.Task) (json.RawMessage, error) { return t.Input, nil },
}

func sendOne(b *testing.B, ctx context.Context, c *a2aclient.Client, skill string) {
	var data map[string]any
	_ = json.Unmarshal([]byte(benchInput), &data)
	msg := a2a.NewMessage(a2a.MessageRoleUser, a2a.NewDataPart(data))
	msg.Metadata = map[string]any{"skill": skill}
	res, err := c.SendMessage(ctx, &a2a.SendMessageRequest{Message: msg})
	if err != nil {
		b.Fatal(err)
	}
	if t, ok := res.(*a2a.Task); !ok || t.Status.State != a2a.TaskStateCompleted || len(t.Artifacts) != 1 {
		b.Fatalf("SendMessage: %#v, want a completed task with its artifact", res)
	}
}

// BenchmarkA2A: one A2A SendMessage (JSON-RPC, loopback) answered by
// a2a-go's server directly (the baseline), the same through the gateway
// to a mesh agent on another node on loopback TCP (a whole negotiation),
// and that negotiation alone (node.Request, same nodes and options).
// Added latency = gateway − direct; the target is at most negotiation.
func BenchmarkA2A(b *testing.B) {
	ctx := context.Background()
	b.Run("direct", func(b *testing.B) {
		card := &a2a.AgentCard{Name: "echo"}
		base := serve(b, a2asrv.NewJSONRPCHandler(a2asrv.NewHandler(echoExecutor{})))
		card.SupportedInterfaces = []*a2a.AgentInterface{a2a.NewAgentInterface(base, a2a.TransportProtocolJSONRPC)}
		c, err := a2aclient.NewFromCard(ctx, card)
		if err != nil {
			b.Fatal(err)
		}
		defer func() { _ = c.Destroy() }()
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			sendOne(b, ctx, c, "echo")
		}
	})

	requester := loopbackNode(b, nil)
	contractor := loopbackNode(b, requester)
	if _, err := contractor.AddAgent(node.AgentCard{Name: "echo", Capabilities: []string{"echo"}}, benchEcho); err != nil {
		b.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := requester.WaitReady(wctx, "echo"); err != nil {
		b.Fatal(err)
	}
	opts := []negotiation.RequestOption{negotiation.WithEnoughBids(1), negotiation.WithBidWindow(5 * time.Second)}

	b.Run("gateway", func(b *testing.B) {
		gw, err := parleya2a.New(parleya2a.Config{Node: requester, Token: testToken, Export: []string{"echo"}, RequestOptions: opts})
		if err != nil {
			b.Fatal(err)
		}
		base := serve(b, gw.Handler())
		c, err := a2aclient.NewFromEndpoints(ctx, []*a2a.AgentInterface{a2a.NewAgentInterface(base+parleya2a.JSONRPCPath, a2a.TransportProtocolJSONRPC)})
		if err != nil {
			b.Fatal(err)
		}
		defer func() { _ = c.Destroy() }()
		actx := a2aclient.AttachServiceParams(ctx, a2aclient.ServiceParams{"Authorization": {"Bearer " + testToken}})
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			sendOne(b, actx, c, "echo")
		}
	})

	b.Run("negotiation", func(b *testing.B) {
		need := negotiation.Need{Capability: "echo", Input: json.RawMessage(benchInput)}
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			out, err := requester.Request(ctx, need, opts...)
			if err != nil || len(out.Result) == 0 {
				b.Fatalf("negotiation: %v", err)
			}
		}
	})
}
