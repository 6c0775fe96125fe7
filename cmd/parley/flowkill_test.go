package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// flowAgent is an exec agent that appends a line to count each time it
// works; with hang set, its first work hangs (until the test's kill).
const flowAgent = `#!/bin/sh
request=$(cat)
case "$request" in
*'"phase":"bid"'*) echo '{"bid":{"price":1,"eta":"100ms"}}' ;;
*'"phase":"execute"'*)
	echo work >> "$COUNT"
	printf '%s\n' "$request" >> "$COUNT.in"
	if [ -n "$HANG" ] && [ ! -e "$COUNT.hung" ]; then : > "$COUNT.hung"; exec sleep 20; fi
	echo "{\"result\":{\"ok\":true}${CTX:+,\"context\":$CTX}}"
	;;
esac
`

// TestFlowSurvivesKill9 runs a two-step workflow on a real daemon, kills
// it with SIGKILL while the second step is being worked on, and starts it
// again: the workflow resumes and completes, the first step's agent
// worked once, the second step's twice (its first attempt was in flight).
func TestFlowSurvivesKill9(t *testing.T) {
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
	script := filepath.Join(dir, "agent.sh")
	if err := os.WriteFile(script, []byte(flowAgent), 0o700); err != nil {
		t.Fatal(err)
	}
	one, two := filepath.Join(dir, "one.count"), filepath.Join(dir, "two.count")
	cfg := "agents:\n  - name: default\n" +
		"  - name: first\n    capabilities: [one]\n    exec: [env, COUNT=" + one + `, 'CTX={"made":1}', sh, ` + script + "]\n" +
		"  - name: second\n    capabilities: [two]\n    exec: [env, COUNT=" + two + ", HANG=1, sh, " + script + "]\n"
	if err := os.WriteFile(filepath.Join(b, "config.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	db := start(t, bin, "run", "--home", b, "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns")
	db.line(t, 20*time.Second)
	listen := strings.TrimPrefix(db.line(t, 5*time.Second), "listen: ")
	da := start(t, bin, "run", "--home", a, "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns", "--bootstrap", listen)
	da.line(t, 20*time.Second)

	flow := filepath.Join(dir, "two.yaml")
	src := "version: 1\nname: kill\nsteps:\n" +
		"  one: {capability: one, bid_window: 300ms, retry: {attempts: 5, backoff: 300ms}, context: {writes: [made]}}\n" +
		"  two: {capability: two, bid_window: 300ms, needs: [one], input: '{after: $steps.one.output.ok, made: $ctx.made}',\n" +
		"        context: {reads: [made]}, retry: {attempts: 5, backoff: 300ms}}\n"
	if err := os.WriteFile(flow, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := parley(t, bin, "flow", "run", flow, "--home", a, "--json")
	if code != 0 {
		t.Fatalf("flow run: exit %d: %s%s", code, out, stderr)
	}
	var run struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(out), &run); err != nil || run.ID == "" {
		t.Fatalf("flow run printed %q (%v)", out, err)
	}
	// Until the second step's agent is at work: then kill the requester.
	deadline := time.Now().Add(20 * time.Second)
	for lines(two) < 1 {
		if time.Now().After(deadline) {
			s, _, _ := parley(t, bin, "flow", "show", run.ID, "--home", a)
			t.Fatalf("step two never started:\n%s", s)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := da.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-da.done

	da = start(t, bin, "run", "--home", a, "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns", "--bootstrap", listen)
	da.line(t, 20*time.Second)
	var got struct {
		State   string `json:"state"`
		Resumed int    `json:"resumed"`
		Steps   []struct {
			Name     string `json:"name"`
			State    string `json:"state"`
			Attempts []struct {
				State string `json:"state"`
			} `json:"attempts"`
		} `json:"steps"`
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		out, stderr, code = parley(t, bin, "flow", "show", run.ID, "--home", a, "--json")
		if code != 0 {
			t.Fatalf("flow show: %s", stderr)
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatal(err)
		}
		if got.State != "running" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not done 30 s after the restart: %s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got.State != "completed" || got.Resumed != 1 {
		t.Fatalf("after the restart: %s", out)
	}
	if n := lines(one); n != 1 {
		t.Errorf("step one's agent worked %d times, want once", n)
	}
	if n := lines(two); n != 2 {
		t.Errorf("step two's agent worked %d times, want twice (in flight at the kill, then again)", n)
	}
	if at := got.Steps[1].Attempts; len(at) < 2 || at[0].State != "interrupted" || at[len(at)-1].State != "completed" {
		t.Errorf("step two's attempts: %+v", at)
	}
	// The context step one's agent wrote survived the kill: step two's
	// second attempt built its input from it.
	if in, _ := os.ReadFile(two + ".in"); !strings.Contains(string(in[strings.LastIndex(strings.TrimSpace(string(in)), "\n")+1:]), `"input":{"after":true,"made":1}`) {
		t.Errorf("step two's last request: %s", in)
	}
	// flow show prints the shared context: the entry step one's agent
	// wrote, by that agent, its signature checked.
	show, _, _ := parley(t, bin, "flow", "show", run.ID, "--home", a)
	if !regexp.MustCompile(`(?m)^shared context:\n  made = 1  by first \(\S+\) \(step one\) at \S+, signature verified$`).MatchString(show) {
		t.Errorf("flow show lacks step one's verified context entry:\n%s", show)
	}
	if comp, _, _ := parley(t, bin, "__complete", "flow", "show", "--home", a, run.ID[:4]); !strings.Contains(comp, run.ID) {
		t.Errorf("completion of flow show %s…: %q", run.ID[:4], comp)
	}
	ls, _, code := parley(t, bin, "flow", "ls", "--home", a)
	if code != 0 || !strings.Contains(ls, run.ID) || !strings.Contains(ls, "completed") {
		t.Errorf("flow ls: %s", ls)
	}
	// Every step decision is in the requester's audit log.
	out, _, _ = parley(t, bin, "audit", "tail", "--home", a, "-n", "1000", "--json")
	for _, kind := range []string{"workflow.start", "workflow.resume", "workflow.step.start", "workflow.step.award", "workflow.step.done", "workflow.done"} {
		if !strings.Contains(out, `"kind":"`+kind+`"`) {
			t.Errorf("no %s record in the audit log", kind)
		}
	}
	// --follow prints the steps and exits 0 once completed; a bad file is
	// refused with file:line before anything runs.
	once := filepath.Join(dir, "once.yaml")
	if err := os.WriteFile(once, []byte("version: 1\nsteps:\n  one: {capability: one, bid_window: 300ms, context: {writes: [made]}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, stderr, code = parley(t, bin, "flow", "run", once, "--home", a, "--follow")
	if code != 0 || !strings.Contains(out, "completed") {
		t.Errorf("flow run --follow: exit %d\n%s%s", code, out, stderr)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("version: 1\nsteps:\n  one: {capability: one}\n  two: {capability: two, needs: [three]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr, code = parley(t, bin, "flow", "run", bad, "--home", a)
	if code == 0 || !strings.Contains(stderr, bad+`:4: step two: needs unknown step "three"`) {
		t.Errorf("flow run of a bad file: exit %d: %s", code, stderr)
	}
	da.stop(t)
	db.stop(t)
}

func lines(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "\n")
}
