package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/parleynet/parley/daemon"
	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/node"
	"github.com/parleynet/parley/node/api"
	"github.com/parleynet/parley/sharedctx"
	"github.com/parleynet/parley/workflow"
)

// show prints the demo: the shop's view from its workflow's events, the
// shared context and the approval queue; the agents' from their handlers.
// Its mutex guards the writer and the names.
type show struct {
	out   io.Writer
	start time.Time
	dice  *dice
	quiet bool

	mu    sync.Mutex
	names map[identity.AgentID]string
	calls map[string]bool     // tasks whose call has been told
	open  map[string][]string // by order: its steps with a call out
	flow  *workflow.Spec      // order.yaml, parsed
	done  map[string]bool     // by order/step: told as ended by the shop
	held  map[string][]string // by order/step: lines waiting for its needs to be told
}

// call tells a step's call for bids, once per task, whoever sees it first:
// a bidder (the call reaches it as fast as the shop's event) or the shop.
// It names the order's other steps with a call out at the same time.
func (s *show) call(order, step, capability, task string, window time.Duration) {
	s.mu.Lock()
	if s.calls[task] {
		s.mu.Unlock()
		return
	}
	s.calls[task] = true
	// Steps run at once when neither needs the other.
	others := slices.DeleteFunc(slices.Clone(s.open[order]), func(o string) bool { return o == step || !s.independent(o, step) })
	if !slices.Contains(s.open[order], step) {
		s.open[order] = append(s.open[order], step)
	}
	s.mu.Unlock()
	msg := "call     for " + capability
	if st := s.spec(step); st != nil && st.EnoughBids > 0 {
		msg += fmt.Sprintf(", bids close at %d or in %s", st.EnoughBids, dur(st.BidWindow))
	} else if window > 0 {
		msg += ", bids close in " + dur(window)
	}
	if len(others) > 0 {
		msg += "; at once with " + strings.Join(others, ", ") + " (neither needs the other)"
	}
	s.step(order, step, "%s", msg)
}

// independent reports whether a and b are steps of order.yaml and
// neither needs the other.
func (s *show) independent(a, b string) bool {
	found := 0
	for _, st := range s.flow.Steps {
		switch st.Name {
		case a:
			found++
			if slices.Contains(st.Needs, b) {
				return false
			}
		case b:
			found++
			if slices.Contains(st.Needs, a) {
				return false
			}
		}
	}
	return found == 2
}

// spec is a step of order.yaml; nil for what is not one.
func (s *show) spec(step string) *workflow.Step {
	for _, st := range s.flow.Steps {
		if st.Name == step {
			return st
		}
	}
	return nil
}

// attempts is how many attempts a step's retry rule allows.
func (s *show) attempts(step string) int {
	if st := s.spec(step); st != nil {
		return st.Retry.Attempts
	}
	return 1
}

// window is a step's bid window, as order.yaml says.
func (s *show) window(step string) time.Duration {
	if st := s.spec(step); st != nil {
		return st.BidWindow
	}
	return 0
}

// ended closes a step's call: it is no longer out.
func (s *show) ended(order, step string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.open[order] = slices.DeleteFunc(s.open[order], func(o string) bool { return o == step })
}

func (s *show) name(id identity.AgentID, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.names[id] = name
}

func (s *show) agentName(id identity.AgentID) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n, ok := s.names[id]; ok {
		return n
	}
	return short(string(id))
}

// say prints a line stamped with the time since the demo started; not in
// quiet mode.
func (s *show) say(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.quiet {
		fmt.Fprintf(s.out, "%6.2fs  "+format+"\n", append([]any{time.Since(s.start).Seconds()}, args...)...)
	}
}

// step prints a line about one step of an order. A step's agents hear
// its call as soon as the engine makes it, a moment before the shop's
// event stream tells that the steps it needs have ended: its lines wait
// for those, so the story reads in the order things happened.
func (s *show) step(order, step, format string, args ...any) {
	if s.quiet {
		return
	}
	l := fmt.Sprintf("%6.2fs  %-3s %-8s "+format+"\n", append([]any{time.Since(s.start).Seconds(), order, step}, args...)...)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.waitingLocked(order, step) {
		s.held[order+"/"+step] = append(s.held[order+"/"+step], l)
		return
	}
	io.WriteString(s.out, l)
}

// waitingLocked reports whether a step of order.yaml needs a step not
// yet told as ended.
func (s *show) waitingLocked(order, step string) bool {
	for _, st := range s.flow.Steps {
		if st.Name != step {
			continue
		}
		for _, n := range st.Needs {
			if !s.done[order+"/"+n] {
				return true
			}
		}
	}
	return false
}

// toldEnd marks a step as told ended and prints the lines that waited
// for it; with all (the order has ended), every line still held.
func (s *show) toldEnd(order, step string, all bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done[order+"/"+step] = true
	for _, st := range s.flow.Steps {
		k := order + "/" + st.Name
		if len(s.held[k]) > 0 && (all || !s.waitingLocked(order, st.Name)) {
			for _, l := range s.held[k] {
				io.WriteString(s.out, l)
			}
			delete(s.held, k)
		}
	}
}

// headline prints a line about an order as a whole, in quiet mode too.
func (s *show) headline(order, format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(s.out, "%6.2fs  %-3s "+format+"\n", append([]any{time.Since(s.start).Seconds(), order}, args...)...)
}

// orderResult is how one order's workflow ended and what it took.
type orderResult struct {
	state, why   string
	err          error // the demo could not follow it
	compensated  bool  // a step was undone
	negotiations int
	counters     int
	accepted     int
	reAwards     int
	retries      int
	approvals    int
	entries      int
}

// placeOrder starts an order's workflow through the shop daemon's API
// and tells it until it ends.
func (s *show) placeOrder(ctx context.Context, shop *daemon.Daemon, o order) orderResult {
	if !s.quiet {
		fmt.Fprintln(s.out)
	}
	s.headline(o.Order, "ORDER    %d× %s for %s, %s (%s)", o.Qty, o.SKU, o.Customer, o.City, o.Country)
	in, _ := json.Marshal(o)
	cl := shop.Client()
	start := time.Now()
	s.step(o.Order, "workflow", "the shop's node runs order.yaml for it (POST /v1/workflows, as 'parley flow run' does)")
	run, err := cl.StartWorkflow(ctx, api.WorkflowBody{File: "order.yaml", Source: string(orderFlow), Input: in})
	if err != nil {
		return orderResult{err: err}
	}
	t := &teller{show: s, order: o.Order, shop: shop.Node(), wf: run.ID, steps: map[string]*seen{}, ctxTold: map[string]bool{}}

	// The approval queue and the shared context change beside the
	// workflow's events: watch them until the order ends.
	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { t.approve(wctx, cl) })
	wg.Go(func() { t.watchContext(wctx) })
	var last *workflow.Run
	err = cl.FollowWorkflow(ctx, run.ID, func(r *workflow.Run) error {
		t.event(r)
		last = r
		return nil
	})
	stop()
	wg.Wait()
	s.toldEnd(o.Order, "", true)
	t.res.err = err
	if last != nil {
		t.res.state, t.res.why = string(last.State), last.Error
		for _, sr := range last.Steps {
			t.res.retries += max(len(sr.Attempts)-1, 0)
			t.res.negotiations += len(sr.Attempts)
			if c := sr.Compensation; c != nil {
				t.res.negotiations += len(c.Attempts)
			}
		}
		took := dur(time.Since(start))
		switch last.State {
		case workflow.StateCompleted:
			var out struct {
				Total    float64 `json:"total"`
				Tracking string  `json:"tracking"`
			}
			_ = json.Unmarshal(last.Output, &out)
			s.headline(o.Order, "SHIPPED  in %s: €%.2f, tracking %s", took, out.Total, out.Tracking)
		default:
			var failed, undone []string
			for _, sr := range last.Steps {
				switch sr.State {
				case workflow.StepCompensated:
					undone = append(undone, sr.Name)
				case workflow.StepFailed:
					failed = append(failed, sr.Name)
				}
			}
			what := "nothing to undo"
			if len(undone) > 0 {
				what = "undone: " + strings.Join(undone, ", ")
			}
			s.headline(o.Order, "%-8s in %s: %s failed for good; %s", strings.ToUpper(string(last.State)), took, strings.Join(failed, ", "), what)
		}
	}
	return t.res
}

// teller tells one order's workflow from its events.
type teller struct {
	*show
	order string
	shop  *node.Node
	wf    string
	// res is written by the event loop, the approver and the context
	// watcher, each its own fields, and read once they have stopped.
	res orderResult

	// steps is what has been told of each step; only event touches it.
	steps        map[string]*seen
	compensating bool

	ctxMu   sync.Mutex
	ctxTold map[string]bool // context entries told, by key@HLC
}

type seen struct {
	state    workflow.StepState
	attempts int
	comp     workflow.StepState
}

// event tells what changed in the workflow since the last event.
func (t *teller) event(r *workflow.Run) {
	for _, sr := range r.Steps {
		t.stepEvent(sr)
	}
	if r.State == workflow.StateCompensating && !t.compensating {
		t.compensating = true
		t.step(t.order, "workflow", "COMPENSATING  a step failed for good: undoing the finished steps that have a compensate:, last first")
	}
	for _, sr := range r.Steps {
		t.compensationEvent(sr)
	}
}

func (t *teller) seen(name string) *seen {
	s := t.steps[name]
	if s == nil {
		s = &seen{state: workflow.StepPending, comp: workflow.StepPending}
		t.steps[name] = s
	}
	return s
}

func (t *teller) stepEvent(sr workflow.StepRun) {
	was := t.seen(sr.Name)
	for i := was.attempts; i < len(sr.Attempts); i++ {
		a := sr.Attempts[i]
		if a.Task == "" {
			break // not negotiating yet: told at a later event
		}
		if a.Ended == nil && sr.State == workflow.StepRunning {
			t.call(t.order, sr.Name, sr.Capability, a.Task, t.window(sr.Name))
			break // its end is told at a later event
		}
		was.attempts = i + 1
		if a.State != string(negotiation.StateCompleted) && a.N < t.attempts(sr.Name) {
			t.step(t.order, sr.Name, "attempt %d failed: %s; the step's retry rule tries again", a.N, reason(a.Error))
		}
	}
	if sr.State != was.state {
		switch sr.State {
		case workflow.StepCompleted:
			t.ended(t.order, sr.Name)
			t.tickContext() // what the winner wrote, before who won
			t.told(sr)
		case workflow.StepSkipped:
			t.step(t.order, sr.Name, "skipped  %s", sr.Error)
		case workflow.StepFailed:
			t.ended(t.order, sr.Name)
			t.step(t.order, sr.Name, "FAILED   for good, after %d attempts: %s", len(sr.Attempts), reason(sr.Error))
		case workflow.StepCanceled:
			t.step(t.order, sr.Name, "not run  %s", sr.Error)
		}
		if sr.State != workflow.StepRunning && sr.State != workflow.StepPending {
			t.toldEnd(t.order, sr.Name, false)
		}
		was.state = sr.State
	}
}

func (t *teller) compensationEvent(sr workflow.StepRun) {
	was := t.seen(sr.Name)
	if c := sr.Compensation; c != nil && c.State != was.comp {
		switch c.State {
		case workflow.StepRunning:
			t.step(t.order, "undo", "call     for %s: %s's compensation; only the holder bids", c.Capability, sr.Name)
		case workflow.StepCompleted:
			t.res.compensated = true
			t.step(t.order, "undo", "%s compensated by %s", sr.Name, t.winner(c.Attempts))
		case workflow.StepFailed:
			t.step(t.order, "undo", "FAILED   %s's compensation: %s", sr.Name, reason(c.Error))
		}
		was.comp = c.State
	}
}

func (t *teller) winner(as []workflow.Attempt) string {
	if len(as) == 0 {
		return "nobody"
	}
	return as[len(as)-1].WinnerName
}

// told tells how a completed step's negotiation went: the bids, the
// counter-offers, the winner and why, and any winner that failed first.
func (t *teller) told(sr workflow.StepRun) {
	a := sr.Attempts[len(sr.Attempts)-1]
	ti, err := t.shop.Task(a.Task)
	if err != nil || ti.Outcome == nil {
		t.step(t.order, sr.Name, "won      %s at €%.2f", a.WinnerName, a.Price)
		return
	}
	out := ti.Outcome
	// Refusals ("no bid") are in the outcome too; only offers rank.
	bids := slices.DeleteFunc(slices.Clone(out.Bids), func(b negotiation.BidInfo) bool { return b.Status == "refused" })
	slices.SortFunc(bids, func(x, y negotiation.BidInfo) int { return x.Rank - y.Rank })
	by := strategyOf(out.Rationale)
	var winner *negotiation.BidInfo
	var others, failed []string
	for i := range bids {
		b := &bids[i]
		for _, r := range b.Rounds {
			t.res.counters++
			if r.Reply == "accepted" {
				t.res.accepted++
			}
		}
		switch b.Status {
		case "completed":
			winner = b
		case "failed", "silent", "declined":
			t.res.reAwards++
			why := b.Note
			if why == "" {
				why = b.Status
			}
			failed = append(failed, fmt.Sprintf("%s (ranked %d) failed: %s", b.Name, b.Rank, clip(why, 60)))
		default:
			others = append(others, fmt.Sprintf("%s %s", b.Name, terms(*b)))
		}
	}
	if winner == nil {
		t.step(t.order, sr.Name, "won      %s at €%.2f", a.WinnerName, a.Price)
		return
	}
	for _, f := range failed {
		t.step(t.order, sr.Name, "RE-AWARD %s; the job went to the next bid, %s", f, winner.Name)
	}
	why := fmt.Sprintf("ranked %d of %d by %s", winner.Rank, len(bids), by)
	if len(winner.Rounds) > 0 {
		why += fmt.Sprintf(", after the counter-offer (%s)", winner.Rounds[len(winner.Rounds)-1].Reply)
	}
	if len(others) > 0 {
		why += "; then " + strings.Join(others, ", ")
	}
	t.step(t.order, sr.Name, "WON      %s %s: %s", winner.Name, terms(*winner), why)
}

// strategyOf reads the strategy's name out of an outcome's rationale
// ("ranked 1 of 3 by cheapest (price 1, eta 1s)").
func strategyOf(rationale string) string {
	_, after, ok := strings.Cut(rationale, " by ")
	if !ok {
		return "the step's strategy"
	}
	if i := strings.LastIndex(after, " (price"); i >= 0 {
		after = after[:i]
	}
	return after
}

func terms(b negotiation.BidInfo) string {
	return fmt.Sprintf("€%.2f eta %s", b.Price, dur(b.ETA))
}

// approve plays the human at the shop's approval queue, through the API
// as `parley approvals` does: it approves this order's held steps, and
// says so.
func (t *teller) approve(ctx context.Context, cl *api.Client) {
	done := map[string]bool{}
	for sleep(ctx, 40*time.Millisecond) {
		list, err := cl.Approvals(ctx)
		if err != nil {
			continue
		}
		for _, ap := range list {
			step, ok := strings.CutPrefix(ap.Task, t.wf+"/")
			if !ok || done[ap.ID] {
				continue
			}
			done[ap.ID] = true
			t.step(t.order, step, "HELD     for a human's approval, as order.yaml asks (%s, budget €%.0f): approval %s", ap.Capability, ap.Price, ap.ID)
			t.step(t.order, step, "APPROVED automatically by the demo, as a person would with: parley approvals approve %s", ap.ID)
			if err := cl.Decide(ctx, ap.ID, true); err != nil {
				t.step(t.order, step, "FAILED   to approve %s: %v", ap.ID, err)
				continue
			}
			t.res.approvals++
		}
	}
}

// watchContext tells each entry of the workflow's shared context as the
// shop's node (its home) applies it: the key, the value, who wrote it,
// and whether its signature checks.
func (t *teller) watchContext(ctx context.Context) {
	for sleep(ctx, 20*time.Millisecond) {
		t.tickContext()
	}
}

// tickContext tells the entries not told yet. The watcher and the event
// loop both call it.
func (t *teller) tickContext() {
	t.ctxMu.Lock()
	defer t.ctxMu.Unlock()
	svc := t.shop.SharedContext()
	rep, ok := svc.Context(t.wf)
	if !ok {
		return
	}
	for _, e := range rep.All() {
		id := e.Key + "@" + e.HLC.String()
		if t.ctxTold[id] {
			continue
		}
		t.ctxTold[id] = true
		t.res.entries++
		check := "signature ok"
		if v, err := sharedctx.OpenStored(e.Signed, svc.Limits().MaxValueSize+4<<10); err != nil || v.Writer != e.Writer || v.Key != e.Key {
			check = fmt.Sprintf("SIGNATURE DOES NOT CHECK: %v", err)
		}
		t.step(t.order, "context", "%s = %s  ← %s, %s", e.Key, clip(string(e.Value), 100), t.agentName(e.Writer), check)
	}
}

var taskID = regexp.MustCompile(`task [0-9a-f]{16,}: |task failed: |after \d+ attempts: |no contractor completed it: |call \d+: `)

var refusal = regexp.MustCompile(`([\w.-]+): no bid: ([^;]+)`)

// reason is a step's error without the task IDs and the layers of
// wrapping, for one line; agents that all refused for one reason are
// named once.
func reason(err string) string {
	err = taskID.ReplaceAllString(err, "")
	if ms := refusal.FindAllStringSubmatch(err, -1); len(ms) > 0 {
		var who []string
		for _, m := range ms {
			if m[2] != ms[0][2] {
				who = nil
				break
			}
			who = append(who, m[1])
		}
		if len(who) > 0 {
			err = "no bid from " + strings.Join(who, ", ") + ": " + ms[0][2]
		}
	}
	return clip(err, 90)
}

func clip(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
