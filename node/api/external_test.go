package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/node"
	"github.com/parleynet/parley/node/nodetest"
)

func post(t *testing.T, url, path, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// events opens an external agent's stream and returns its events.
func events(t *testing.T, ctx context.Context, url, agent string) (<-chan ExternalEvent, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+PathExternalEvents+"?agent="+agent, nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("events: %v %v", err, resp)
	}
	ch := make(chan ExternalEvent, 16)
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var ev ExternalEvent
				if json.Unmarshal([]byte(d), &ev) == nil {
					ch <- ev
				}
			}
		}
		close(ch)
	}()
	return ch, cancel
}

func next(t *testing.T, ch <-chan ExternalEvent, kind string) ExternalEvent {
	t.Helper()
	select {
	case ev := <-ch:
		if ev.Type != kind {
			t.Fatalf("event %+v, want %s", ev, kind)
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s event", kind)
	}
	return ExternalEvent{}
}

// TestExternalAgentKilledMidTaskIsFailedOver: an external agent bids
// cheapest, wins, and its stream drops mid-task; the requester fails over
// to the next bid and completes.
func TestExternalAgentKilledMidTaskIsFailedOver(t *testing.T) {
	m := nodetest.NewMesh(t, 3)
	ts, _ := newTestServer(t, m.Nodes[1])
	if code, body := post(t, ts.URL, PathExternalAgents, `{"name":"ext","capabilities":["job"]}`); code != http.StatusCreated {
		t.Fatalf("register: %d %s", code, body)
	}
	backup, err := m.Nodes[2].AddAgent(node.AgentCard{Name: "backup", Capabilities: []string{"job"}}, negotiation.HandlerFuncs{
		BidFunc: func(context.Context, negotiation.Call) (negotiation.Bid, error) {
			return negotiation.Bid{Price: 9}, nil
		},
		WorkFunc: func(_ context.Context, t negotiation.Task) (json.RawMessage, error) { return t.Input, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	evs, kill := events(t, ctx, ts.URL, "ext")
	waitTopicPeer(t, m.Nodes[0], "job", m.Nodes[1].ID())
	waitTopicPeer(t, m.Nodes[0], "job", m.Nodes[2].ID())

	done := make(chan *negotiation.Outcome, 1)
	go func() {
		out, _ := m.Nodes[0].Request(ctx, negotiation.Need{Capability: "job", Input: json.RawMessage(`"x"`)},
			negotiation.WithBidWindow(500*time.Millisecond), negotiation.WithTimeout(15*time.Second))
		done <- out
	}()
	call := next(t, evs, "call")
	// Error codes first: unknown agent, bad body, a task not open.
	for _, tc := range []struct {
		path, body string
		code       int
	}{
		{PathExternalBid, `{"agent":"ghost","task":"` + call.Task + `","price":1}`, http.StatusNotFound},
		{PathExternalBid, `{"agent":"ext","task":"` + call.Task + `","price":1,"bogus":1}`, http.StatusBadRequest},
		{PathExternalBid, `{"agent":"ext","task":"not-open","price":1}`, http.StatusConflict},
		// Neither a price nor a reason to refuse: not a free bid.
		{PathExternalBid, `{"agent":"ext","task":"` + call.Task + `"}`, http.StatusBadRequest},
		{PathExternalBid, `{"agent":"ext","task":"` + call.Task + `","refuse":""}`, http.StatusBadRequest},
		{PathExternalBid, `{"agent":"ext","task":"` + call.Task + `","price":-1}`, http.StatusBadRequest},
		{PathExternalResult, `{"agent":"ext","task":"` + call.Task + `","result":1}`, http.StatusConflict},
	} {
		if code, body := post(t, ts.URL, tc.path, tc.body); code != tc.code {
			t.Errorf("POST %s %s = %d %s, want %d", tc.path, tc.body, code, body, tc.code)
		}
	}
	if code, body := post(t, ts.URL, PathExternalBid, `{"agent":"ext","task":"`+call.Task+`","price":1,"eta":"10ms"}`); code != http.StatusOK {
		t.Fatalf("bid: %d %s", code, body)
	}
	award := next(t, evs, "award")
	if !bytes.Equal(award.Input, []byte(`"x"`)) {
		t.Errorf("award input %s, want the task input", award.Input)
	}
	kill() // the agent dies holding the task
	out := <-done
	if out == nil || out.State != negotiation.StateCompleted || out.Winner != backup.ID {
		t.Fatalf("outcome %+v; want the backup to complete after the external agent died", out)
	}
}

// TestExternalAgentAnswersCounters: a requester countering at 80 % sends
// the external agent a counter event; the agent's answer on the bid
// endpoint is the price the task settles at, and its award carries it.
func TestExternalAgentAnswersCounters(t *testing.T) {
	cases := []struct {
		name   string
		answer string // the body's tail after agent and task
		want   float64
		reply  string
	}{
		{"accepts", `"price":1.6,"eta":"10ms","rationale":"deal"`, 1.6, "accepted"},
		{"revises", `"price":1.8,"eta":"10ms"`, 1.8, "revised"},
		{"refuses", `"refuse":"my price is firm"`, 2, "refused"},
	}
	m := nodetest.NewMesh(t, 2)
	ts, _ := newTestServer(t, m.Nodes[1])
	if code, body := post(t, ts.URL, PathExternalAgents, `{"name":"ext","capabilities":["job"]}`); code != http.StatusCreated {
		t.Fatalf("register: %d %s", code, body)
	}
	ctx := ctxT(t)
	evs, stop := events(t, ctx, ts.URL, "ext")
	defer stop()
	waitTopicPeer(t, m.Nodes[0], "job", m.Nodes[1].ID())
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			done := make(chan *negotiation.Outcome, 1)
			go func() {
				out, _ := m.Nodes[0].Request(ctx, negotiation.Need{Capability: "job", Input: json.RawMessage(`"x"`)},
					negotiation.WithBidWindow(2*time.Second), negotiation.WithEnoughBids(1), negotiation.WithTimeout(15*time.Second),
					negotiation.WithStrategy(negotiation.CounterAt(0.8, nil)))
				done <- out
			}()
			call := next(t, evs, "call")
			task := `{"agent":"ext","task":"` + call.Task + `",`
			if code, body := post(t, ts.URL, PathExternalBid, task+`"price":2,"eta":"10ms"}`); code != http.StatusOK {
				t.Fatalf("bid: %d %s", code, body)
			}
			counter := next(t, evs, "counter")
			if c := counter.Counter; c == nil || c.Price != 1.6 || c.Round != 1 || c.Bid.Price != 2 || counter.Call == nil {
				t.Fatalf("counter event %+v, want round 1 at 1.6 answering the bid of 2", counter)
			}
			if code, body := post(t, ts.URL, PathExternalBid, task+tc.answer+`}`); code != http.StatusOK {
				t.Fatalf("answer: %d %s", code, body)
			}
			// The answer is taken once: a second is not open.
			if code, _ := post(t, ts.URL, PathExternalBid, task+tc.answer+`}`); code != http.StatusConflict {
				t.Errorf("a second answer to the counter: %d, want 409", code)
			}
			award := next(t, evs, "award")
			if award.Bid == nil || award.Bid.Price != tc.want {
				t.Fatalf("award %+v, want the bid at %g", award, tc.want)
			}
			if code, body := post(t, ts.URL, PathExternalResult, task+`"result":{"ok":true}}`); code != http.StatusOK {
				t.Fatalf("result: %d %s", code, body)
			}
			out := <-done
			if out == nil || out.State != negotiation.StateCompleted || len(out.Bids) != 1 || out.Bids[0].Price != tc.want {
				t.Fatalf("outcome %+v; want completed at %g", out, tc.want)
			}
			if r := out.Bids[0].Rounds; len(r) != 1 || r[0].Reply != tc.reply {
				t.Errorf("rounds %+v, want one %s", r, tc.reply)
			}
		})
	}
}
