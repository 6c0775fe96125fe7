package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"time"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/node"
)

// The examples listen on loopback only; a zero ListenAddrs listens on
// every interface, TCP and QUIC.
var loopback = []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/0")}

// A zero Config is a working node: a fresh identity and one agent named
// "default".
func ExampleNew() {
	n, err := node.New(node.Config{ListenAddrs: loopback})
	if err != nil {
		log.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		log.Fatal(err)
	}
	defer n.Close()
	for _, a := range n.Agents() {
		fmt.Println(a.Name)
	}
	// Output: default
}

// A contractor and a requester on two nodes: the requester joins the
// contractor's node by address, waits until a call would reach it, and
// negotiates.
func ExampleNode_Request() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	seller, err := node.New(node.Config{ListenAddrs: loopback})
	if err != nil {
		log.Fatal(err)
	}
	if err := seller.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer seller.Close()
	quoter := negotiation.HandlerFuncs{
		BidFunc: func(ctx context.Context, call negotiation.Call) (negotiation.Bid, error) {
			return negotiation.Bid{Price: 3, ETA: 200 * time.Millisecond, Rationale: "flat rate"}, nil
		},
		WorkFunc: func(ctx context.Context, task negotiation.Task) (json.RawMessage, error) {
			return json.RawMessage(`{"eur":3}`), nil
		},
	}
	if _, err := seller.AddAgent(node.AgentCard{Name: "quoter", Capabilities: []string{"quote.shipping"}}, quoter); err != nil {
		log.Fatal(err)
	}

	buyer, err := node.New(node.Config{ListenAddrs: loopback, Bootstrap: []string{seller.Addrs()[0].String()}})
	if err != nil {
		log.Fatal(err)
	}
	if err := buyer.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer buyer.Close()
	if err := buyer.WaitReady(ctx, "quote.shipping"); err != nil {
		log.Fatal("wait: ", err)
	}
	out, err := buyer.Request(ctx, negotiation.Need{Capability: "quote.shipping", Input: json.RawMessage(`{"kg":2}`)},
		negotiation.WithBidWindow(300*time.Millisecond))
	if err != nil {
		log.Fatal("request: ", err)
	}
	fmt.Println(out.State, "by", out.WinnerName, string(out.Result))
	// Output: completed by quoter {"eur":3}
}

// An intent published on one node reaches the subscribers of its
// capability on the others.
func ExampleNode_Subscribe() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	listener, err := node.New(node.Config{ListenAddrs: loopback})
	if err != nil {
		log.Fatal(err)
	}
	if err := listener.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer listener.Close()
	sub, err := listener.Subscribe(ctx, "weather.alert")
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()

	speaker, err := node.New(node.Config{ListenAddrs: loopback, Bootstrap: []string{listener.Addrs()[0].String()}})
	if err != nil {
		log.Fatal(err)
	}
	if err := speaker.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer speaker.Close()
	if err := speaker.WaitReady(ctx, "weather.alert"); err != nil {
		log.Fatal("wait: ", err)
	}
	if _, err := speaker.Publish(ctx, node.PublishRequest{Capability: "weather.alert", Payload: json.RawMessage(`{"storm":"north"}`)}); err != nil {
		log.Fatal(err)
	}
	in, err := sub.Next(ctx)
	if err != nil {
		log.Fatal("next: ", err)
	}
	fmt.Println(in.Capability, string(in.Payload))
	// Output: weather.alert {"storm":"north"}
}
