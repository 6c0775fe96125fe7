package negotiation_test

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parleynet/parley/audit"
	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/node"
	"github.com/parleynet/parley/node/nodetest"
	"github.com/parleynet/parley/policy"
)

// auditKinds reads the kinds of a log's records about task, in order.
func auditKinds(t *testing.T, dir, task string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var r audit.Record
			if json.Unmarshal(sc.Bytes(), &r) == nil && r.Task == task {
				kinds = append(kinds, r.Kind)
			}
		}
		_ = fh.Close()
	}
	return kinds
}

// TestSelfCalls: a node's own agents bid on its own calls, in-process,
// ranked with remote bids, under the same policy, and recorded in the
// audit log on both sides; the requesting agent never bids on its own
// call; a call nobody can take says why.
func TestSelfCalls(t *testing.T) {
	cases := []struct {
		name       string
		nodes      int
		local      float64 // the local agent's price (0: none)
		remote     float64 // node 1's agent's price (0: none)
		as         string  // the requesting agent ("" default; "local" is the local contractor itself)
		policy     string  // node 0's policy
		wantWinner string  // "local", "remote", or "" for a failure
		wantReason string
	}{
		{name: "alone, the node's own agent does the work", nodes: 1, local: 2, wantWinner: "local"},
		{name: "local bid cheaper than the remote one wins", nodes: 2, local: 2, remote: 3, wantWinner: "local"},
		{name: "remote bid cheaper than the local one wins", nodes: 2, local: 4, remote: 3, wantWinner: "remote"},
		{name: "the requester does not bid on its own call", nodes: 1, local: 2, as: "local", wantReason: "no capable agent found"},
		{name: "alone with no capable agent", nodes: 1, wantReason: "no capable agent found: no peer is on the echo topic and no other agent of this node offers it"},
		{name: "policy forbids the local agent to offer it", nodes: 1, local: 2, policy: "agents: {local: {offer: [other]}}",
			wantReason: "every agent asked refused; local: not bidding"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var alog *audit.Log
			m := nodetest.NewMesh(t, tc.nodes, nodetest.WithConfig(func(i int, c *node.Config) {
				c.PublishWait = 50 * time.Millisecond // alone on the topic: do not wait long for peers
				if i != 0 {
					return
				}
				var err error
				if alog, err = audit.Open(dir, c.NodeKey, audit.Options{}); err != nil {
					t.Fatal(err)
				}
				c.AuditLog = alog
				if tc.policy != "" {
					p, err := policy.Parse([]byte(tc.policy), "test.yaml")
					if err != nil {
						t.Fatal(err)
					}
					c.Policy = p
				}
			}))
			t.Cleanup(func() { _ = alog.Close() })
			ids := map[string]string{}
			add := func(i int, name string, price float64) {
				a, err := m.Nodes[i].AddAgent(node.AgentCard{Name: name, Capabilities: []string{"echo"}}, &testAgent{spec: agentSpec{name: name, price: price}})
				if err != nil {
					t.Fatal(err)
				}
				ids[string(a.ID)] = name
			}
			if tc.local > 0 {
				add(0, "local", tc.local)
			}
			if tc.remote > 0 {
				add(1, "remote", tc.remote)
				nodetest.WaitTopic(t, context.Background(), "echo", m.Nodes[0])
			}
			out, err := request(t, m.Nodes[0], `{"n":1}`, negotiation.WithAgent(tc.as), negotiation.WithCalls(1))
			if tc.wantWinner == "" {
				if err == nil || !strings.Contains(out.Reason, tc.wantReason) {
					t.Fatalf("Request: %v; reason %q, want it to say %q", err, out.Reason, tc.wantReason)
				}
				return
			}
			if err != nil {
				t.Fatalf("Request: %v", err)
			}
			if got := ids[string(out.Winner)]; got != tc.wantWinner || string(out.Result) != `{"n":1}` {
				t.Fatalf("winner %q with result %s, want %s with the input echoed (bids %+v)", got, out.Result, tc.wantWinner, out.Bids)
			}
			if len(out.Bids) != tc.nodes {
				t.Errorf("%d bids, want one per node: %+v", len(out.Bids), out.Bids)
			}
			for _, b := range out.Bids {
				if ids[string(b.Agent)] == "local" && b.Peer != m.Nodes[0].ID() {
					t.Errorf("the local bid names peer %s, want this node %s", b.Peer, m.Nodes[0].ID())
				}
			}
			if tc.wantWinner != "local" {
				return
			}
			// Both sides of the self-call are in the node's task list and
			// in its audit log: the requester's award and the contractor's
			// commitment, as for a remote one.
			ti, err := m.Nodes[0].Task(out.Task)
			if err != nil || ti.Role != negotiation.RoleRequester {
				t.Fatalf("Task: %+v, %v; want the requester's view", ti, err)
			}
			var contractor bool
			for deadline := time.Now().Add(5 * time.Second); !contractor && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				for _, ti := range m.Nodes[0].Tasks() {
					contractor = contractor || ti.Task == out.Task && ti.Role == negotiation.RoleContractor && ti.State == negotiation.StateCompleted
				}
			}
			if !contractor {
				t.Errorf("the node does not list its agent's side of the task as completed")
			}
			kinds := strings.Join(auditKinds(t, dir, out.Task), " ")
			for _, want := range []string{"call", "proposal", "award", "commit", "result"} {
				if strings.Count(kinds, want) < map[string]int{"call": 1, "proposal": 1, "award": 1, "commit": 2, "result": 2}[want] {
					t.Errorf("audit records of the task: %s; want %s from both sides", kinds, want)
				}
			}
		})
	}
}
