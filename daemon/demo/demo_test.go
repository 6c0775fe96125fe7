package demo

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func TestDemoCompletesOrdersAndReAwards(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real nodes on loopback")
	}
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sum, err := run(ctx, &out, Config{Orders: 3})
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	if sum.Orders != 3 || sum.Completed != 3 || sum.Negotiations != 9 || sum.NegotiationsCompleted != 9 {
		t.Errorf("summary %+v, want 3 of 3 orders and 9 of 9 negotiations completed", sum)
	}
	// shipping-c wins the first shipping call and fails its first task.
	if sum.ReAwards < 1 || sum.AfterFailure < 1 {
		t.Errorf("summary %+v, want at least one re-award after a failure", sum)
	}
	for _, want := range []string{"orders completed     3 of 3", "success ratio        100%", "RE-AWARD", "FAILED    shipping-c"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	// Orders read one at a time: every line of #1 comes before any of #2.
	text := out.String()
	if last1, first2 := strings.LastIndex(text, " #1 "), strings.Index(text, " #2 "); last1 < 0 || first2 < 0 || last1 > first2 {
		t.Errorf("order #1's lines end at %d, #2's start at %d: want #1 told whole first", last1, first2)
	}
	if !strings.HasPrefix(text, "parley demo: ") {
		t.Errorf("output does not open by saying what is about to happen")
	}
	if t.Failed() {
		t.Logf("output:\n%s", out.String())
	}
}

func TestDemoQuiet(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real nodes on loopback")
	}
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := run(ctx, &out, Config{Orders: 2, Quiet: true, Seed: 7}); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	text := out.String()
	for _, want := range []string{"Seed 7", "#1  order     COMPLETE", "#2  order     COMPLETE", "orders completed     2 of 2"} {
		if !strings.Contains(text, want) {
			t.Errorf("quiet output lacks %q", want)
		}
	}
	for _, not := range []string{"award ", "call      ", " up   peer"} {
		if strings.Contains(text, not) {
			t.Errorf("quiet output has %q", not)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", text)
	}
}

func TestPercentile(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		var out []time.Duration
		for _, n := range ns {
			out = append(out, time.Duration(n)*time.Millisecond)
		}
		return out
	}
	for _, tc := range []struct {
		in   []time.Duration
		p    float64
		want time.Duration
	}{
		{nil, 0.5, 0},
		{ms(7), 0.99, 7 * time.Millisecond},
		{ms(4, 1, 3, 2), 0.5, 2 * time.Millisecond},
		{ms(4, 1, 3, 2), 0.99, 4 * time.Millisecond},
		{ms(5, 1, 4, 2, 3), 0.5, 3 * time.Millisecond},
	} {
		if got := percentile(tc.in, tc.p); got != tc.want {
			t.Errorf("percentile(%v, %g) = %v, want %v", tc.in, tc.p, got, tc.want)
		}
	}
}
