package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/parleynet/parley/tracing"
)

func (c *cli) traceCmd() *cobra.Command {
	var asJSON, local bool
	cmd := &cobra.Command{
		Use:   "trace ID",
		Short: "Show a task's spans from every node that took part, as a timeline",
		Long: `trace gathers the spans of a task (or of a trace ID) from the running
daemon and from the nodes that took part in the task: the bidders' nodes
of a task this node requested, the requester's node of one it bid on.
Each node answers only nodes that took part (over /parley/trace/1.0.0).
It prints them parents before children: when each span started after the
first, on which node, the phase, how long it took, and what was decided
(bids' prices and ETAs, the award's rationale, results and failures).
A span caused by another node's shows the hop's latency. Tracing must be
on (config.yaml tracing.enabled) on each node.`,
		Example: `  parley trace 3b6f0c1d
  parley trace 3b6f0c1d --json | jq '.spans[] | select(.name == "negotiation.bid")'`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: c.completeTasks,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			view, err := cl.Trace(cmd.Context(), args[0], !local)
			if err != nil {
				return c.apiErr(err)
			}
			if asJSON {
				return c.printJSON(view)
			}
			return printTimeline(c, view.Spans)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the spans as JSON")
	cmd.Flags().BoolVar(&local, "local", false, "only this node's spans")
	return cmd
}

func printTimeline(c *cli, spans []tracing.Span) error {
	if len(spans) == 0 {
		return nil
	}
	t0 := spans[0].Start
	byID := map[string]tracing.Span{}
	depth := map[string]int{}
	for _, s := range spans {
		if s.Start.Before(t0) {
			t0 = s.Start
		}
		byID[s.SpanID] = s
	}
	fmt.Fprintf(c.out, "trace %s\n", spans[0].TraceID)
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "AT\tNODE\tAGENT\tSPAN\tTOOK\tDETAIL")
	for _, s := range spans {
		d := 0
		p, ok := byID[s.ParentID]
		if ok {
			d = depth[p.SpanID] + 1
		}
		depth[s.SpanID] = d
		detail := spanDetail(s)
		if ok && p.Node != s.Node {
			detail = strings.TrimSpace(fmt.Sprintf("hop %s; %s", s.Start.Sub(p.Start).Round(10*time.Microsecond), detail))
			detail = strings.TrimSuffix(detail, ";")
		}
		agent, _ := s.Attributes[string(tracing.AttrName)].(string)
		fmt.Fprintf(tw, "+%s\t%s\t%s\t%s%s\t%s\t%s\n", s.Start.Sub(t0).Round(10*time.Microsecond), shortPeer(s.Node), agent,
			strings.Repeat("  ", min(d, 8)), s.Name, s.End.Sub(s.Start).Round(10*time.Microsecond), detail)
	}
	return tw.Flush()
}

// spanDetail is what a span decided, in a few words.
func spanDetail(s tracing.Span) string {
	a := s.Attributes
	var parts []string
	add := func(format, key string) {
		if v, ok := a[key]; ok && fmt.Sprint(v) != "" {
			parts = append(parts, fmt.Sprintf(format, v))
		}
	}
	switch s.Name {
	case "negotiation.request":
		add("%v", "parley.capability")
		add("state %v", "parley.state")
		add("bids %v", "parley.bids")
		add("winner %v", "parley.winner_name")
	case "negotiation.call":
		add("call %v", "parley.call")
		add("window %v", "parley.bid_window")
		add("proposals %v", "parley.proposals")
	case "negotiation.bid":
		add("price %v", "parley.price")
		add("eta %vms", "parley.eta_ms")
		add("verdict %v", "parley.verdict")
	case "negotiation.award":
		add("to %v", "parley.bidder_name")
		add("price %v", "parley.price")
		add("why: %v", "parley.rationale")
	case "negotiation.result":
		add("%v bytes", "parley.output_bytes")
	}
	for _, e := range s.Events {
		if e.Name == "audit.append" {
			parts = append(parts, fmt.Sprintf("audited %v in %vµs", e.Attributes["parley.audit_kind"], e.Attributes["parley.audit_us"]))
			continue
		}
		if strings.HasPrefix(e.Name, "policy.") {
			p := fmt.Sprintf("%s: %v", e.Name, e.Attributes["parley.verdict"])
			if why, ok := e.Attributes["parley.reason"]; ok {
				p += fmt.Sprintf(" (%v)", why)
			}
			parts = append(parts, p)
			continue
		}
		name, _ := e.Attributes["parley.bidder_name"].(string)
		parts = append(parts, fmt.Sprintf("%s from %s %v@%vms", e.Name, name, e.Attributes["parley.price"], e.Attributes["parley.eta_ms"]))
	}
	if s.Status == "error" {
		parts = append(parts, "error: "+s.Message)
	}
	return strings.Join(parts, "; ")
}

func shortPeer(p string) string {
	if len(p) > 8 {
		return "…" + p[len(p)-6:]
	}
	return p
}
