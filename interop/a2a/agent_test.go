package a2a_test

import (
	"context"
	"encoding/json"
	"errors"
	"iter"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/a2aproject/a2a-go/v2/a2a"
	"github.com/a2aproject/a2a-go/v2/a2asrv"

	parleya2a "github.com/parleynet/parley/interop/a2a"
	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/node"
)

// shouter is an A2A agent built on a2a-go's server: skill "shout" upper-
// cases {"text":…} after a status update; skill "fail" fails; skill "ask"
// asks "how loud?" (input-required) and shouts the text of the answer;
// skill "auth" wants the client to sign in (auth-required).
type shouter struct{}

func (shouter) Execute(_ context.Context, ec *a2asrv.ExecutorContext) iter.Seq2[a2a.Event, error] {
	return func(yield func(a2a.Event, error) bool) {
		if ec.StoredTask != nil { // the answer to "how loud?"
			loud := ec.Message.Parts[0].Text()
			if !yield(a2a.NewArtifactEvent(ec, a2a.NewDataPart(map[string]any{"text": strings.ToUpper(loud) + "!"})), nil) {
				return
			}
			yield(a2a.NewStatusUpdateEvent(ec, a2a.TaskStateCompleted, nil), nil)
			return
		}
		if !yield(a2a.NewSubmittedTask(ec, ec.Message), nil) {
			return
		}
		skill, _ := ec.Message.Metadata["skill"].(string)
		if skill == "ask" {
			yield(a2a.NewStatusUpdateEvent(ec, a2a.TaskStateInputRequired, a2a.NewMessageForTask(a2a.MessageRoleAgent, ec, a2a.NewTextPart("how loud?"))), nil)
			return
		}
		if skill == "auth" {
			yield(a2a.NewStatusUpdateEvent(ec, a2a.TaskStateAuthRequired, a2a.NewMessageForTask(a2a.MessageRoleAgent, ec, a2a.NewTextPart("sign in first"))), nil)
			return
		}
		if skill == "fail" {
			yield(a2a.NewStatusUpdateEvent(ec, a2a.TaskStateFailed, a2a.NewMessageForTask(a2a.MessageRoleAgent, ec, a2a.NewTextPart("no voice left"))), nil)
			return
		}
		if !yield(a2a.NewStatusUpdateEvent(ec, a2a.TaskStateWorking, a2a.NewMessageForTask(a2a.MessageRoleAgent, ec, a2a.NewTextPart("taking a breath"))), nil) {
			return
		}
		in, _ := ec.Message.Parts[0].Data().(map[string]any)
		text, _ := in["text"].(string)
		if !yield(a2a.NewArtifactEvent(ec, a2a.NewDataPart(map[string]any{"text": strings.ToUpper(text)})), nil) {
			return
		}
		yield(a2a.NewStatusUpdateEvent(ec, a2a.TaskStateCompleted, nil), nil)
	}
}

func (shouter) Cancel(_ context.Context, ec *a2asrv.ExecutorContext) iter.Seq2[a2a.Event, error] {
	return func(yield func(a2a.Event, error) bool) {
		yield(a2a.NewStatusUpdateEvent(ec, a2a.TaskStateCanceled, nil), nil)
	}
}

// startShouter serves shouter on loopback: JSON-RPC at /, its card at the
// well-known path. It returns the base URL.
func startShouter(t *testing.T) string {
	t.Helper()
	return serveA2A(t, "Shouter", shouter{}, []a2a.AgentSkill{{ID: "shout", Name: "Shout"}, {ID: "fail", Name: "Fail"}, {ID: "ask", Name: "Ask"}, {ID: "auth", Name: "Auth"}, {ID: "Not A Capability!", Name: "x"}})
}

// serveA2A serves exec as an A2A agent on a2a-go's server on loopback,
// streaming, with skills on its card: JSON-RPC at /, its card at the
// well-known path. It returns the base URL.
func serveA2A(t *testing.T, name string, exec a2asrv.AgentExecutor, skills []a2a.AgentSkill) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	card := &a2a.AgentCard{Name: name, Description: name, Version: "1",
		SupportedInterfaces: []*a2a.AgentInterface{a2a.NewAgentInterface(base+"/", a2a.TransportProtocolJSONRPC)},
		Capabilities:        a2a.AgentCapabilities{Streaming: true},
		DefaultInputModes:   []string{"application/json"}, DefaultOutputModes: []string{"application/json"},
		Skills: skills}
	mux := http.NewServeMux()
	mux.Handle("/", a2asrv.NewJSONRPCHandler(a2asrv.NewHandler(exec)))
	mux.Handle(a2asrv.WellKnownAgentCardPath, a2asrv.NewStaticAgentCardHandler(card))
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return base
}

// An A2A agent (a2a-go's server) joins the mesh as a contractor: its card
// gives the capabilities, it bids at its price and wins a negotiation
// started on another node, its status update arriving as progress.
func TestA2AAgentWinsANegotiation(t *testing.T) {
	base := startShouter(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ag, err := parleya2a.NewAgent(ctx, parleya2a.AgentConfig{Name: "shouter", URL: base, Price: 2, ETA: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer ag.Close()
	if got := strings.Join(ag.Capabilities(), ","); got != "shout,fail,ask,auth" {
		t.Fatalf("capabilities from the card: %s, want shout,fail,ask,auth (the skill that is no capability name left out)", got)
	}
	requester := loopbackNode(t, nil)
	contractor := loopbackNode(t, requester)
	if _, err := contractor.AddAgent(node.AgentCard{Name: "shouter", Capabilities: ag.Capabilities()}, ag); err != nil {
		t.Fatal(err)
	}
	if err := requester.WaitReady(ctx, "shout"); err != nil {
		t.Fatal(err)
	}
	var notes []string
	out, err := requester.Request(ctx, negotiation.Need{Capability: "shout", Input: json.RawMessage(`{"text":"hello mesh"}`)},
		negotiation.WithBidWindow(200*time.Millisecond),
		negotiation.WithUpdates(func(u negotiation.Update) {
			if u.Progress {
				notes = append(notes, u.Note)
			}
		}))
	if err != nil {
		t.Fatalf("Request: %v", err)
	}
	if out.WinnerName != "shouter" || string(out.Result) != `{"text":"HELLO MESH"}` {
		t.Errorf("outcome: winner %q, result %s; want shouter's HELLO MESH", out.WinnerName, out.Result)
	}
	if len(out.Bids) != 1 || out.Bids[0].Price != 2 || out.Bids[0].ETA != time.Second {
		t.Errorf("bids %+v, want shouter's at price 2, eta 1s", out.Bids)
	}
	if strings.Join(notes, "|") != "taking a breath" {
		t.Errorf("progress %q, want the A2A agent's status note", notes)
	}

	// Its failure is the task's, with its reason; a budget under its
	// price gets no bid.
	out, err = requester.Request(ctx, negotiation.Need{Capability: "fail", Input: json.RawMessage(`{}`)},
		negotiation.WithBidWindow(200*time.Millisecond), negotiation.WithCalls(1))
	if !errors.Is(err, negotiation.ErrTaskFailed) || !strings.Contains(out.Reason, "no voice left") {
		t.Errorf("failing skill: %v, reason %q; want failed with the A2A agent's message", err, out.Reason)
	}
	// One that wants its client to sign in fails the task, saying how
	// the operator gives it a credential.
	out, err = requester.Request(ctx, negotiation.Need{Capability: "auth", Input: json.RawMessage(`{}`)},
		negotiation.WithBidWindow(200*time.Millisecond), negotiation.WithCalls(1))
	if !errors.Is(err, negotiation.ErrTaskFailed) || !strings.Contains(out.Reason, "sign in first") || !strings.Contains(out.Reason, "a2a_token_file") {
		t.Errorf("auth-required skill: %v, reason %q; want failed with the agent's message and the way to give it a token", err, out.Reason)
	}
	out, err = requester.Request(ctx, negotiation.Need{Capability: "shout", Budget: 1, Input: json.RawMessage(`{}`)},
		negotiation.WithBidWindow(200*time.Millisecond), negotiation.WithCalls(1))
	if !errors.Is(err, negotiation.ErrTaskFailed) || len(out.Bids) != 1 || out.Bids[0].Status != "refused" {
		t.Errorf("budget under the price: %v, bids %+v; want shouter's refusal", err, out.Bids)
	}
}

// A card that cannot be had, or lacks a listed skill, is an error at
// NewAgent naming the URL.
func TestNewAgentChecksTheCard(t *testing.T) {
	base := startShouter(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name string
		cfg  parleya2a.AgentConfig
		want string
	}{
		{"missing skill", parleya2a.AgentConfig{URL: base, Capabilities: []string{"whisper"}}, `no skill "whisper"`},
		{"card URL", parleya2a.AgentConfig{URL: base + "/.well-known/agent-card.json", Capabilities: []string{"shout"}}, ""},
		{"no card there", parleya2a.AgentConfig{URL: base + "/nothing.json"}, "no agent card"},
		{"nobody there", parleya2a.AgentConfig{URL: "http://127.0.0.1:1"}, "fetch from"},
		{"not http", parleya2a.AgentConfig{URL: "ftp://x"}, "want an http:// or https:// URL"},
		{"negative price", parleya2a.AgentConfig{URL: base, Price: -1}, "price -1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Name = "x"
			ag, err := parleya2a.NewAgent(ctx, tc.cfg)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("NewAgent: %v", err)
				}
				ag.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				ag.Close()
				t.Fatalf("NewAgent: %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

// A remote A2A agent that answers TASK_STATE_INPUT_REQUIRED asks the
// requester through the mesh: its status message is the question, the
// requester's answer goes to the same remote task, and its end is the
// task's.
func TestA2AAgentAsksTheRequester(t *testing.T) {
	base := startShouter(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ag, err := parleya2a.NewAgent(ctx, parleya2a.AgentConfig{Name: "shouter", URL: base, Price: 2, Capabilities: []string{"ask"}})
	if err != nil {
		t.Fatal(err)
	}
	defer ag.Close()
	requester := loopbackNode(t, nil)
	contractor := loopbackNode(t, requester)
	if _, err := contractor.AddAgent(node.AgentCard{Name: "shouter", Capabilities: ag.Capabilities()}, ag); err != nil {
		t.Fatal(err)
	}
	if err := requester.WaitReady(ctx, "ask"); err != nil {
		t.Fatal(err)
	}
	var question string
	out, err := requester.Request(ctx, negotiation.Need{Capability: "ask", Input: json.RawMessage(`{}`)},
		negotiation.WithBidWindow(200*time.Millisecond),
		negotiation.WithUpdates(func(u negotiation.Update) {
			if u.State == negotiation.StateInputRequired {
				question = u.Question.Note
				go func() { _ = requester.AnswerTask(ctx, u.Task, json.RawMessage(`"very"`)) }()
			}
		}))
	if err != nil {
		t.Fatalf("Request: %v", err)
	}
	if question != "how loud?" || string(out.Result) != `{"text":"VERY!"}` {
		t.Errorf("question %q, result %s; want how loud? and the answer shouted", question, out.Result)
	}
}
