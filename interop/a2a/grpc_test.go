package a2a_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/a2aproject/a2a-go/v2/a2a"
	"github.com/a2aproject/a2a-go/v2/a2aclient"
	"github.com/a2aproject/a2a-go/v2/a2aclient/agentcard"
	a2agrpc "github.com/a2aproject/a2a-go/v2/a2agrpc/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// The gRPC binding, when served, is on the card, needs the token like
// the others, and runs a task a mesh agent wins.
func TestGatewayWithA2AGoClientOverGRPC(t *testing.T) {
	gm := newGatewayMesh(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- gm.gw.ServeGRPC(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = gm.gw.Close(ctx)
		if err := <-served; err != nil {
			t.Errorf("ServeGRPC: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var card *a2a.AgentCard
	waitFor(t, ctx, "the card to name the gRPC interface", func() bool {
		card, err = agentcard.DefaultResolver.Resolve(ctx, gm.url)
		return err == nil && len(card.SupportedInterfaces) == 3
	})
	iface := card.SupportedInterfaces[2]
	if iface.ProtocolBinding != a2a.TransportProtocolGRPC || iface.URL != ln.Addr().String() {
		t.Fatalf("third interface %+v, want gRPC at %s", iface, ln.Addr())
	}
	c, err := a2aclient.NewFromEndpoints(ctx, []*a2a.AgentInterface{iface},
		a2agrpc.WithGRPCTransport(grpc.WithTransportCredentials(insecure.NewCredentials())))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Destroy() }()
	req := &a2a.SendMessageRequest{Message: quoteMessage("quote", map[string]any{"kg": 4})}
	if _, err := c.SendMessage(ctx, req); !errors.Is(err, a2a.ErrUnauthenticated) {
		t.Errorf("SendMessage without the token: %v, want unauthenticated", err)
	}
	actx := a2aclient.AttachServiceParams(ctx, a2aclient.ServiceParams{"Authorization": {"Bearer " + testToken}})
	res, err := c.SendMessage(actx, &a2a.SendMessageRequest{Message: quoteMessage("quote", map[string]any{"kg": 4})})
	if err != nil {
		t.Fatalf("SendMessage: %v", err)
	}
	task, ok := res.(*a2a.Task)
	if !ok || task.Status.State != a2a.TaskStateCompleted || len(task.Artifacts) != 1 {
		t.Fatalf("SendMessage over gRPC: %#v, want a completed task", res)
	}
	if got, _ := task.Artifacts[0].Parts[0].Data().(map[string]any); got["price"] != 10.0 {
		t.Errorf("artifact %v, want the price for 4 kg", got)
	}
}
