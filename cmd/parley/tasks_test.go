package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parleynet/parley/negotiation"
)

func TestPrintOutcome(t *testing.T) {
	win := "did:key:z6MkWinnerWinnerWinnerWinner12345678"
	const peerID = "12D3KooWN648uHsYTMuaZesnVrZRBMRr88p2PjWNfZuPKNDMp2m1"
	p, err := peer.Decode(peerID)
	if err != nil {
		t.Fatal(err)
	}
	out := &negotiation.Outcome{
		Task: "t1", Capability: "echo", State: negotiation.StateCompleted, Calls: 1,
		Winner: "did:key:z6MkWinnerWinnerWinnerWinner12345678", WinnerPeer: p,
		Rationale: "ranked 1 of 2 by cheapest (price 1, eta 20ms)",
		Bids: []negotiation.BidInfo{
			{Agent: "did:key:z6MkWinnerWinnerWinnerWinner12345678", Bid: negotiation.Bid{Price: 1, ETA: 20 * time.Millisecond}, Call: 1, Rank: 1, Status: "completed"},
			{Agent: "did:key:z6MkLoserLoserLoserLoserLoser87654321", Bid: negotiation.Bid{Price: 2.5, ETA: time.Second}, Call: 1, Rank: 2, Status: "rejected", Note: "awarded to another bid"},
		},
		Result:  json.RawMessage(`{"x":1}`),
		Timings: negotiation.Timings{Negotiation: 312 * time.Millisecond, Work: 3141 * time.Microsecond, Total: 315 * time.Millisecond},
		History: []negotiation.Transition{
			{State: negotiation.StateNegotiating, Note: "call 1 of 3"},
			{State: negotiation.StateNegotiating, Note: "awarded to …12345678: ranked 1 of 2 by cheapest (price 1, eta 20ms)"},
			{State: negotiation.StateCompleted},
		},
	}
	var b strings.Builder
	if err := printOutcome(&b, out); err != nil {
		t.Fatal(err)
	}
	want := `task: t1 (echo, 1 call(s))
bid: …12345678 price 1 eta 20ms completed rank 1 call 1
bid: …87654321 price 2.5 eta 1s rejected rank 2 call 1 (awarded to another bid)
winner: ` + win + ` on ` + peerID + `
award: ranked 1 of 2 by cheapest (price 1, eta 20ms)
result: {"x":1}
timings: negotiation 312ms, work 3.1ms, total 315ms
state: completed
`
	if b.String() != want {
		t.Fatalf("printed\n%s\nwant\n%s", b.String(), want)
	}
}
