package demo

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func TestDemoDeliversEveryIntent(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real nodes on loopback")
	}
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := RunConfig(ctx, &out, Config{Nodes: 3, Rounds: 2, Every: 100 * time.Millisecond}); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	if want := "6 intents published, 12 of 12 deliveries (100%), 0 dropped"; !strings.Contains(out.String(), want) {
		t.Fatalf("summary lacks %q:\n%s", want, out.String())
	}
}
