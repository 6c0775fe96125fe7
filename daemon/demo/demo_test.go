package demo

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/parleynet/parley/workflow"
)

// Every node, daemon and watcher a run starts is gone when it returns.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The default demo tells the article's story: each beat is on screen, as
// a newcomer reads it, and the run ends by itself, well within its time,
// without an error (so `parley demo` exits 0).
func TestDemoTellsTheOrderStory(t *testing.T) {
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	sum, err := run(ctx, &out, Config{})
	took := time.Since(start)
	text := out.String()
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, text)
	}
	if took > timeLimit {
		t.Errorf("the demo took %s, over its %s", took, timeLimit)
	}
	want := Summary{Orders: 3, Completed: 2, Undone: 1, Approvals: 1}
	if sum.Orders != want.Orders || sum.Completed != want.Completed || sum.Undone != want.Undone || sum.Approvals != want.Approvals {
		t.Errorf("summary %+v, want 3 orders: 2 shipped, 1 undone, 1 approval", sum)
	}
	if sum.Counters < 3 || sum.Accepted < 1 || sum.ReAwards < 1 || sum.Retries < 1 || sum.Entries < 9 {
		t.Errorf("summary %+v, want ≥ 3 counter-offers (≥ 1 accepted), a re-award, a retry, ≥ 9 context entries", sum)
	}
	// Every daemon kept its audit log, and each verified: the shop's alone
	// holds a record per workflow step decision.
	if sum.AuditLogs != 6 || sum.AuditRecords < sum.Negotiations*2 {
		t.Errorf("summary %+v, want six verified audit logs holding at least two records per negotiation", sum)
	}
	beats := []struct{ beat, pattern string }{
		{"opening", `^parley demo: an order's story`},
		{"the mesh", `mesh formed: 6 nodes`},
		{"parallel steps", `#1  (forecast|stock) +call .*; at once with (stock|forecast) \(neither needs the other\)`},
		{"a bid and its winner, and why", `#1  forecast WON +forecast-\w €[\d.]+ eta \S+: ranked 1 of 2 by cheapest; then forecast-\w`},
		{"a refusal to bid", `#1  stock +no bid +inventory-c +has 15 of`},
		{"the counter-offer", `#1  ship +shop counters shipping-a +€[\d.]+ → €[\d.]+ \(80% of your price\): ACCEPTED`},
		{"a counter refused", `#1  ship +shop counters shipping-c .*: refused, its bid stands`},
		{"a counter revised", `#1  ship +shop counters shipping-b .*: revised to €`},
		{"the winner that failed", `#1  ship +FAILED +shipping-c +the truck broke down`},
		{"the job retried on another agent", `#1  ship +RE-AWARD shipping-c \(ranked 1\) failed: .*; the job went to the next bid, shipping-a`},
		{"the settled counter-offer", `#1  ship +WON +shipping-a €[\d.]+ .*by counter\(80%\)\+cheapest, after the counter-offer \(accepted\)`},
		{"a context entry and its writer", `#1  context +stock = \{"warehouse":"south-depot".*\}  ← inventory-b, signature ok`},
		{"the agreed price in the context", `#1  context +price = \{"unit":[\d.]+,"total":[\d.]+.*\}  ← pricing-\w, signature ok`},
		{"an agent reading the context", `#1  price +pricing-\w +reads forecast \(\d+ next week\) and stock \(\d+ left at south-depot\)`},
		{"a skipped branch", `#1  freight +skipped +if: .* is false`},
		{"an order shipped", `#1  SHIPPED +in \S+: €[\d.]+, tracking PX-`},
		{"the approval, held", `#2  freight +HELD +for a human's approval, as order.yaml asks \(shipping, budget €300\)`},
		{"the approval, automatic and said so", `#2  freight +APPROVED automatically by the demo, as a person would with: parley approvals approve \w+`},
		{"the expensive order shipped", `#2  SHIPPED +in \S+: €[\d.]+, tracking PX-`},
		{"a retry by the step's rule", `#3  ship +attempt 1 failed: .*; the step's retry rule tries again`},
		{"the step failed for good", `#3  ship +FAILED +for good, after 2 attempts`},
		{"the compensation", `#3  undo +inventory-b +released S-\d+: \d+× spring-k3 back on the shelf`},
		{"the compensation, as the shop saw it", `#3  undo +stock compensated by inventory-b`},
		{"the undone order", `#3  FAILED +in \S+: ship failed for good; undone: stock`},
		{"the summary", `counter-offers +3 made, 1 accepted`},
		{"the summary's approval", `approvals +1 \(auto-approved by the demo`},
		{"the summary's audit", `audit +\d+ signed records in the 6 daemons' logs`},
	}
	for _, b := range beats {
		if !regexp.MustCompile(`(?m)` + b.pattern).MatchString(text) {
			t.Errorf("the output does not show %s: no line matches %q", b.beat, b.pattern)
		}
	}
	if strings.Contains(text, "DOES NOT CHECK") {
		t.Error("a context entry's signature did not check")
	}
	// Orders are told one at a time.
	if last1, first2 := strings.LastIndex(text, " #1  "), strings.Index(text, " #2  "); last1 < 0 || first2 < 0 || last1 > first2 {
		t.Errorf("order #1's lines end at %d, #2's start at %d: want #1 told whole first", last1, first2)
	}
	if t.Failed() {
		t.Logf("output:\n%s", text)
	}
}

// Quiet prints the opening, a line per order and the summary; --seed and
// --orders still say what the run is.
func TestDemoQuiet(t *testing.T) {
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := run(ctx, &out, Config{Orders: 1, Quiet: true, Seed: 7}); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	text := out.String()
	for _, want := range []string{"1 order, seed 7", "#1  ORDER ", "#1  SHIPPED ", "orders               1 placed: 1 shipped, 0 undone"} {
		if !strings.Contains(text, want) {
			t.Errorf("quiet output lacks %q", want)
		}
	}
	for _, not := range []string{"bid      ", "call     ", " up  peer", "context  "} {
		if strings.Contains(text, not) {
			t.Errorf("quiet output has %q", not)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", text)
	}
}

// The workflow the demo runs is a valid file on its own, for parley flow
// run.
func TestOrderFlowParses(t *testing.T) {
	spec, err := workflow.Parse("order.yaml", orderFlow)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, st := range spec.Steps {
		names = append(names, st.Name)
	}
	if got := strings.Join(names, " "); got != "forecast stock price ship freight" {
		t.Errorf("steps %q", got)
	}
}
