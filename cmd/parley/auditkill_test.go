package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestAuditSurvivesKill9 runs a real daemon, has it publish intents (each
// acknowledged by the API only once recorded), kills it with SIGKILL while
// more publishes are in flight, and checks that the log verifies and holds
// every acknowledged intent.
func TestAuditSurvivesKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the parley binary")
	}
	dir := t.TempDir()
	bin := parleyBinary(t)
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	for _, h := range []string{a, b} {
		if _, stderr, code := parley(t, bin, "init", "--home", h); code != 0 {
			t.Fatalf("init: %s", stderr)
		}
	}
	da := start(t, bin, "run", "--home", a, "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns")
	da.line(t, 20*time.Second) // peer:
	listen := strings.TrimPrefix(da.line(t, 5*time.Second), "listen: ")
	// A subscriber on another node, so publishes have a topic peer.
	db := start(t, bin, "run", "--home", b, "--bootstrap", listen, "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0")
	db.line(t, 20*time.Second)
	sub := start(t, bin, "subscribe", "--home", b, "--capability", "audit", "--json")
	_ = sub
	time.Sleep(2 * time.Second)

	var (
		mu    sync.Mutex
		acked []string
		wg    sync.WaitGroup
	)
	publish := func(i int) {
		defer wg.Done()
		out, _, code := parley(t, bin, "publish", "--home", a, "--capability", "audit", "--payload", fmt.Sprintf(`{"i":%d}`, i))
		if code == 0 && strings.HasPrefix(out, "published ") {
			mu.Lock()
			acked = append(acked, strings.Fields(out)[1])
			mu.Unlock()
		}
	}
	for i := range 20 {
		wg.Add(1)
		go publish(i)
	}
	wg.Wait()
	for i := 20; i < 40; i++ {
		wg.Add(1)
		go publish(i)
	}
	time.Sleep(50 * time.Millisecond)
	if err := da.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	<-da.done
	if len(acked) < 20 {
		t.Fatalf("only %d publishes were acknowledged before the kill", len(acked))
	}

	out, stderr, code := parley(t, bin, "audit", "verify", "--home", a)
	if code != 0 {
		t.Fatalf("audit verify after kill -9: exit %d\n%s%s", code, out, stderr)
	}
	out, stderr, code = parley(t, bin, "audit", "tail", "--home", a, "-n", "1000", "--json")
	if code != 0 {
		t.Fatalf("audit tail: %s", stderr)
	}
	logged := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var r struct {
			Kind   string `json:"kind"`
			Detail struct {
				ID string `json:"id"`
			} `json:"detail"`
		}
		if json.Unmarshal([]byte(line), &r) == nil && r.Kind == "intent.published" {
			logged[r.Detail.ID] = true
		}
	}
	for _, id := range acked {
		if !logged[id] {
			t.Errorf("acknowledged intent %s is not in the audit log", id)
		}
	}
}
