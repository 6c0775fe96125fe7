package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parleynet/parley/node"
)

// TestTraceAcrossDaemons negotiates one task across three real daemons
// (a requester and two exec quoters at different prices) with tracing on,
// then 'parley trace TASK --json' on the requester must show spans of all
// three nodes under one trace ID, parents before children.
func TestTraceAcrossDaemons(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the parley binary")
	}
	bin := parleyBinary(t)
	script, err := os.ReadFile("../../examples/shell/quote.sh")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	homes := map[string]string{}
	for _, name := range []string{"req", "cheap", "dear"} {
		homes[name] = filepath.Join(dir, name)
		initHome(t, bin, homes[name])
	}
	cfg := "dial_private_addrs: true\ntracing:\n  enabled: true\n"
	writeFile(t, filepath.Join(homes["req"], "config.yaml"), "agents:\n  - name: default\n"+cfg)
	for name, price := range map[string]string{"cheap": "2", "dear": "7"} {
		sh := filepath.Join(dir, name+".sh")
		writeFile(t, sh, strings.Replace(string(script), `"price":3`, `"price":`+price, 1))
		writeFile(t, filepath.Join(homes[name], "config.yaml"),
			"agents:\n  - name: default\n  - name: "+name+"\n    capabilities: [quote]\n    exec: [sh, "+sh+"]\n"+cfg)
	}
	req := runDaemon(t, bin, homes["req"], "--no-mdns")
	cheap := runDaemon(t, bin, homes["cheap"], "--no-mdns", "--bootstrap", req.listen)
	dear := runDaemon(t, bin, homes["dear"], "--no-mdns", "--bootstrap", req.listen)

	// Both quoters must be on the topic: ask until a task gets both bids.
	var out struct {
		Task       string `json:"task"`
		State      string `json:"state"`
		WinnerName string `json:"winner_name"`
		Bids       []any  `json:"bids"`
	}
	deadline := time.Now().Add(45 * time.Second)
	for len(out.Bids) < 2 || out.State != "completed" {
		if time.Now().After(deadline) {
			t.Fatalf("no completed task with two bids within 45 s; last %+v", out)
		}
		stdout, stderr, code := parley(t, bin, "request", "--home", homes["req"], "--capability", "quote", "--input", `{"sku":"bolt"}`,
			"--bid-window", "1s", "--timeout", "20s", "--json")
		if err := json.Unmarshal([]byte(stdout), &out); err != nil {
			t.Fatalf("request: exit %d, %q, %s", code, stdout, stderr)
		}
	}
	if out.WinnerName != "cheap" {
		t.Fatalf("winner %q, want cheap", out.WinnerName)
	}

	stdout, stderr, code := parley(t, bin, "trace", out.Task, "--home", homes["req"], "--json")
	var view node.TraceView
	if code != 0 || json.Unmarshal([]byte(stdout), &view) != nil {
		t.Fatalf("trace: exit %d, %q, %s", code, stdout, stderr)
	}
	if len(view.Traces) != 1 {
		t.Fatalf("trace IDs %v, want one", view.Traces)
	}
	nodes := map[string]map[string]int{}
	seen := map[string]bool{}
	for _, s := range view.Spans {
		if s.TraceID != view.Traces[0] {
			t.Errorf("span %s %s of trace %s, want %s", s.Node, s.Name, s.TraceID, view.Traces[0])
		}
		if s.ParentID != "" && !seen[s.ParentID] {
			for _, p := range view.Spans {
				if p.SpanID == s.ParentID {
					t.Errorf("span %s %s comes before its parent %s", s.Node, s.Name, p.Name)
				}
			}
		}
		seen[s.SpanID] = true
		if nodes[s.Node] == nil {
			nodes[s.Node] = map[string]int{}
		}
		nodes[s.Node][s.Name]++
		for _, e := range s.Events {
			nodes[s.Node]["event "+e.Name]++
		}
	}
	for name, want := range map[string][]string{
		req.peer:   {"negotiation.request", "negotiation.call", "intent.publish", "negotiation.award", "negotiation.commit", "negotiation.work", "negotiation.result", "event audit.append", "event policy.request", "event policy.award"},
		cheap.peer: {"intent.validate", "negotiation.bid", "negotiation.commit", "negotiation.work", "negotiation.result", "event audit.append", "event policy.call", "event policy.commit"},
		dear.peer:  {"intent.validate", "negotiation.bid"},
	} {
		for _, w := range want {
			if nodes[name][w] == 0 {
				t.Errorf("node %s has no %s span; it has %v (nodes asked: %+v)", name, w, nodes[name], view.Nodes)
			}
		}
	}
	// The timeline names the nodes, the phases and the winner's price.
	stdout, stderr, code = parley(t, bin, "trace", out.Task, "--home", homes["req"])
	if code != 0 || !strings.Contains(stdout, "negotiation.bid") || !strings.Contains(stdout, "price 2") || !strings.Contains(stdout, "hop ") {
		t.Fatalf("trace timeline: exit %d:\n%s\n%s", code, stdout, stderr)
	}
	t.Logf("timeline:\n%s", stdout)

}
