package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestExecAgentWinsFromAnotherNode: a daemon whose config.yaml runs the
// shell example as an agent wins and completes a negotiation that another
// daemon started with parley request.
func TestExecAgentWinsFromAnotherNode(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the parley binary")
	}
	dir := t.TempDir()
	bin := parleyBinary(t)
	script, err := filepath.Abs("../../examples/shell/quote.sh")
	if err != nil {
		t.Fatal(err)
	}
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	for _, h := range []string{a, b} {
		if _, stderr, code := parley(t, bin, "init", "--home", h); code != 0 {
			t.Fatalf("init: %s", stderr)
		}
	}
	cfg := "agents:\n  - name: default\n  - name: quoter\n    capabilities: [quote]\n    exec: [sh, " + script + "]\n"
	if err := os.WriteFile(filepath.Join(b, "config.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	da := start(t, bin, "run", "--home", a, "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns")
	da.line(t, 20*time.Second)
	listen := strings.TrimPrefix(da.line(t, 5*time.Second), "listen: ")
	db := start(t, bin, "run", "--home", b, "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns", "--bootstrap", listen)
	db.line(t, 20*time.Second)

	var out string
	var code int
	for range 10 { // until the quoter's subscription has reached A
		var stderr string
		out, stderr, code = parley(t, bin, "request", "--home", a, "--capability", "quote", "--input", `{"sku":"bolt"}`,
			"--bid-window", "300ms", "--timeout", "5s", "--json")
		if code == 0 {
			break
		}
		t.Logf("request: %s", stderr)
		time.Sleep(500 * time.Millisecond)
	}
	if code != 0 {
		t.Fatalf("parley request never completed")
	}
	var o struct {
		State  string `json:"state"`
		Result struct {
			Quote int `json:"quote"`
		} `json:"result"`
	}
	if err := json.Unmarshal([]byte(out), &o); err != nil || o.State != "completed" || o.Result.Quote != 42 {
		t.Fatalf("outcome %s (%v); want completed with the script's quote", out, err)
	}
}
