package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/intent"
	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/node/api"
)

type requestFlags struct {
	capability, input, summary, strategy, agent string
	budget                                      float64
	bidWindow, timeout                          time.Duration
	calls                                       int
	asJSON                                      bool
}

func (c *cli) requestCmd() *cobra.Command {
	var f requestFlags
	cmd := &cobra.Command{
		Use:   "request --capability C --input JSON",
		Short: "Have the running daemon negotiate a task with the network's agents",
		Long: `request has one of the running daemon's agents call for proposals on a
capability, take bids for the bid window, award the task to the best bid and
send the input to that contractor only, then wait for the result, moving on
to the next bid or calling again if a contractor fails. It prints the bids,
the winner, the result and the timings, and exits 0 only if the task
completed. Interrupting it cancels the task. A winner's question (the task
is input-required) is printed on stderr with how to answer it.

The summary is the public part of the call that every bidder sees; the input
goes to the winner alone.`,
		Example: `  parley request --capability echo --input '{"text":"hi"}' --bid-window 1s --timeout 30s
  parley request --capability quote.shipping --input @order.json --strategy weighted:1,2
  parley request --capability quote --input '{"sku":"bolt"}' --strategy counter:0.8
  jq .order big.json | parley request --capability pack --input - --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req, err := f.request(cmd.Flags().Changed, cmd.InOrStdin())
			if err != nil {
				return err
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			// No client timeout: the task's own timeout bounds the call.
			stop := watchApprovals(cmd.Context(), cl, f.capability, cmd.ErrOrStderr())
			stopQ := watchQuestions(cmd.Context(), cl, f.capability, cmd.ErrOrStderr())
			out, err := cl.Request(cmd.Context(), req)
			stop()
			stopQ()
			if out == nil {
				if cmd.Context().Err() != nil {
					return errors.New("interrupted: the daemon cancels the task")
				}
				return c.apiErr(err)
			}
			if f.asJSON {
				if err := c.printJSON(out); err != nil {
					return err
				}
			} else if err := printOutcome(c.out, out); err != nil {
				return err
			}
			if out.State != negotiation.StateCompleted {
				return fmt.Errorf("task %s failed: %s", out.Task, out.Reason)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.capability, "capability", "", "capability the task needs (required)")
	fl.StringVar(&f.input, "input", "", "the task's input, sent only to the winner: a JSON value, @FILE or - for stdin (required)")
	fl.StringVar(&f.summary, "summary", "", "the public part of the call that every bidder sees: a JSON value, @FILE or -")
	fl.Float64Var(&f.budget, "budget", 0, "the most to pay; higher bids are refused (default: no limit)")
	fl.DurationVar(&f.bidWindow, "bid-window", 0, "how long to take bids after each call, e.g. 2s (default: the node's)")
	fl.DurationVar(&f.timeout, "timeout", 0, "the whole task's deadline, e.g. 30s (default: the node's)")
	fl.IntVar(&f.calls, "calls", 0, "the most calls for proposals, the retry budget (default: the node's)")
	fl.StringVar(&f.strategy, "strategy", "", "how bids are ranked: cheapest, fastest, weighted:PRICE,SECONDS (price×PRICE + ETA-seconds×SECONDS; weighted alone is 1,1), or counter:FRACTION (counter each bid once at FRACTION of its price, then cheapest) (default: cheapest)")
	fl.StringVar(&f.agent, "agent", "", "hosted agent that requests (default: the default agent)")
	fl.BoolVar(&f.asJSON, "json", false, "print the outcome as one JSON object")
	_ = cmd.MarkFlagRequired("capability")
	_ = cmd.MarkFlagRequired("input")
	_ = cmd.RegisterFlagCompletionFunc("capability", c.flagCompletion(capabilities))
	_ = cmd.RegisterFlagCompletionFunc("agent", c.flagCompletion(agentsWhere()))
	_ = cmd.RegisterFlagCompletionFunc("strategy", cobra.FixedCompletions([]string{"cheapest", "fastest", "weighted", "weighted:1,2", "counter:0.8"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// approvalPoll is how often a waiting request looks for an approval of
// its own: a human is slower than that.
const approvalPoll = 500 * time.Millisecond

// watchApprovals tells w, once each, about approvals on capability that
// appear while a request waits, so that a request held for a human says
// so instead of hanging silently. The request's ID is not known until it
// ends, so an approval is matched by capability. stop ends the watch and
// waits for it.
func watchApprovals(ctx context.Context, cl *api.Client, capability string, w io.Writer) (stop func()) {
	return pollNews(ctx, func(ctx context.Context, news func(key, line string)) error {
		list, err := cl.Approvals(ctx)
		for _, a := range list {
			if a.Capability == capability {
				news(a.ID, fmt.Sprintf("waiting for approval %s (%s at price %g, rule %s): parley approvals approve %s — denied at %s if nobody answers",
					a.ID, a.Stage, a.Price, a.Rule, a.ID, a.Deadline.Local().Format(time.TimeOnly)))
			}
		}
		return err
	}, w)
}

// pollNews calls look every approvalPoll until stop, and prints each line
// it reports once, by key. A failed look is skipped: the request's own
// answer says what went wrong.
func pollNews(ctx context.Context, look func(ctx context.Context, news func(key, line string)) error, w io.Writer) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		seen := map[string]bool{}
		news := func(key, line string) {
			if !seen[key] {
				seen[key] = true
				fmt.Fprintln(w, line)
			}
		}
		tick := time.NewTicker(approvalPoll)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			_ = look(ctx, news)
		}
	}()
	return func() { cancel(); <-done }
}

// request checks the flags locally, before anything is sent. A flag that
// is given must hold a usable value: its zero does not mean the default.
func (f *requestFlags) request(given func(flag string) bool, stdin io.Reader) (api.RequestBody, error) {
	var none api.RequestBody
	if err := intent.ValidCapability(f.capability); err != nil {
		return none, fmt.Errorf("--capability: %w", err)
	}
	req := api.RequestBody{Capability: f.capability, Budget: f.budget, Calls: f.calls, Strategy: f.strategy, Agent: f.agent}
	if f.input == "-" && f.summary == "-" {
		return none, errors.New("--input - and --summary -: only one of them can read stdin")
	}
	for _, j := range []struct {
		flag, value string
		dst         *json.RawMessage
	}{{"--input", f.input, &req.Input}, {"--summary", f.summary, &req.Summary}} {
		if j.value == "" && j.flag == "--summary" {
			continue
		}
		v, err := jsonArg(j.flag, j.value, stdin)
		if err != nil {
			return none, err
		}
		*j.dst = v
	}
	if f.budget < 0 || math.IsNaN(f.budget) || math.IsInf(f.budget, 0) {
		return none, fmt.Errorf("--budget %g: want a price ≥ 0 (0 means no limit)", f.budget)
	}
	if f.calls < 0 || (f.calls == 0 && given("calls")) {
		return none, fmt.Errorf("--calls %d: want at least 1", f.calls)
	}
	for _, d := range []struct {
		flag  string
		value time.Duration
		dst   *string
	}{{"bid-window", f.bidWindow, &req.BidWindow}, {"timeout", f.timeout, &req.Timeout}} {
		if d.value < 0 || (d.value == 0 && given(d.flag)) {
			return none, fmt.Errorf("--%s %s: want a positive duration such as 2s", d.flag, d.value)
		}
		if d.value > 0 {
			*d.dst = d.value.String()
		}
	}
	if f.bidWindow > 0 && f.timeout > 0 && f.bidWindow >= f.timeout {
		return none, fmt.Errorf("--bid-window %s: must be shorter than --timeout %s", f.bidWindow, f.timeout)
	}
	if _, err := negotiation.ParseStrategy(f.strategy); err != nil {
		return none, fmt.Errorf("--strategy: %w", err)
	}
	return req, nil
}

// printOutcome writes an outcome as readable lines.
func printOutcome(w io.Writer, out *negotiation.Outcome) error {
	var b strings.Builder
	fmt.Fprintf(&b, "task: %s (%s, %d call(s))\n", out.Task, out.Capability, out.Calls)
	if len(out.Bids) == 0 {
		b.WriteString("bids: none\n")
	}
	for _, bid := range out.Bids {
		fmt.Fprintf(&b, "bid: %s price %g eta %s %s", who(bid.Agent, bid.Name), bid.Price, dur(bid.ETA), bid.Status)
		if bid.Rank > 0 {
			fmt.Fprintf(&b, " rank %d", bid.Rank)
		}
		fmt.Fprintf(&b, " call %d", bid.Call)
		if bid.Note != "" {
			fmt.Fprintf(&b, " (%s)", bid.Note)
		}
		b.WriteString("\n")
		for _, r := range bid.Rounds {
			fmt.Fprintf(&b, "  counter %d: price %g eta %s → %s: price %g eta %s", r.Counter.Round, r.Counter.Price, dur(r.Counter.ETA), r.Reply, r.Bid.Price, dur(r.Bid.ETA))
			if r.Note != "" {
				fmt.Fprintf(&b, " (%s)", r.Note)
			}
			b.WriteString("\n")
		}
	}
	if out.Winner != "" {
		fmt.Fprintf(&b, "winner: %s", out.Winner)
		if out.WinnerName != "" {
			fmt.Fprintf(&b, " (%s)", out.WinnerName)
		}
		if out.WinnerPeer != "" {
			fmt.Fprintf(&b, " on %s", out.WinnerPeer)
		}
		b.WriteString("\n")
	}
	if out.Rationale != "" {
		fmt.Fprintf(&b, "award: %s\n", out.Rationale)
	}
	if len(out.Result) > 0 {
		fmt.Fprintf(&b, "result: %s\n", out.Result)
	}
	fmt.Fprintf(&b, "timings: negotiation %s, work %s, total %s\n", orDash(out.Timings.Negotiation), orDash(out.Timings.Work), dur(out.Timings.Total))
	fmt.Fprintf(&b, "state: %s", out.State)
	if out.Reason != "" {
		fmt.Fprintf(&b, " (%s)", out.Reason)
	}
	b.WriteString("\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// who names an agent for people: its name, if it gave one, and the end of
// its AgentID, which is who it is.
func who(id identity.AgentID, name string) string {
	if name == "" {
		return shortID(id)
	}
	return printable(name) + " (" + shortID(id) + ")"
}

// named is an AgentID in full, with the agent's name if it gave one.
func named(id identity.AgentID, name string) string {
	if name == "" {
		return string(id)
	}
	return printable(name) + " " + string(id)
}

// shortID is the end of an AgentID, enough to tell agents apart.
func shortID(a identity.AgentID) string {
	s := string(a)
	if len(s) > 20 {
		return "…" + s[len(s)-8:]
	}
	return s
}

// dur rounds a duration for people.
func dur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(100 * time.Microsecond).String()
	}
	return d.String()
}

// orDash is dur, or "-" for a phase never reached.
func orDash(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return dur(d)
}

func (c *cli) tasksCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "tasks",
		Short: "List the running daemon's tasks, as requester and as contractor",
		Long: `tasks lists the tasks the running daemon's agents requested or work on,
newest first: ID, role, capability, this node's agent, the other side (the
winner or the requester), state and when it last changed. A contractor node
lists a task once per agent of its that bid. 'parley tasks show ID' prints
one task with its state history, 'parley tasks cancel ID' cancels it,
'parley tasks answer ID JSON' answers an input-required task's question.`,
		Example: `  parley tasks
  parley tasks show 3b6f0c1d
  parley tasks cancel 3b6f0c1d
  parley tasks answer 3b6f0c1d '"M"'
  parley tasks --json | jq '.[] | select(.state == "working")'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			tasks, err := cl.Tasks(cmd.Context())
			if err != nil {
				return c.apiErr(err)
			}
			if asJSON {
				return c.printJSON(tasks)
			}
			if len(tasks) == 0 {
				fmt.Fprintln(os.Stderr, "no tasks")
				return nil
			}
			tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
			// A contractor node lists one row per agent that bid on a task.
			fmt.Fprintln(tw, "TASK\tROLE\tCAPABILITY\tAGENT\tOTHER SIDE\tSTATE\tUPDATED")
			for _, t := range tasks {
				other := "-"
				if t.Peer != "" {
					other = who(t.Peer, t.PeerName)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.Task, t.Role, t.Capability, who(t.Agent, t.AgentName), other, t.State, clock(t.Updated))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	cmd.AddCommand(c.taskShowCmd(), c.taskCancelCmd(), c.taskAnswerCmd())
	return cmd
}

func (c *cli) taskShowCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:               "show ID",
		Short:             "Print one task with its state history",
		Example:           "  parley tasks show 3b6f0c1d\n  parley tasks show 3b6f0c1d --json | jq .history",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: c.completeTasks,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			t, err := cl.Task(cmd.Context(), args[0])
			if err != nil {
				return c.apiErr(err)
			}
			if asJSON {
				return c.printJSON(t)
			}
			return printTask(c.out, t)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printTask(w io.Writer, t *negotiation.TaskInfo) error {
	var b strings.Builder
	fmt.Fprintf(&b, "task: %s\nrole: %s\ncapability: %s\nagent: %s\n", t.Task, t.Role, t.Capability, named(t.Agent, t.AgentName))
	if t.Peer != "" {
		other := "contractor"
		if t.Role == negotiation.RoleContractor {
			other = "requester"
		}
		fmt.Fprintf(&b, "%s: %s\n", other, named(t.Peer, t.PeerName))
	}
	fmt.Fprintf(&b, "state: %s\nupdated: %s\nhistory:\n", t.State, clock(t.Updated))
	for _, h := range t.History {
		fmt.Fprintf(&b, "  %s %s", h.At.Local().Format("15:04:05.000"), h.State)
		if h.Note != "" {
			fmt.Fprintf(&b, " %s", h.Note)
		}
		b.WriteString("\n")
	}
	printQuestion(&b, t.Question)
	if _, err := io.WriteString(w, b.String()); err != nil {
		return err
	}
	if t.Outcome != nil {
		if _, err := io.WriteString(w, "outcome:\n"); err != nil {
			return err
		}
		return printOutcome(indent{w}, t.Outcome)
	}
	return nil
}

// indent prefixes each line written through it with two spaces; it expects
// whole lines.
type indent struct{ w io.Writer }

func (in indent) Write(p []byte) (int, error) {
	s := strings.TrimSuffix(string(p), "\n")
	_, err := io.WriteString(in.w, "  "+strings.ReplaceAll(s, "\n", "\n  ")+"\n")
	return len(p), err
}

func (c *cli) taskCancelCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel a task the running daemon requested or works on",
		Long: `cancel tells the other side of the task and stops the local agent's part
of it. It fails if the task is unknown or has already ended.`,
		Example:           "  parley tasks cancel 3b6f0c1d",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: c.completeTasks,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			t, err := cl.CancelTask(cmd.Context(), args[0])
			if err != nil {
				return c.apiErr(err)
			}
			t = settled(cmd.Context(), cl, t)
			_, err = fmt.Fprintf(c.out, "task %s: cancel sent, state %s\n", args[0], t.State)
			return err
		},
	}
}

// settled waits briefly for a canceled task to reach a terminal state, so
// the state printed is the one it ends in when that is quick.
func settled(ctx context.Context, cl *api.Client, t *negotiation.TaskInfo) *negotiation.TaskInfo {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !t.State.Terminal() {
		select {
		case <-ctx.Done():
			return t
		case <-tick.C:
		}
		nt, err := cl.Task(ctx, t.Task)
		if err != nil {
			return t
		}
		t = nt
	}
	return t
}

// clock formats a time for a table: local, to the second.
func clock(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}
