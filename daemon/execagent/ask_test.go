package execagent_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/parleynet/parley/daemon/execagent"
	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/node"
	"github.com/parleynet/parley/node/nodetest"
)

// TestExecAgentAsks: a command's execute run that prints an ask makes the
// task input-required on the requester's node, with its note and schema;
// the requester's answer comes back in the next run's "answers", which
// completes. A command that never stops asking is failed by the node's
// bound on questions, not left to wait.
func TestExecAgentAsks(t *testing.T) {
	cases := []struct {
		name    string
		command []string
		answers int    // how many questions the requester answers
		result  string // the outcome's result, or "" when the task fails
		reason  string // in the failure's reason
	}{
		{"asks once", []string{"sh", "../../examples/shell/sizer.sh"}, 1, `{"size":"M"}`, ""},
		{"asks forever", []string{"sh", "-c", `case "$(cat)" in *'"phase":"bid"'*) echo '{"bid":{"price":1,"eta":"1s"}}';; *) echo '{"ask":{"note":"which size?"}}';; esac`},
			negotiation.DefaultMaxAsks, "", "questions"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := nodetest.NewMesh(t, 2)
			sizer := &execagent.Agent{Name: "sizer", Command: tc.command, Timeout: 5 * time.Second}
			if _, err := m.Nodes[1].AddAgent(node.AgentCard{Name: "sizer", Capabilities: []string{"size"}}, sizer); err != nil {
				t.Fatal(err)
			}
			nodetest.WaitTopic(t, context.Background(), "size", m.Nodes[0])
			asked := make(chan negotiation.Update, negotiation.DefaultMaxAsks+1)
			type res struct {
				out *negotiation.Outcome
				err error
			}
			done := make(chan res, 1)
			go func() {
				out, err := m.Nodes[0].Request(context.Background(), negotiation.Need{Capability: "size", Input: json.RawMessage(`{"item":"shirt"}`)},
					negotiation.WithBidWindow(200*time.Millisecond), negotiation.WithTimeout(15*time.Second),
					negotiation.WithUpdates(func(u negotiation.Update) {
						if u.State == negotiation.StateInputRequired {
							asked <- u
						}
					}))
				done <- res{out, err}
			}()
			for i := range tc.answers {
				var u negotiation.Update
				select {
				case u = <-asked:
				case r := <-done:
					t.Fatalf("the task ended before question %d: %v %+v", i+1, r.err, r.out)
				}
				if u.Question == nil || u.Question.Note != "which size?" || u.Question.Ask != i+1 {
					t.Fatalf("question %d: %+v, want which size?", i+1, u.Question)
				}
				if i == 0 && tc.result != "" && !strings.Contains(string(u.Question.Schema), `"enum"`) {
					t.Errorf("schema %s, want the script's enum", u.Question.Schema)
				}
				if err := m.Nodes[0].AnswerTask(context.Background(), u.Task, json.RawMessage(`"M"`)); err != nil {
					t.Fatalf("AnswerTask %d: %v", i+1, err)
				}
			}
			r := <-done
			if tc.result != "" {
				if r.err != nil || r.out.State != negotiation.StateCompleted || string(r.out.Result) != tc.result {
					t.Fatalf("Request: %v, %+v; want completed with %s", r.err, r.out, tc.result)
				}
				return
			}
			if r.out == nil || r.out.State != negotiation.StateFailed || !strings.Contains(r.out.Reason, tc.reason) {
				t.Fatalf("Request: %v, %+v; want failed, the reason naming %q", r.err, r.out, tc.reason)
			}
		})
	}
}
