package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/node"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func health(t *testing.T, url, query, token string) (int, Health) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url+PathHealth+query, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h Health
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, h
}

func TestHealth(t *testing.T) {
	lone := newTestNodes(t, 1)[0]
	pair := newTestNodes(t, 2)[0]
	broken := errors.New("fsync audit-000001.jsonl: input/output error")
	failing := Check{Name: "audit log", Err: func() error { return broken }}
	k, _ := identity.GenerateKey()
	a, _ := identity.NewAgent("default", k)
	cfg := node.DefaultConfig()
	cfg.NodeKey, cfg.Agents = k, []*identity.Agent{a}
	unstarted, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		n      *node.Node
		opts   []Option
		query  string
		token  string
		status int
		live   bool
		ready  bool
		want   []string
	}{
		{"connected", pair, nil, "", "", 200, true, true, nil},
		{"no peers", lone, nil, "", "", 503, true, false, []string{"no peers connected"}},
		{"no peers, liveness", lone, nil, "?probe=live", "", 200, true, false, []string{"no peers connected"}},
		{"a check fails, to a probe", pair, []Option{WithChecks(failing)}, "", "", 503, true, false, []string{"audit log"}},
		{"a check fails, to the operator", pair, []Option{WithChecks(failing)}, "", testToken, 503, true, false, []string{"audit log: " + broken.Error()}},
		{"both", lone, []Option{WithChecks(failing)}, "", testToken, 503, true, false, []string{"no peers connected", "audit log: " + broken.Error()}},
		{"not started", unstarted, nil, "?probe=live", testToken, 503, false, false, []string{"node not running: node not started"}},
		{"not started, to a probe", unstarted, nil, "", "wrong", 503, false, false, []string{"node not running"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts, _ := newTestServer(t, tt.n, tt.opts...)
			status, h := health(t, ts.URL, tt.query, tt.token)
			if status != tt.status || h.Live != tt.live || h.Ready != tt.ready || !slices.Equal(h.Reasons, append([]string{}, tt.want...)) {
				t.Fatalf("health: %d %+v, want %d live %v ready %v reasons %q", status, h, tt.status, tt.live, tt.ready, tt.want)
			}
			got, err := NewClient(ts.URL, "").Health(ctxT(t))
			if err != nil || got.Ready != tt.ready {
				t.Fatalf("client Health: %+v, %v", got, err)
			}
		})
	}
}

// TestStatus: the operator's one screen, with what the daemon adds.
func TestStatus(t *testing.T) {
	nodes := newTestNodes(t, 2)
	_, c := newTestServer(t, nodes[0], WithStatus(func(st *Status) {
		st.Audit = AuditStatus{Enabled: true, Dir: "/h/audit"}
		for i := range st.Agents {
			if st.Agents[i].Name == "second" {
				st.Agents[i].Kind = KindExec
			}
		}
	}))
	ctx := ctxT(t)
	if _, err := c.RegisterExternal(ctx, ExternalAgentBody{Name: "py", Capabilities: []string{"quote"}}); err != nil {
		t.Fatal(err)
	}
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Peer != nodes[0].ID() || st.Version != "test" || st.Peers != 1 || !st.Health.Ready || st.UptimeSeconds < 0 ||
		st.Audit.Dir != "/h/audit" || st.TasksInFlight != 0 {
		t.Fatalf("status %+v", st)
	}
	kinds := map[string]string{}
	for _, a := range st.Agents {
		kinds[a.Name] = a.Kind
		if a.Name == "py" && (a.Connected == nil || *a.Connected || !slices.Equal(a.Capabilities, []string{"quote"})) {
			t.Errorf("external agent %+v, want it offering quote, not connected", a)
		}
	}
	if kinds["default"] != KindGo || kinds["second"] != KindExec || kinds["py"] != KindExternal {
		t.Fatalf("agent kinds %v", kinds)
	}
}

func TestPublishTTLAboveTheNodeLimit(t *testing.T) {
	nd := newTestNodes(t, 1)[0]
	ts, _ := newTestServer(t, nd)
	status, msg := call(t, "POST", ts.URL+PathIntents, testToken, `{"capability":"weather","payload":1,"ttl":"100000h"}`)
	if status != 400 || !strings.Contains(msg, "ttl 100000h0m0s") || !strings.Contains(msg, "maximum intent TTL of 5m0s") {
		t.Fatalf("publish with ttl 100000h: %d %q, want 400 naming the limit", status, msg)
	}
	if status, msg := call(t, "POST", ts.URL+PathIntents, testToken, `{"capability":"weather","payload":1,"ttl":"5m"}`); status != 201 {
		t.Fatalf("publish at the limit: %d %q", status, msg)
	}
}
