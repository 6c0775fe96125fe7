package policy

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parleynet/parley/identity"
)

var now0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func pid(t testing.TB, s string) peer.ID {
	t.Helper()
	id, err := peer.Decode(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func exampleEngine(t testing.TB) *Engine {
	t.Helper()
	p, err := Load("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return NewEngine(p)
}

func check(t *testing.T, name string, d Decision, allow bool, rule, rationale string) {
	t.Helper()
	if d.Allow != allow || d.Rule != rule || !strings.Contains(d.Rationale, rationale) {
		t.Errorf("%s = %+v; want allow=%v rule=%q rationale containing %q", name, d, allow, rule, rationale)
	}
}

func TestAgents(t *testing.T) {
	e := exampleEngine(t)
	tests := []struct {
		verb, agent, capability string
		allow                   bool
		rule, rationale         string
	}{
		{"offer", "default", "weather", true, "agents.default.offer", "agent default may offer weather (agents.default.offer)"},
		{"offer", "default", "payments", false, "agents.default.offer", "agent default may not offer payments (agents.default.offer)"},
		{"request", "default", "shipping", true, "agents.default.request", "may request shipping"},
		{"request", "default", "weather", false, "agents.default.request", "may not request weather"},
		{"offer", "quiet", "weather", false, "agents.quiet.offer", "may not offer weather"},
		// quiet omits request: it falls back to "*", whose [] allows none.
		{"request", "quiet", "shipping", false, "agents.*.request", "may not request shipping (agents.*.request)"},
		{"offer", "other", "weather", true, "agents.*.offer", "may offer weather"},
		{"offer", "other", "pricing", false, "agents.*.offer", "may not offer pricing"},
	}
	for _, tt := range tests {
		d := e.Offer(tt.agent, tt.capability)
		if tt.verb == "request" {
			d = e.Request(tt.agent, tt.capability)
		}
		check(t, tt.verb+" "+tt.agent+" "+tt.capability, d, tt.allow, tt.rule, tt.rationale)
	}

	// No "*": unlisted agents and omitted lists allow anything.
	e = NewEngine(mustParse(t, "agents:\n  a:\n    offer: [x]\n"))
	check(t, "request a y", e.Request("a", "y"), true, "", "any capability")
	check(t, "offer b y", e.Offer("b", "y"), true, "", "any capability")
	check(t, "offer a y", e.Offer("a", "y"), false, "agents.a.offer", "may not offer y")
}

func TestPeersAndRemoteAgents(t *testing.T) {
	e := exampleEngine(t)
	peers := []struct {
		id              string
		allow           bool
		rule, rationale string
	}{
		{peerA, true, "peers.allow", "is in peers.allow"},
		{peerB, true, "peers.allow", "is in peers.allow"},
		{peerC, false, "peers.deny", "is denied"},
		{peerD, false, "peers.allow", "is not in peers.allow"},
		{"", false, "peers.allow", "is not in peers.allow"},
	}
	for _, tt := range peers {
		id := peer.ID("")
		if tt.id != "" {
			id = pid(t, tt.id)
		}
		check(t, "Peer "+tt.id, e.Peer(id), tt.allow, tt.rule, tt.rationale)
	}
	agents := []struct {
		id              identity.AgentID
		allow           bool
		rule, rationale string
	}{
		{agentA, true, "remote_agents.allow", "is in remote_agents.allow"},
		{agentC, false, "remote_agents.deny", "is denied"},
		{agentD, false, "remote_agents.allow", "is not in remote_agents.allow"},
	}
	for _, tt := range agents {
		check(t, "RemoteAgent "+string(tt.id), e.RemoteAgent(tt.id), tt.allow, tt.rule, tt.rationale)
	}

	// Deny only: everyone else is allowed.
	e = NewEngine(mustParse(t, "peers: {deny: ["+peerC+"]}\nremote_agents: {deny: ["+agentC+"]}\n"))
	check(t, "Peer D", e.Peer(pid(t, peerD)), true, "", "no peers rule")
	check(t, "Peer C", e.Peer(pid(t, peerC)), false, "peers.deny", "denied")
	check(t, "RemoteAgent D", e.RemoteAgent(agentD), true, "", "no remote_agents rule")
	check(t, "RemoteAgent C", e.RemoteAgent(agentC), false, "remote_agents.deny", "denied")
}

func TestIntentLists(t *testing.T) {
	e := exampleEngine(t)
	check(t, "denied peer", e.Intent(agentA, pid(t, peerC), now0), false, "peers.deny", "")
	check(t, "denied agent", e.Intent(agentC, pid(t, peerA), now0), false, "remote_agents.deny", "")
	check(t, "unlisted agent", e.Intent(agentD, pid(t, peerA), now0), false, "remote_agents.allow", "")
	check(t, "ok", e.Intent(agentA, pid(t, peerA), now0), true, "rate_limits.intents_per_origin", "within rate limit 10/s")
}

const rateYAML = "rate_limits:\n  intents_per_origin: {per_second: 2, burst: 3}\n"

func TestRateLimitBurstRefuseRefill(t *testing.T) {
	e := NewEngine(mustParse(t, rateYAML))
	from := pid(t, peerA)
	for i := range 3 {
		if d := e.Intent(agentA, from, now0); !d.Allow {
			t.Fatalf("intent %d of the burst denied: %v", i, d)
		}
	}
	d := e.Intent(agentA, from, now0)
	check(t, "past burst", d, false, "rate_limits.intents_per_origin", "rate limit 2/s (burst 3) for "+agentA+" exceeded")
	// Another origin has its own bucket.
	check(t, "other origin", e.Intent(agentB, from, now0), true, "rate_limits.intents_per_origin", "")
	// 2/s: one token after 500ms, not before.
	check(t, "at 499ms", e.Intent(agentA, from, now0.Add(499*time.Millisecond)), false, "rate_limits.intents_per_origin", "")
	check(t, "at 500ms", e.Intent(agentA, from, now0.Add(500*time.Millisecond)), true, "rate_limits.intents_per_origin", "")
	check(t, "at 500ms again", e.Intent(agentA, from, now0.Add(500*time.Millisecond)), false, "rate_limits.intents_per_origin", "")
	// Refilled to the burst, no more, after a long pause.
	later := now0.Add(time.Minute)
	for i := range 3 {
		if d := e.Intent(agentA, from, later); !d.Allow {
			t.Fatalf("intent %d after refill denied: %v", i, d)
		}
	}
	check(t, "past refilled burst", e.Intent(agentA, from, later), false, "rate_limits.intents_per_origin", "")
	// A clock that goes back does not refill the bucket twice.
	check(t, "back in time", e.Intent(agentA, from, now0.Add(30*time.Second)), false, "rate_limits.intents_per_origin", "")
	check(t, "forward again", e.Intent(agentA, from, later), false, "rate_limits.intents_per_origin", "")
}

func TestRateLimitDefaultBurst(t *testing.T) {
	e := NewEngine(mustParse(t, "rate_limits:\n  intents_per_origin: {per_second: 2.5}\n"))
	from := pid(t, peerA)
	n := 0
	for e.Intent(agentA, from, now0).Allow {
		n++
	}
	if n != 3 {
		t.Errorf("default burst for 2.5/s = %d, want 3", n)
	}
}

func TestSwapKeepsRateLimiterState(t *testing.T) {
	e := NewEngine(mustParse(t, rateYAML))
	from := pid(t, peerA)
	for range 3 {
		e.Intent(agentA, from, now0)
	}
	// A reload with the same limit and another change keeps the empty bucket.
	e.Swap(mustParse(t, rateYAML+"max_concurrent_tasks: 4\n"))
	check(t, "after swap", e.Intent(agentA, from, now0), false, "rate_limits.intents_per_origin", "rate limit 2/s")
	// A faster rate applies from the next use, with the tokens kept.
	e.Swap(mustParse(t, "rate_limits:\n  intents_per_origin: {per_second: 10, burst: 3}\n"))
	check(t, "new rate, same instant", e.Intent(agentA, from, now0), false, "rate_limits.intents_per_origin", "rate limit 10/s")
	check(t, "new rate, 100ms", e.Intent(agentA, from, now0.Add(100*time.Millisecond)), true, "rate_limits.intents_per_origin", "")
	// Without a rate limit the limiters go; with one again they start full.
	e.Swap(Allow())
	check(t, "no limit", e.Intent(agentA, from, now0), true, "", "no rate limit")
	e.Swap(mustParse(t, rateYAML))
	check(t, "limit again", e.Intent(agentA, from, now0.Add(100*time.Millisecond)), true, "rate_limits.intents_per_origin", "")
}

func TestRateLimiterBounded(t *testing.T) {
	e := NewEngine(mustParse(t, "rate_limits:\n  intents_per_origin: {per_second: 1, burst: 1}\n"))
	from := pid(t, peerA)
	e.Intent(agentA, from, now0) // agentA's bucket is empty now
	for i := range MaxOrigins {
		e.Intent(identity.AgentID(fmt.Sprintf("origin-%d", i)), from, now0)
	}
	e.mu.Lock()
	n, m := len(e.origins), e.lru.Len()
	e.mu.Unlock()
	if n != MaxOrigins || m != MaxOrigins {
		t.Errorf("%d limiters (%d in LRU), want %d", n, m, MaxOrigins)
	}
	// agentA was the least recently used, so it was forgotten.
	check(t, "evicted origin", e.Intent(agentA, from, now0), true, "rate_limits.intents_per_origin", "")
	// Idle limiters go.
	e.Intent(agentB, from, now0.Add(OriginIdle+time.Second))
	e.mu.Lock()
	n = len(e.origins)
	e.mu.Unlock()
	if n != 1 {
		t.Errorf("%d limiters after idle eviction, want 1", n)
	}
}

func TestAward(t *testing.T) {
	e := exampleEngine(t)
	check(t, "within", e.Award("default", "x", 100, now0), true, "budgets.max_spend_per_hour", "")
	check(t, "over price", e.Award("default", "x", 120, now0), false, "budgets.max_price_per_task", "price 120 over max_price_per_task 100")
	check(t, "negative", e.Award("default", "x", -1, now0), false, "budgets", "not a finite")
	check(t, "nan", e.Award("default", "x", nan(), now0), false, "budgets", "not a finite")

	e = NewEngine(mustParse(t, "budgets: {max_price_per_task: 0}\n"))
	check(t, "free only, free", e.Award("a", "x", 0, now0), true, "budgets.max_price_per_task", "")
	check(t, "free only, paid", e.Award("a", "x", 0.01, now0), false, "budgets.max_price_per_task", "over max_price_per_task 0")
	check(t, "no budget", NewEngine(nil).Award("a", "x", 1e12, now0), true, "", "no budget")
}

func nan() float64 { var z float64; return z / z }

func TestHourlySpendSlides(t *testing.T) {
	e := NewEngine(mustParse(t, "budgets: {max_spend_per_hour: 1000}\n"))
	e.RecordSpend("a", 600, now0)
	e.RecordSpend("b", 300, now0.Add(30*time.Minute)) // per node: agents share the budget
	t45 := now0.Add(45 * time.Minute)
	if got := e.SpentLastHour(t45); got != 900 {
		t.Fatalf("SpentLastHour = %v, want 900", got)
	}
	check(t, "at 45m", e.Award("a", "x", 200, t45), false, "budgets.max_spend_per_hour",
		"price 200 with 900 spent in the last hour over max_spend_per_hour 1000")
	check(t, "at 45m, fits", e.Award("a", "x", 100, t45), true, "budgets.max_spend_per_hour", "")
	// Award does not record.
	if got := e.SpentLastHour(t45); got != 900 {
		t.Errorf("Award recorded spend: %v", got)
	}
	// The 600 leaves the window an hour after it was spent.
	check(t, "at 59m59s", e.Award("a", "x", 200, now0.Add(time.Hour-time.Second)), false, "budgets.max_spend_per_hour", "")
	t61 := now0.Add(61 * time.Minute)
	check(t, "at 61m", e.Award("a", "x", 200, t61), true, "budgets.max_spend_per_hour", "300 spent")
	if got := e.SpentLastHour(now0.Add(91 * time.Minute)); got != 0 {
		t.Errorf("SpentLastHour after 91m = %v, want 0", got)
	}
	// Same second adds up; junk is ignored.
	e.RecordSpend("a", 1, t61)
	e.RecordSpend("a", 2, t61)
	e.RecordSpend("a", -5, t61)
	e.RecordSpend("a", nan(), t61)
	e.RecordSpend("a", 7, now0.Add(-2*time.Hour)) // older than a slot's content: dropped
	if got := e.SpentLastHour(t61); got != 303 {
		t.Errorf("SpentLastHour = %v, want 303", got)
	}
	// Spend survives a reload and counts against the new cap.
	e.Swap(mustParse(t, "budgets: {max_spend_per_hour: 310}\n"))
	check(t, "after swap", e.Award("a", "x", 10, t61), false, "budgets.max_spend_per_hour", "303 spent")
}

func TestStartTask(t *testing.T) {
	e := NewEngine(mustParse(t, "max_concurrent_tasks: 2\n"))
	d1, r1 := e.StartTask()
	d2, r2 := e.StartTask()
	d3, r3 := e.StartTask()
	check(t, "slot 1", d1, true, "max_concurrent_tasks", "slot 1 of")
	check(t, "slot 2", d2, true, "max_concurrent_tasks", "slot 2 of")
	check(t, "slot 3", d3, false, "max_concurrent_tasks", "2 tasks running, max_concurrent_tasks 2")
	r3() // a denied slot's release does nothing
	r1()
	r1() // twice is once
	if n := e.Running(); n != 1 {
		t.Fatalf("Running = %d, want 1", n)
	}
	d4, r4 := e.StartTask()
	check(t, "slot again", d4, true, "max_concurrent_tasks", "")
	// A reload to a lower limit counts the running tasks.
	e.Swap(mustParse(t, "max_concurrent_tasks: 1\n"))
	d5, _ := e.StartTask()
	check(t, "lower limit", d5, false, "max_concurrent_tasks", "")
	r2()
	r4()
	if n := e.Running(); n != 0 {
		t.Fatalf("Running = %d, want 0", n)
	}
	e.Swap(mustParse(t, "max_concurrent_tasks: 0\n"))
	d6, _ := e.StartTask()
	check(t, "zero", d6, false, "max_concurrent_tasks", "")
	e.Swap(nil)
	d7, r7 := e.StartTask()
	check(t, "unlimited", d7, true, "", "no max_concurrent_tasks")
	r7()
}

func TestStartTaskConcurrent(t *testing.T) {
	e := NewEngine(mustParse(t, "max_concurrent_tasks: 5\n"))
	var wg sync.WaitGroup
	var mu sync.Mutex
	peak := 0
	for range 50 {
		wg.Go(func() {
			for range 100 {
				d, release := e.StartTask()
				if d.Allow {
					mu.Lock()
					peak = max(peak, e.Running())
					mu.Unlock()
				}
				release()
			}
		})
	}
	wg.Wait()
	if peak > 5 || e.Running() != 0 {
		t.Errorf("peak %d, running %d", peak, e.Running())
	}
}

func TestNeedsApproval(t *testing.T) {
	e := exampleEngine(t)
	tests := []struct {
		stage, capability string
		price             float64
		rule              string
	}{
		{StageAward, "payments", 50, "big-payments"},
		{StageAward, "payments", 49.99, ""},
		{StageAward, "payments", nan(), "big-payments"},
		{StageAward, "weather", 500, ""},
		{StageCommit, "weather", 0, "every-commit"},
		{"deliver", "payments", 500, ""},
	}
	for _, tt := range tests {
		rule, ok := e.NeedsApproval(tt.stage, tt.capability, tt.price)
		if rule != tt.rule || ok != (tt.rule != "") {
			t.Errorf("NeedsApproval(%s, %s, %v) = %q, %v; want %q", tt.stage, tt.capability, tt.price, rule, ok, tt.rule)
		}
	}
}

func TestEngineConcurrentUse(t *testing.T) {
	e := exampleEngine(t)
	p := e.Policy()
	from := pid(t, peerA)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 200 {
				now := now0.Add(time.Duration(j) * time.Millisecond)
				e.Intent(agentA, from, now)
				e.Award("default", "x", 1, now)
				e.RecordSpend("default", 1, now)
				e.Offer("default", "weather")
				if _, release := e.StartTask(); i%2 == 0 {
					release()
				} else {
					defer release()
				}
				if j%50 == 0 {
					e.Swap(p)
				}
			}
		})
	}
	wg.Wait()
}

func TestDecisionString(t *testing.T) {
	if s := (Decision{Allow: true, Rationale: "ok"}).String(); s != "allow: ok" {
		t.Error(s)
	}
	if s := (Decision{}).String(); !strings.HasPrefix(s, "deny") {
		t.Error(s)
	}
}

// Concurrent awards cannot together pass max_spend_per_hour: the check and
// the hold are one step. A declined award gives its budget back; a result
// turns it into spend.
func TestReserveIsAtomic(t *testing.T) {
	e := NewEngine(mustParse(t, "budgets: {max_spend_per_hour: 500}\n"))
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		granted []*Reservation
	)
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if d, r := e.Reserve("default", "x", 10, now0); d.Allow {
				mu.Lock()
				granted = append(granted, r)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(granted) != 50 || e.Reserved() != 500 {
		t.Fatalf("%d awards granted, %v reserved; want 50, 500", len(granted), e.Reserved())
	}
	check(t, "full", e.Award("default", "x", 1, now0), false, "budgets.max_spend_per_hour", "500 reserved")
	for _, r := range granted[:10] {
		r.Release()
		r.Release() // a second call changes nothing
	}
	for _, r := range granted[10:] {
		r.Charge(now0)
		r.Release() // already charged: nothing
	}
	if e.Reserved() != 0 || e.SpentLastHour(now0) != 400 {
		t.Fatalf("reserved %v, spent %v; want 0, 400", e.Reserved(), e.SpentLastHour(now0))
	}
	check(t, "released budget is back", e.Award("default", "x", 100, now0), true, "budgets.max_spend_per_hour", "")
}
