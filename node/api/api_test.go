package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/parleynet/parley/discovery"
	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/intent"
	"github.com/parleynet/parley/node"
)

const testToken = "test-token"

// newTestNodes starts n connected nodes on mocknet, each hosting the agents
// "default" and "second".
func newTestNodes(t *testing.T, n int) []*node.Node {
	t.Helper()
	mn := mocknet.New()
	t.Cleanup(func() { _ = mn.Close() })
	var nodes []*node.Node
	for i := range n {
		k, err := identity.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		h, err := mn.AddPeer(k, ma.StringCast(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", 4001+i)))
		if err != nil {
			t.Fatal(err)
		}
		cfg := node.DefaultConfig()
		cfg.Host, cfg.NodeKey = h, k
		cfg.PublishWait = 200 * time.Millisecond
		for _, name := range []string{"default", "second"} {
			ak, err := identity.GenerateKey()
			if err != nil {
				t.Fatal(err)
			}
			a, err := identity.NewAgent(name, ak)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Agents = append(cfg.Agents, a)
		}
		nd, err := node.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := nd.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = nd.Close() })
		nodes = append(nodes, nd)
	}
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	if err := mn.ConnectAllButSelf(); err != nil {
		t.Fatal(err)
	}
	return nodes
}

// newTestServer serves nd's API on httptest and returns a client of it.
// Every exchange with it is checked against openapi.yaml (contract_test.go).
func newTestServer(t *testing.T, nd *node.Node, opts ...Option) (*httptest.Server, *Client) {
	t.Helper()
	ts := httptest.NewServer(checked(t, NewServer(nd, testToken, append([]Option{WithVersion("test")}, opts...)...)))
	t.Cleanup(ts.Close)
	return ts, NewClient(ts.URL, testToken)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestEndpoints(t *testing.T) {
	nodes := newTestNodes(t, 2)
	nd := nodes[0]
	ts, c := newTestServer(t, nd)
	ctx := ctxT(t)

	info, err := c.Node(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Peer != nd.ID() || info.Version != "test" || len(info.Agents) != 2 ||
		info.Agents[0].Name != "default" || info.Agents[0].ID != nd.Agents()[0].ID {
		t.Fatalf("node = %+v", info)
	}
	for _, a := range info.Addrs {
		if !strings.HasSuffix(a, "/p2p/"+nd.ID().String()) {
			t.Fatalf("address %s does not end in /p2p/<peer>", a)
		}
	}

	peers, err := c.Peers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(peers) != 1 || peers[0].ID != nodes[1].ID() {
		t.Fatalf("peers = %+v, want node 1", peers)
	}

	in, err := c.Publish(ctx, PublishRequest{Capability: "weather", Payload: json.RawMessage(`{"city":"Oslo"}`), Agent: "second", TTL: "1m"})
	if err != nil {
		t.Fatal(err)
	}
	if in.From != nd.Agents()[1].ID || in.Capability != "weather" || in.Kind != intent.KindEvent ||
		string(in.Payload) != `{"city":"Oslo"}` || in.ID == "" || in.Expires.Sub(in.Created) > time.Minute {
		t.Fatalf("published %+v", in)
	}

	st, err := c.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Published != 1 {
		t.Fatalf("stats = %+v, want 1 published", st)
	}

	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL+PathMetrics, nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "parley_intents_published_total 1") {
		t.Fatalf("metrics: %d\n%s", resp.StatusCode, body)
	}
}

func TestErrors(t *testing.T) {
	nd := newTestNodes(t, 1)[0]
	ts, _ := newTestServer(t, nd, WithMaxBodySize(200<<10))
	big := `{"capability":"weather","payload":"` + strings.Repeat("x", 100<<10) + `"}`
	tooBig := `{"capability":"weather","payload":"` + strings.Repeat("x", 300<<10) + `"}`
	tests := []struct {
		name, method, path, token, body string
		status                          int
		want                            string // in the error message
	}{
		{"no token", "GET", PathNode, "-", "", 401, "token"},
		{"wrong token", "GET", PathNode, "nope", "", 401, "token"},
		{"no token metrics", "GET", PathMetrics, "-", "", 401, "token"},
		{"unknown route", "GET", "/v1/nothing", "", "", 404, "/v1/nothing"},
		{"wrong method", "GET", PathIntents, "", "", 405, "POST"},
		{"malformed JSON", "POST", PathIntents, "", `{"capability":`, 400, "bad request body"},
		{"empty body", "POST", PathIntents, "", ``, 400, "empty"},
		{"unknown field", "POST", PathIntents, "", `{"capability":"weather","payload":1,"colour":"red"}`, 400, "colour"},
		{"payload not JSON", "POST", PathIntents, "", `{"capability":"weather","payload":hello}`, 400, "invalid character"},
		{"payload missing", "POST", PathIntents, "", `{"capability":"weather"}`, 400, "payload is required"},
		{"two values", "POST", PathIntents, "", `{"capability":"weather","payload":1}{}`, 400, "more than one"},
		{"bad capability", "POST", PathIntents, "", `{"capability":"Bad Cap","payload":1}`, 400, `"Bad Cap"`},
		{"bad kind", "POST", PathIntents, "", `{"capability":"weather","kind":"gossip","payload":1}`, 400, `"gossip"`},
		{"bad ttl", "POST", PathIntents, "", `{"capability":"weather","payload":1,"ttl":"soon"}`, 400, `"soon"`},
		{"over intent limit", "POST", PathIntents, "", big, 400, "too large"},
		{"body over limit", "POST", PathIntents, "", tooBig, 413, "over the 200 KiB limit (204800 bytes)"},
		{"unknown agent", "POST", PathIntents, "", `{"capability":"weather","payload":1,"agent":"ghost"}`, 404, "ghost"},
		{"subscribe bad capability", "GET", PathSubscribe + "?capability=A%20B", "", "", 400, `"A B"`},
		{"subscribe no capability", "GET", PathSubscribe, "", "", 400, "capability"},
		{"null body", "POST", PathIntents, "", `null`, 400, "payload is required"},
		{"array body", "POST", PathIntents, "", `[1,2]`, 400, "cannot unmarshal array"},
		{"wrong field type", "POST", PathIntents, "", `{"capability":7,"payload":1}`, 400, "capability"},
		{"deep payload", "POST", PathIntents, "", `{"capability":"weather","payload":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`, 400, "exceeded max depth"},
		{"invalid UTF-8 capability", "POST", PathIntents, "", "{\"capability\":\"w\xff\",\"payload\":1}", 400, "invalid capability"},
		{"request empty body", "POST", PathTasks, "", ``, 400, "empty"},
		{"request unknown field", "POST", PathTasks, "", `{"capability":"echo","price":1}`, 400, "price"},
		{"request bad capability", "POST", PathTasks, "", `{"capability":"Bad Cap"}`, 400, `"Bad Cap"`},
		{"request no capability", "POST", PathTasks, "", `{"input":1}`, 400, "capability"},
		{"request input not JSON", "POST", PathTasks, "", `{"capability":"echo","input":{oops}`, 400, "invalid character"},
		{"request summary not JSON", "POST", PathTasks, "", `{"capability":"echo","summary":hello}`, 400, "invalid character"},
		{"request bad bid window", "POST", PathTasks, "", `{"capability":"echo","bid_window":"soon"}`, 400, `bid_window "soon"`},
		{"request negative timeout", "POST", PathTasks, "", `{"capability":"echo","timeout":"-1s"}`, 400, `timeout "-1s"`},
		{"request bad strategy", "POST", PathTasks, "", `{"capability":"echo","strategy":"random"}`, 400, `"random"`},
		{"request negative budget", "POST", PathTasks, "", `{"capability":"echo","budget":-1}`, 400, "budget"},
		{"request negative calls", "POST", PathTasks, "", `{"capability":"echo","calls":-2}`, 400, "calls"},
		{"request unknown agent", "POST", PathTasks, "", `{"capability":"echo","agent":"ghost","bid_window":"10ms","timeout":"1s"}`, 404, "ghost"},
		{"request over limit", "POST", PathTasks, "", `{"capability":"echo","input":"` + strings.Repeat("x", 300<<10) + `"}`, 413, "over the 200 KiB limit"},
		{"reply over limit", "POST", PathExternalBid, "", `{"task":"t","rationale":"` + strings.Repeat("x", 300<<10) + `"}`, 413, "over the 200 KiB limit"},
		{"decision over its limit", "POST", "/v1/approvals/x", "", `{"decision":"` + strings.Repeat("x", 5<<10) + `"}`, 413, "over the 4 KiB limit (4096 bytes)"},
		{"unknown route, no token", "GET", "/v1/nothing", "-", "", 401, "no token"},
		{"wrong method, no token", "DELETE", PathHealth, "-", "", 401, "no token"},
		{"health wrong method", "POST", PathHealth, "", "", 405, "GET, HEAD"},
		{"agents wrong method", "PUT", PathAgents, "", "", 405, "GET, HEAD, POST"},
		{"agent wrong method", "GET", "/v1/agents/x", "", "", 405, "DELETE"},
		{"unknown task", "GET", "/v1/tasks/feed", "", "", 404, `"feed"`},
		{"cancel unknown task", "DELETE", "/v1/tasks/feed", "", "", 404, `"feed"`},
		{"task wrong method", "PUT", "/v1/tasks/feed", "", "", 405, "DELETE, GET"},
		{"tasks wrong method", "DELETE", PathTasks, "", "", 405, "GET, HEAD, POST"},
		{"empty task id", "GET", "/v1/tasks/", "", "", 404, "no such endpoint"},
		{"find no capability", "GET", PathFindAgents, "", "", 400, "capability"},
		{"find bad capability", "GET", PathFindAgents + "?capability=A%20B", "", "", 400, `"A B"`},
		{"find bad timeout", "GET", PathFindAgents + "?capability=translate&timeout=soon", "", "", 400, `timeout "soon"`},
		{"find negative timeout", "GET", PathFindAgents + "?capability=translate&timeout=-1s", "", "", 400, `timeout "-1s"`},
		{"find timeout too long", "GET", PathFindAgents + "?capability=translate&timeout=1h", "", "", 400, "up to 2m0s"},
		{"find wrong method", "POST", PathFindAgents + "?capability=translate", "", "", 405, "GET"},
		{"task sub-path", "GET", "/v1/tasks/a/b", "", "", 404, "no such endpoint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, ts.URL+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			switch tt.token {
			case "":
				req.Header.Set("Authorization", "Bearer "+testToken)
			case "-":
			default:
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var eb errorBody
			if err := json.NewDecoder(resp.Body).Decode(&eb); err != nil {
				t.Fatalf("error body is not JSON: %v", err)
			}
			if resp.StatusCode != tt.status || !strings.Contains(eb.Error, tt.want) {
				t.Fatalf("got %d %q, want %d containing %q", resp.StatusCode, eb.Error, tt.status, tt.want)
			}
			if eb.Code == "" || eb.Code.Status() != tt.status {
				t.Fatalf("code %q for a %d", eb.Code, resp.StatusCode)
			}
			if allow := resp.Header.Get("Allow"); (tt.status == 405) != (allow != "") || !strings.Contains(eb.Error, allow) {
				t.Fatalf("Allow %q for a %d %q: want the methods of a 405, in its message too", allow, resp.StatusCode, eb.Error)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("Content-Type %q", ct)
			}
		})
	}
	// The daemon still works after all that.
	if _, err := NewClient(ts.URL, testToken).Node(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

func TestClientErrors(t *testing.T) {
	nd := newTestNodes(t, 1)[0]
	ts, c := newTestServer(t, nd)
	ctx := ctxT(t)

	_, err := NewClient(ts.URL, "wrong").Node(ctx)
	var ae *Error
	if !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
		t.Fatalf("wrong token: %v, want a 401 *Error", err)
	}
	if ae.Code != CodeUnauthorized || !errors.Is(err, CodeUnauthorized) || errors.Is(err, CodeForbidden) {
		t.Fatalf("wrong token: code %q, want %q through errors.Is too", ae.Code, CodeUnauthorized)
	}
	_, err = c.Publish(ctx, PublishRequest{Capability: "weather", Payload: json.RawMessage(`1`), Agent: "ghost"})
	if !errors.As(err, &ae) || ae.Status != http.StatusNotFound || ae.Code != CodeNotFound || !strings.Contains(ae.Message, "ghost") {
		t.Fatalf("unknown agent: %v", err)
	}

	// Nothing listens on a closed listener's port: ErrNoDaemon.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = NewClient("http://"+addr, testToken).Node(ctx)
	if !errors.Is(err, ErrNoDaemon) {
		t.Fatalf("no daemon: %v, want ErrNoDaemon", err)
	}
}

func TestNotStarted(t *testing.T) {
	k, _ := identity.GenerateKey()
	a, _ := identity.NewAgent("default", k)
	cfg := node.DefaultConfig()
	cfg.NodeKey, cfg.Agents = k, []*identity.Agent{a}
	nd, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, c := newTestServer(t, nd)
	ctx := ctxT(t)
	var ae *Error
	if _, err := c.Node(ctx); !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable {
		t.Fatalf("node before start: %v, want 503", err)
	}
	_, err = c.Publish(ctx, PublishRequest{Capability: "weather", Payload: json.RawMessage(`1`)})
	if !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable {
		t.Fatalf("publish before start: %v, want 503", err)
	}
}

// TestSubscribe has a client subscribe on node 1 and receive what node 0's
// API publishes, with pings in between.
func TestSubscribe(t *testing.T) {
	nodes := newTestNodes(t, 2)
	_, pub := newTestServer(t, nodes[0])
	_, sub := newTestServer(t, nodes[1], WithPingInterval(50*time.Millisecond))
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()

	got := make(chan *intent.Intent, 16)
	done := make(chan error, 1)
	go func() {
		done <- sub.Subscribe(ctx, "weather", func(in *intent.Intent) error {
			got <- in
			return nil
		})
	}()
	// The subscription needs a moment to reach node 0; publish until it
	// arrives.
	tick := time.NewTicker(300 * time.Millisecond)
	defer tick.Stop()
	var in *intent.Intent
	for in == nil {
		if _, err := pub.Publish(ctx, PublishRequest{Capability: "weather", Payload: json.RawMessage(`{"t":21}`)}); err != nil {
			t.Fatal(err)
		}
		select {
		case in = <-got:
		case <-tick.C:
		case err := <-done:
			t.Fatalf("subscribe ended: %v", err)
		case <-ctx.Done():
			t.Fatal("no intent received")
		}
	}
	if in.From != nodes[0].Agents()[0].ID || in.Capability != "weather" || string(in.Payload) != `{"t":21}` {
		t.Fatalf("received %+v", in)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Subscribe returned %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Subscribe did not return after cancel")
	}
}

// TestShutdownFreshConnection: a connection that has sent nothing yet (a
// client's spare dial, a browser's preconnect) does not hold Shutdown for
// net/http's five seconds; it is closed, and Shutdown returns at once.
func TestShutdownFreshConnection(t *testing.T) {
	nd := newTestNodes(t, 1)[0]
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(nd, testToken)
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctxT(t), ln) }()
	fresh, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	// The server accepts in order, so once a later connection is answered
	// the fresh one has been accepted too.
	if _, err := NewClient("http://"+ln.Addr().String(), testToken).Health(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(ctxT(t), 2*time.Second)
	defer cancel()
	if err := s.Shutdown(sctx); err != nil {
		t.Fatalf("shutdown with a fresh connection open: %v", err)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if n, err := fresh.Read(make([]byte, 1)); err == nil {
		t.Fatalf("fresh connection read %d bytes after shutdown, want it closed", n)
	}
}

// TestServeShutdown runs the server on a real listener and checks that
// Shutdown ends an open event stream promptly.
func TestServeShutdown(t *testing.T) {
	nd := newTestNodes(t, 1)[0]
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(nd, testToken, WithPingInterval(20*time.Millisecond))
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()
	base := "http://" + ln.Addr().String()

	// Read the raw stream: the first thing is the subscribed comment.
	req, _ := http.NewRequestWithContext(ctxT(t), http.MethodGet, base+PathSubscribe+"?capability=weather", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, ": subscribed") {
		t.Fatalf("first line %q, %v", line, err)
	}
	for line != ": ping\n" {
		if line, err = br.ReadString('\n'); err != nil {
			t.Fatalf("no ping on an idle stream: %v", err)
		}
	}
	streamErr := make(chan error, 1)
	go func() {
		streamErr <- NewClient(base, testToken).Subscribe(ctxT(t), "weather", func(*intent.Intent) error { return nil })
	}()
	time.Sleep(100 * time.Millisecond)

	start := time.Now()
	cancel() // Serve's ctx: graceful shutdown
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(DefaultShutdownTimeout + time.Second):
		t.Fatal("Serve did not return")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("shutdown took %s with an open event stream", d)
	}
	if _, err := io.ReadAll(br); err != nil {
		t.Fatalf("event stream did not end cleanly: %v", err)
	}
	// The client either saw its stream closed or, if it came too late,
	// found no daemon.
	if err := <-streamErr; !errors.Is(err, ErrStreamClosed) && !errors.Is(err, ErrNoDaemon) {
		t.Fatalf("client Subscribe: %v, want ErrStreamClosed or ErrNoDaemon", err)
	}
}

// TestFindAgents finds, through node 0's API, the agent node 1 offers:
// the JSON has the card's fields, and a capability nobody offers is an
// empty array within the timeout asked for.
func TestFindAgents(t *testing.T) {
	nodes := newTestNodes(t, 2)
	_, c := newTestServer(t, nodes[0])
	ctx := ctxT(t)
	offerer := nodes[1].Agents()[1]
	if err := nodes[1].Discovery().Offer(offerer, []discovery.Capability{{Name: "translate"}}); err != nil {
		t.Fatal(err)
	}

	var cards []*discovery.SignedCard
	for deadline := time.Now().Add(10 * time.Second); len(cards) == 0; {
		if time.Now().After(deadline) {
			t.Fatal("node 0 did not find the translator within 10 s")
		}
		var err error
		if cards, err = c.FindAgents(ctx, "translate", time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if len(cards) != 1 || cards[0].Agent != offerer.ID || cards[0].Name != "second" || cards[0].Peer != nodes[1].ID() ||
		!cards[0].Offers("translate") || time.Until(cards[0].Expires) <= 0 {
		t.Fatalf("found %+v, want node 1's second agent", cards)
	}

	// The wire form is what the API documents.
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.base+PathFindAgents+"?capability=translate&timeout=1s", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var raw []map[string]json.RawMessage
	err = json.NewDecoder(resp.Body).Decode(&raw)
	resp.Body.Close()
	if err != nil || len(raw) != 1 {
		t.Fatalf("raw answer: %v, %d cards", err, len(raw))
	}
	for _, k := range []string{"agent", "name", "capabilities", "peer", "expires"} {
		if _, ok := raw[0][k]; !ok {
			t.Errorf("card JSON has no %q: %v", k, raw[0])
		}
	}

	start := time.Now()
	none, err := c.FindAgents(ctx, "nobody-offers-this", 300*time.Millisecond)
	if err != nil || none == nil || len(none) != 0 {
		t.Fatalf("find for nobody: %v, %v; want an empty array", none, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("find for nobody took %s with a 300ms timeout", d)
	}
}
