package demo

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func TestDemoCompletesOrdersAndReawards(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real nodes on loopback")
	}
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := RunConfig(ctx, &out, Config{Orders: 3}); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	s := out.String()
	for _, want := range []string{"orders completed           3 (100%)", "-> re-awarded", "re-awards after a failure  1"} {
		if !strings.Contains(s, want) {
			t.Errorf("demo output lacks %q:\n%s", want, s)
		}
	}
}
