package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/parleynet/parley/identity"
)

// auditSpy records what the server audits.
type auditSpy struct {
	mu   sync.Mutex
	recs []spyRecord
}

type spyRecord struct {
	kind, rationale string
	detail          any
}

func (a *auditSpy) record(kind, rationale string, detail any) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.recs = append(a.recs, spyRecord{kind, rationale, detail})
	return nil
}

// refused is the server's WithRefusals hook: it records as kind
// "refused", rule and requester in the rationale's place.
func (a *auditSpy) refused(rule, who, rationale string, detail map[string]any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.recs = append(a.recs, spyRecord{"refused", rule + " " + who + ": " + rationale, detail})
}

func (a *auditSpy) kinds(kind string) []spyRecord {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []spyRecord
	for _, r := range a.recs {
		if r.kind == kind {
			out = append(out, r)
		}
	}
	return out
}

// call makes one request with a bearer token ("" sends none) and returns
// the status and the error message of the answer, if any.
func call(t *testing.T, method, url, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var eb errorBody
	_ = json.Unmarshal(b, &eb)
	return resp.StatusCode, eb.Error
}

// TestTokenScopes: an agent token is good for its own agent's external
// calls and for nothing else, and every refusal is audited.
func TestTokenScopes(t *testing.T) {
	nd := newTestNodes(t, 1)[0]
	spy := &auditSpy{}
	ts, c := newTestServer(t, nd, WithAudit(spy.record), WithRefusals(spy.refused))
	ctx := ctxT(t)
	reg, err := c.RegisterExternal(ctx, ExternalAgentBody{Name: "py", Capabilities: []string{"quote"}})
	if err != nil {
		t.Fatal(err)
	}
	other, err := c.RegisterExternal(ctx, ExternalAgentBody{Name: "other", Capabilities: []string{"quote"}})
	if err != nil {
		t.Fatal(err)
	}
	if reg.Token == "" || reg.Token == testToken || reg.Token == other.Token || !strings.HasPrefix(string(reg.ID), "did:key:") {
		t.Fatalf("registration %+v: want a fresh token of its own and an AgentID", reg)
	}
	tests := []struct {
		name, method, path, token, body string
		status                          int
		want                            string
	}{
		{"no token", "GET", PathNode, "", "", 401, "no token"},
		{"unknown token", "GET", PathNode, "not-a-token", "", 401, "unknown token"},
		{"agent token reads node", "GET", PathNode, reg.Token, "", 403, "external agent py's"},
		{"agent token approves", "POST", "/v1/approvals/x", reg.Token, `{"decision":"approve"}`, 403, "operator token"},
		{"agent token lists approvals", "GET", PathApprovals, reg.Token, "", 403, "operator token"},
		{"agent token registers", "POST", PathExternalAgents, reg.Token, `{"name":"evil","capabilities":["quote"]}`, 403, "operator token"},
		{"agent token removes", "DELETE", "/v1/external/agents/other", reg.Token, "", 403, "operator token"},
		{"agent token publishes", "POST", PathIntents, reg.Token, `{"capability":"x","payload":1}`, 403, "operator token"},
		{"agent token requests", "POST", PathTasks, reg.Token, `{"capability":"x"}`, 403, "operator token"},
		{"agent token metrics", "GET", PathMetrics, reg.Token, "", 403, "operator token"},
		{"agent token status", "GET", PathStatus, reg.Token, "", 403, "operator token"},
		{"other agent's stream", "GET", PathExternalEvents + "?agent=other", reg.Token, "", 403, `cannot act for agent "other"`},
		{"other agent's bid", "POST", PathExternalBid, reg.Token, `{"agent":"other","task":"t","price":1}`, 403, `cannot act for agent "other"`},
		{"other agent's result", "POST", PathExternalResult, reg.Token, `{"agent":"other","task":"t","result":1}`, 403, `cannot act for agent "other"`},
		{"default agent's bid", "POST", PathExternalBid, reg.Token, `{"agent":"default","task":"t","price":1}`, 403, `cannot act for agent "default"`},
		{"own bid, no open call", "POST", PathExternalBid, reg.Token, `{"agent":"py","task":"t","price":1}`, 409, "not open for bids"},
		{"own bid, agent left out", "POST", PathExternalBid, reg.Token, `{"task":"t","price":1}`, 409, "not open for bids"},
		{"operator bids for it", "POST", PathExternalBid, testToken, `{"agent":"py","task":"t","price":1}`, 409, "not open for bids"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(spy.kinds("refused"))
			status, msg := call(t, tt.method, ts.URL+tt.path, tt.token, tt.body)
			if status != tt.status || !strings.Contains(msg, tt.want) {
				t.Fatalf("%s %s: %d %q, want %d containing %q", tt.method, tt.path, status, msg, tt.status, tt.want)
			}
			refused := spy.kinds("refused")
			if audited := len(refused) > before; audited != (status == 401 || status == 403) {
				t.Fatalf("status %d, audited %v: want 401 and 403 audited, nothing else", status, audited)
			}
			if status == 401 || status == 403 {
				r := refused[len(refused)-1]
				d := r.detail.(map[string]any)
				if d["path"] != strings.SplitN(tt.path, "?", 2)[0] || d["status"] != status || !strings.Contains(r.rationale, tt.method) {
					t.Fatalf("audit record %+v", r)
				}
				if b, _ := json.Marshal(d); strings.Contains(string(b), reg.Token) || strings.Contains(r.rationale, reg.Token) {
					t.Fatal("the audit record holds the token")
				}
			}
		})
	}

	// The agent's own stream opens with its token, with or without ?agent.
	for _, q := range []string{"?agent=py", ""} {
		sctx, cancel := context.WithCancel(ctx)
		req, _ := http.NewRequestWithContext(sctx, http.MethodGet, ts.URL+PathExternalEvents+q, nil)
		req.Header.Set("Authorization", "Bearer "+reg.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("own stream %q: %v %v", q, err, resp)
		}
		cancel()
		resp.Body.Close()
		waitDisconnected(t, ts.URL, "py")
	}
}

// waitDisconnected waits until the server has seen the agent's stream go.
func waitDisconnected(t *testing.T, url, agent string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := NewClient(url, testToken).Status(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range st.Agents {
			if a.Name == agent && a.Connected != nil && !*a.Connected {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still connected", agent)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// memRegistry is a Registry in memory, as a home would be across restarts.
type memRegistry struct {
	mu   sync.Mutex
	keys map[string]crypto.PrivKey
	regs []Registration
}

func (m *memRegistry) Key(name string) (crypto.PrivKey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if k, ok := m.keys[name]; ok {
		return k, nil
	}
	k, err := identity.GenerateKey()
	m.keys[name] = k
	return k, err
}

func (m *memRegistry) Load() ([]Registration, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Registration(nil), m.regs...), nil
}

func (m *memRegistry) Save(r []Registration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.regs = append([]Registration(nil), r...)
	return nil
}

// TestExternalRegistration: names of the node's own agents are refused,
// registering again rotates the token, and a restarted server restores the
// agent with its AgentID and its token.
func TestExternalRegistration(t *testing.T) {
	nodes := newTestNodes(t, 2)
	reg := &memRegistry{keys: map[string]crypto.PrivKey{}}
	ts, c := newTestServer(t, nodes[0], WithRegistry(reg))
	ctx := ctxT(t)
	var ae *Error
	for _, tc := range []struct {
		name   string
		body   ExternalAgentBody
		status int
		want   string
	}{
		{"the default agent", ExternalAgentBody{Name: "default", Capabilities: []string{"q"}}, 409, "default agent"},
		{"a config agent", ExternalAgentBody{Name: "second", Capabilities: []string{"q"}}, 409, `hosts an agent called "second"`},
		{"bad name", ExternalAgentBody{Name: "Bad Name", Capabilities: []string{"q"}}, 400, "Bad Name"},
		{"no capabilities", ExternalAgentBody{Name: "ok"}, 400, "at least one"},
		{"bad capability", ExternalAgentBody{Name: "ok", Capabilities: []string{"A B"}}, 400, `"A B"`},
	} {
		_, err := c.RegisterExternal(ctx, tc.body)
		if !errors.As(err, &ae) || ae.Status != tc.status || !strings.Contains(ae.Message, tc.want) {
			t.Errorf("%s: %v, want %d containing %q", tc.name, err, tc.status, tc.want)
		}
	}
	first, err := c.RegisterExternal(ctx, ExternalAgentBody{Name: "py", Capabilities: []string{"quote"}})
	if err != nil {
		t.Fatal(err)
	}
	second, err := c.RegisterExternal(ctx, ExternalAgentBody{Name: "py", Capabilities: []string{"quote", "price"}})
	if err != nil {
		t.Fatal(err)
	}
	if second.ID != first.ID || second.Token == first.Token {
		t.Fatalf("registering again: %+v after %+v, want the same AgentID and a new token", second, first)
	}
	if status, _ := call(t, "POST", ts.URL+PathExternalBid, first.Token, `{"task":"t"}`); status != 401 {
		t.Fatalf("the replaced token: %d, want 401", status)
	}
	if status, _ := call(t, "POST", ts.URL+PathExternalBid, second.Token, `{"task":"t","price":1}`); status != 409 {
		t.Fatalf("the new token: %d, want 409 (no open call)", status)
	}
	if saved, _ := reg.Load(); len(saved) != 1 || saved[0].TokenSHA256 != tokenHash(second.Token) || strings.Contains(saved[0].TokenSHA256, second.Token) {
		t.Fatalf("registry holds %+v, want one registration with the new token's hash", saved)
	}

	// A new server on the same registry — a restarted daemon — restores it.
	srv2 := NewServer(nodes[1], testToken, WithRegistry(reg))
	if err := srv2.Restore(); err != nil {
		t.Fatal(err)
	}
	a, err := nodes[1].Agent("py")
	if err != nil || a.ID != first.ID {
		t.Fatalf("restored agent %v, %v; want AgentID %s", a, err, first.ID)
	}
	if p, _, ok := srv2.authenticate(bearer(second.Token)); !ok || p.agent != "py" {
		t.Fatalf("restored server does not accept the token: %+v", p)
	}

	if err := c.RemoveExternal(ctx, "py"); err != nil {
		t.Fatal(err)
	}
	if status, _ := call(t, "POST", ts.URL+PathExternalBid, second.Token, `{"task":"t"}`); status != 401 {
		t.Fatalf("a removed agent's token: %d, want 401", status)
	}
	if _, err := nodes[0].Agent("py"); err == nil {
		t.Fatal("the removed agent is still hosted")
	}
	if err := c.RemoveExternal(ctx, "py"); !errors.As(err, &ae) || ae.Status != 404 {
		t.Fatalf("removing it again: %v, want 404", err)
	}
}

func bearer(token string) *http.Request {
	r, _ := http.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Authorization", "Bearer "+token)
	return r
}

// TestReRegisterEndsTheOldStream: the stream opened with a token that is
// replaced ends, so the old holder cannot go on receiving calls.
func TestReRegisterEndsTheOldStream(t *testing.T) {
	nd := newTestNodes(t, 1)[0]
	ts, c := newTestServer(t, nd)
	ctx := ctxT(t)
	first, err := c.RegisterExternal(ctx, ExternalAgentBody{Name: "py", Capabilities: []string{"quote"}})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL+PathExternalEvents, nil)
	req.Header.Set("Authorization", "Bearer "+first.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("stream: %v %v", err, resp)
	}
	defer resp.Body.Close()
	if _, err := c.RegisterExternal(ctx, ExternalAgentBody{Name: "py", Capabilities: []string{"quote"}}); err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, resp.Body); ended <- err }()
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the stream of the replaced token is still open")
	}
}
