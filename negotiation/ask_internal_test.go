package negotiation

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/parleynet/parley/identity"
)

// TestAskerTakesOnlyTheAnswerItWaitsFor: a winner's node takes an answer
// frame only while its question is open, only one per question and only
// within MaxAnswer; anything else is a protocol break, for which the
// stream's reader resets the stream (contractor.go).
func TestAskerTakesOnlyTheAnswerItWaitsFor(t *testing.T) {
	s := localService(t)
	key, err := identity.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	agent, err := identity.NewAgent("asker", key)
	if err != nil {
		t.Fatal(err)
	}
	c := &contract{s: s, agent: agent, call: Call{Task: "t1", Capability: "echo"}}
	sent := make(chan wire, 1)
	a := newAsker(c, context.Background(), func(typ string, w wire) error {
		if typ == msgAsk {
			sent <- w
		}
		return nil
	})
	answer := func(in string) bool { return a.deliver(wire{Task: "t1", Input: json.RawMessage(in)}) }
	if answer(`"early"`) {
		t.Fatal("an answer before any question was taken")
	}
	got := make(chan string, 1)
	go func() {
		in, err := a.ask(context.Background(), "which size?", nil)
		if err != nil {
			got <- "error: " + err.Error()
			return
		}
		got <- string(in)
	}()
	select {
	case w := <-sent:
		if w.Note != "which size?" || w.Round != 1 {
			t.Fatalf("ask frame %+v, want the question as round 1", w)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no ask frame was sent")
	}
	if ti := c.info(); ti.State != StateInputRequired || ti.Question == nil || ti.Question.Note != "which size?" {
		t.Fatalf("while asking: %s, question %+v; want input-required with the question", ti.State, ti.Question)
	}
	if answer(`"` + strings.Repeat("x", DefaultMaxAnswer) + `"`) {
		t.Error("an answer over MaxAnswer was taken")
	}
	if answer(``) {
		t.Error("an empty answer was taken")
	}
	if !answer(`"M"`) {
		t.Fatal("the answer to the open question was refused")
	}
	if answer(`"L"`) {
		t.Error("a second answer to one question was taken")
	}
	if in := <-got; in != `"M"` {
		t.Fatalf("Ask returned %s, want the answer", in)
	}
	if ti := c.info(); ti.State != StateWorking || ti.Question != nil {
		t.Errorf("after the answer: %s, question %+v; want working, no question", ti.State, ti.Question)
	}
}
