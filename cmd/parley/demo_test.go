package main

import (
	"strings"
	"testing"
	"time"
)

// `parley demo` ends by itself with exit 0, its story on stdout and
// nothing on stderr: the nodes' logs (a step held for approval is a
// warning) stay out of it.
func TestDemoCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the parley binary")
	}
	bin := parleyBinary(t)
	start := time.Now()
	out, stderr, code := parley(t, bin, "demo", "--quiet", "--orders", "2", "--seed", "3")
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("parley demo took %s, want under 30 s", took)
	}
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q; want 0 and nothing\n%s", code, stderr, out)
	}
	for _, want := range []string{"2 orders, seed 3", "#1  SHIPPED ", "#2  SHIPPED ", "approvals            1 (auto-approved by the demo"} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
}
