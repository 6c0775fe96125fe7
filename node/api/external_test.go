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
