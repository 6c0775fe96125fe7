package negotiation_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parleynet/parley/audit"
	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/node"
	"github.com/parleynet/parley/node/nodetest"
)

// askingWork asks one question and returns the input with the answer.
func askingWork(ctx context.Context, task negotiation.Task) (json.RawMessage, error) {
	if task.Ask == nil {
		return nil, errors.New("cannot ask")
	}
	ans, err := task.Ask(ctx, "which size?", json.RawMessage(`{"type":"string","enum":["S","M","L"]}`))
	if err != nil {
		return nil, fmt.Errorf("ask: %w", err)
	}
	return json.RawMessage(fmt.Sprintf(`{"input":%s,"answer":%s}`, task.Input, ans)), nil
}

func countOf(l []string, s string) int {
	n := 0
	for _, x := range l {
		if x == s {
			n++
		}
	}
	return n
}

// waitState waits for task on n to be in st and returns it.
func waitState(t *testing.T, n *node.Node, task string, role negotiation.Role, st negotiation.State) negotiation.TaskInfo {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		for _, ti := range n.Tasks() {
			if ti.Task == task && ti.Role == role && ti.State == st {
				return ti
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s (%s) never %s on %s: %+v", task, role, st, n.ID(), n.Tasks())
		}
	}
}

// A winner asks its requester a question: the task is input-required on
// both sides with the question in TaskInfo and an update, stays so past
// the progress timeout (the requester's human may be slow), and the
// answer goes to the winner, whose result uses it. Both audit logs record
// the ask and the answer. The same holds for a node's own agent.
func TestAskInputRequiredThenAnswer(t *testing.T) {
	for _, tc := range []struct {
		name      string
		nodes, at int
	}{{"remote winner", 2, 1}, {"the node's own agent", 1, 0}} {
		t.Run(tc.name, func(t *testing.T) {
			dirs := make([]string, tc.nodes)
			logs := make([]*audit.Log, tc.nodes)
			m := nodetest.NewMesh(t, tc.nodes, nodetest.WithConfig(func(i int, c *node.Config) {
				c.PublishWait = 50 * time.Millisecond
				dirs[i] = t.TempDir()
				var err error
				if logs[i], err = audit.Open(dirs[i], c.NodeKey, audit.Options{}); err != nil {
					t.Fatal(err)
				}
				c.AuditLog = logs[i]
			}))
			if _, err := m.Nodes[tc.at].AddAgent(node.AgentCard{Name: "asker", Capabilities: []string{"echo"}},
				&testAgent{spec: agentSpec{name: "asker", price: 1, work: askingWork}}); err != nil {
				t.Fatal(err)
			}
			if tc.at != 0 {
				nodetest.WaitTopic(t, context.Background(), "echo", m.Nodes[0])
			}
			t.Cleanup(func() {
				for _, l := range logs {
					_ = l.Close()
				}
			})
			asked := make(chan negotiation.Update, 4)
			type res struct {
				out *negotiation.Outcome
				err error
			}
			done := make(chan res, 1)
			go func() {
				out, err := request(t, m.Nodes[0], `{"item":"shirt"}`, negotiation.WithProgressTimeout(150*time.Millisecond), negotiation.WithEnoughBids(1),
					negotiation.WithUpdates(func(u negotiation.Update) {
						if u.State == negotiation.StateInputRequired {
							asked <- u
						}
					}))
				done <- res{out, err}
			}()
			var u negotiation.Update
			select {
			case u = <-asked:
			case r := <-done:
				t.Fatalf("the task ended before its winner asked: %v %+v", r.err, r.out)
			}
			if u.Question == nil || u.Question.Note != "which size?" || u.Note != "which size?" || !strings.Contains(string(u.Question.Schema), `"enum"`) {
				t.Fatalf("input-required update %+v, want the question and its schema", u)
			}
			ti := waitState(t, m.Nodes[0], u.Task, negotiation.RoleRequester, negotiation.StateInputRequired)
			if ti.Question == nil || ti.Question.Note != "which size?" || ti.Question.Ask != 1 {
				t.Errorf("requester's TaskInfo question %+v, want which size? (ask 1)", ti.Question)
			}
			if ci := waitState(t, m.Nodes[tc.at], u.Task, negotiation.RoleContractor, negotiation.StateInputRequired); ci.Question == nil {
				t.Errorf("contractor's TaskInfo has no question")
			}
			// The requester's human takes longer than the progress timeout;
			// the winner's keepalives hold the task.
			time.Sleep(400 * time.Millisecond)
			ctx := context.Background()
			if err := m.Nodes[0].AnswerTask(ctx, "nosuchtask", json.RawMessage(`"M"`)); !errors.Is(err, negotiation.ErrUnknownTask) {
				t.Errorf("AnswerTask(unknown) = %v, want ErrUnknownTask", err)
			}
			if err := m.Nodes[0].AnswerTask(ctx, u.Task, json.RawMessage(`{bad`)); !errors.Is(err, negotiation.ErrBadAnswer) {
				t.Errorf("AnswerTask(bad JSON) = %v, want ErrBadAnswer", err)
			}
			if err := m.Nodes[0].AnswerTask(ctx, u.Task, json.RawMessage(`"M"`)); err != nil {
				t.Fatalf("AnswerTask: %v", err)
			}
			if err := m.Nodes[0].AnswerTask(ctx, u.Task, json.RawMessage(`"L"`)); !errors.Is(err, negotiation.ErrNoQuestion) {
				t.Errorf("a second AnswerTask = %v, want ErrNoQuestion", err)
			}
			r := <-done
			if r.err != nil || string(r.out.Result) != `{"input":{"item":"shirt"},"answer":"M"}` {
				t.Fatalf("Request: %v, result %s; want the input and the answer", r.err, r.out.Result)
			}
			want := []negotiation.State{negotiation.StateSubmitted, negotiation.StateNegotiating, negotiation.StateWorking,
				negotiation.StateInputRequired, negotiation.StateWorking, negotiation.StateCompleted}
			if got := states(r.out); !slices.Equal(got, want) {
				t.Errorf("states %v, want %v", got, want)
			}
			if ti, _ := m.Nodes[0].Task(u.Task); ti.Question != nil {
				t.Errorf("an ended task still shows a question: %+v", ti.Question)
			}
			waitState(t, m.Nodes[tc.at], u.Task, negotiation.RoleContractor, negotiation.StateCompleted)
			for i := range tc.nodes {
				kinds := auditKinds(t, dirs[i], u.Task)
				want := 1
				if tc.nodes == 1 {
					want = 2 // both sides in one log
				}
				for _, k := range []string{"ask", "answer"} {
					if n := countOf(kinds, k); n != want {
						t.Errorf("node %d's audit records of the task %v: %d %q, want %d", i, kinds, n, k, want)
					}
				}
			}
		})
	}
}

// The bounds on questions hold on both sides, a canceled or expired task
// ends the wait, and a requester's node that answers no questions gives
// its winner no Ask.
func TestAskBounds(t *testing.T) {
	big := strings.Repeat("?", negotiation.DefaultMaxQuestion+1)
	cases := []struct {
		name string
		// contractor and requester node MaxAsks and contractor MaxQuestion (0: default)
		conAsks, reqAsks, conQuestion int
		work                          func(ctx context.Context, task negotiation.Task) (json.RawMessage, error)
		// then is what the requester does once asked; nil answers each question with its number
		then       func(t *testing.T, n *node.Node, task string)
		timeout    time.Duration
		wantState  negotiation.State
		wantResult string
		wantReason string
	}{
		{name: "the handler's fourth question is refused by its own node", wantState: negotiation.StateCompleted, wantResult: `[1,2,3,"too many questions"]`,
			work: func(ctx context.Context, task negotiation.Task) (json.RawMessage, error) {
				var got []any
				for range 4 {
					a, err := task.Ask(ctx, "n?", nil)
					if errors.Is(err, negotiation.ErrTooManyAsks) {
						got = append(got, "too many questions")
						break
					} else if err != nil {
						return nil, err
					}
					var n int
					_ = json.Unmarshal(a, &n)
					got = append(got, n)
				}
				return json.Marshal(got)
			}},
		{name: "a winner past the requester's bound is reset", conAsks: 10, reqAsks: 1, wantState: negotiation.StateFailed,
			wantReason: "asked 2 questions, this node's limit is 1",
			work: func(ctx context.Context, task negotiation.Task) (json.RawMessage, error) {
				for {
					if _, err := task.Ask(ctx, "again?", nil); err != nil {
						return nil, err
					}
				}
			}},
		{name: "a question over the requester's bound is refused", conQuestion: 1 << 20, wantState: negotiation.StateFailed,
			wantReason: "sent a bad question: question of 4097 bytes",
			work: func(ctx context.Context, task negotiation.Task) (json.RawMessage, error) {
				return task.Ask(ctx, big, nil)
			}},
		{name: "an answer over the bound is refused, then cancel ends the wait", wantState: negotiation.StateCanceled,
			wantReason: "canceled by the requester",
			work:       askingWork,
			then: func(t *testing.T, n *node.Node, task string) {
				huge := json.RawMessage(`"` + strings.Repeat("x", negotiation.DefaultMaxAnswer) + `"`)
				if err := n.AnswerTask(context.Background(), task, huge); !errors.Is(err, negotiation.ErrTooLarge) {
					t.Errorf("AnswerTask(%d bytes) = %v, want ErrTooLarge", len(huge), err)
				}
				if err := n.CancelTask(task); err != nil {
					t.Errorf("CancelTask: %v", err)
				}
			}},
		// Both sides' deadlines end it: whichever fires first says why.
		{name: "the task's deadline ends an unanswered question", timeout: 1200 * time.Millisecond, wantState: negotiation.StateFailed,
			work: askingWork, then: func(*testing.T, *node.Node, string) {}},
		{name: "a requester that answers nothing gives its winner no Ask", reqAsks: -1, wantState: negotiation.StateCompleted, wantResult: `"no Ask"`,
			work: func(ctx context.Context, task negotiation.Task) (json.RawMessage, error) {
				if task.Ask != nil {
					return json.RawMessage(`"Ask"`), nil
				}
				return json.RawMessage(`"no Ask"`), nil
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, _ := newNegMeshOpts(t, 2, []nodetest.Option{nodetest.WithConfig(func(i int, c *node.Config) {
				if i == 0 {
					c.Negotiation.MaxAsks = tc.reqAsks
					return
				}
				c.Negotiation.MaxAsks, c.Negotiation.MaxQuestion = tc.conAsks, tc.conQuestion
			})}, agentSpec{node: 1, name: "asker", price: 1, work: tc.work})
			timeout := tc.timeout
			if timeout == 0 {
				timeout = 10 * time.Second
			}
			ctx := context.Background()
			n := m.Nodes[0]
			opts := []negotiation.RequestOption{negotiation.WithEnoughBids(1), negotiation.WithCalls(1), negotiation.WithTimeout(timeout),
				negotiation.WithUpdates(func(u negotiation.Update) {
					if u.State != negotiation.StateInputRequired {
						return
					}
					if tc.then != nil {
						go tc.then(t, n, u.Task)
						return
					}
					go func() { _ = n.AnswerTask(ctx, u.Task, json.RawMessage(fmt.Sprint(u.Question.Ask))) }()
				})}
			out, err := request(t, n, `{}`, opts...)
			if out == nil {
				t.Fatalf("Request: %v", err)
			}
			if out.State != tc.wantState || !strings.Contains(out.Reason, tc.wantReason) || (tc.wantResult != "" && string(out.Result) != tc.wantResult) {
				t.Fatalf("outcome %s (%q), result %s; want %s (%q) %s", out.State, out.Reason, out.Result, tc.wantState, tc.wantReason, tc.wantResult)
			}
			if tc.timeout > 0 && out.Timings.Total < tc.timeout-100*time.Millisecond {
				t.Errorf("the task ended after %s, before its deadline of %s", out.Timings.Total, tc.timeout)
			}
		})
	}
}
