package a2a_test

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	parleya2a "github.com/parleynet/parley/interop/a2a"
)

// jsClient starts testdata/client.mjs (the JS A2A SDK) against base. It
// fails, saying what to run, when the SDK is not installed.
func jsClient(t *testing.T, ctx context.Context, base, token string) (*exec.Cmd, *bufio.Scanner, func(string)) {
	t.Helper()
	dir, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@a2a-js", "sdk", "package.json")); err != nil {
		t.Fatalf("the JS A2A SDK is not installed: run 'npm ci --prefix interop/a2a/testdata' (what .ci/run does): %v", err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node (Node.js 20 or later) is needed to run the JS A2A SDK: %v", err)
	}
	cmd := exec.CommandContext(ctx, node, "client.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "A2A_URL="+base, "A2A_TOKEN="+token)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = stdin.Close()
		if err := cmd.Wait(); err != nil {
			t.Errorf("client.mjs: %v\n%s", err, stderr.String())
		}
	})
	return cmd, bufio.NewScanner(stdout), func(s string) { _, _ = stdin.Write([]byte(s + "\n")) }
}

// The JS A2A SDK over JSON-RPC: it fetches the card, is refused without
// the token, streams a task a mesh agent wins and completes, reads it
// back, cancels a second task while its contractor works, and answers a
// third whose winner asks (input-required).
func TestGatewayWithJSClient(t *testing.T) {
	gm := newGatewayMesh(t, func(c *parleya2a.Config) { c.Export = append(c.Export, "size") })
	addSizer(t, gm)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel) // after the client has exited (cleanups run last first)
	_, lines, tell := jsClient(t, ctx, gm.url, testToken)
	next := func(into any) {
		t.Helper()
		if !lines.Scan() {
			t.Fatalf("client.mjs stopped early: %v", lines.Err())
		}
		t.Logf("client.mjs: %s", lines.Text())
		if err := json.Unmarshal(lines.Bytes(), into); err != nil {
			t.Fatalf("client.mjs printed %q: %v", lines.Text(), err)
		}
	}

	var card struct {
		Card struct {
			Name       string   `json:"name"`
			Skills     []string `json:"skills"`
			Interfaces []string `json:"interfaces"`
			Schemes    []string `json:"schemes"`
		} `json:"card"`
	}
	next(&card)
	if c := card.Card; !slices.Equal(c.Skills, []string{"quote", "size", "slow"}) || !slices.Equal(c.Interfaces, []string{"JSONRPC", "HTTP+JSON"}) || !slices.Equal(c.Schemes, []string{"bearer"}) {
		t.Errorf("card as the JS SDK read it: %+v", c)
	}

	var unauth struct {
		Unauthenticated struct {
			Name    string `json:"name"`
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"unauthenticated"`
	}
	next(&unauth)
	if u := unauth.Unauthenticated; u.Code != -31401 { // A2A's JSON-RPC code for unauthenticated
		t.Errorf("without the token the JS SDK got %+v, want A2A's unauthenticated error", u)
	}

	var stream struct {
		Stream []struct {
			Kind  string         `json:"kind"`
			State string         `json:"state"`
			Text  string         `json:"text"`
			Data  map[string]any `json:"data"`
		} `json:"stream"`
		Task string `json:"task"`
	}
	next(&stream)
	var states, texts []string
	var data map[string]any
	for _, e := range stream.Stream {
		if e.Kind == "artifact" {
			data = e.Data
			continue
		}
		states, texts = append(states, e.State), append(texts, e.Text)
	}
	if len(states) < 4 || states[0] != "TASK_STATE_SUBMITTED" || states[len(states)-1] != "TASK_STATE_COMPLETED" {
		t.Errorf("streamed states %v: want submitted, working…, completed", states)
	}
	if all := strings.Join(texts, "|"); !strings.Contains(all, "quoter won") || !strings.Contains(all, "weighing") || !strings.Contains(all, "pricing") {
		t.Errorf("streamed notes %q: want the winner and its progress", all)
	}
	if data["price"] != 5.0 {
		t.Errorf("artifact %v, want the price for 2 kg", data)
	}
	var got struct {
		GetTask string `json:"getTask"`
	}
	next(&got)
	if got.GetTask != "TASK_STATE_COMPLETED" {
		t.Errorf("getTask: %s", got.GetTask)
	}

	select {
	case <-gm.started:
	case <-ctx.Done():
		t.Fatal("the slow task never started")
	}
	tell("started")
	var canceled struct {
		Cancel string `json:"cancel"`
	}
	next(&canceled)
	if canceled.Cancel != "TASK_STATE_CANCELED" {
		t.Errorf("cancelTask: %s, want canceled", canceled.Cancel)
	}

	var asked struct {
		InputRequired struct {
			State string `json:"state"`
			Text  string `json:"text"`
		} `json:"inputRequired"`
	}
	next(&asked)
	if a := asked.InputRequired; a.State != "TASK_STATE_INPUT_REQUIRED" || a.Text != "which size?" {
		t.Errorf("the asking task's stream ended %+v, want input-required asking which size?", a)
	}
	var answered struct {
		Answered struct {
			State string         `json:"state"`
			Data  map[string]any `json:"data"`
		} `json:"answered"`
	}
	next(&answered)
	if a := answered.Answered; a.State != "TASK_STATE_COMPLETED" || a.Data["size"] != "M" {
		t.Errorf("after the answer: %+v, want completed with size M", a)
	}
}
