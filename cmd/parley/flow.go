package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/parleynet/parley/node/api"
	"github.com/parleynet/parley/workflow"
)

func (c *cli) flowCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "flow",
		Short: "Run multi-step workflows on the running daemon",
		Long: `flow runs workflows: YAML files (version: 1) whose steps are each a
negotiation in the mesh, with needs: between them (independent steps run at
once), jq expressions that build each step's input from the workflow input
and earlier outputs, retries, deadlines, budgets, approvals, conditions and
compensations. The daemon runs them itself and keeps them in
<home>/workflows.db: after a crash it resumes them at its next start without
running a completed step again (a step in flight is requested again).`,
		Example: `  parley flow run order.yaml --input '{"sku":"A1","qty":2}' --follow
  parley flow ls
  parley flow show 9c0d1e2f`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(c.flowRunCmd(), c.flowLsCmd(), c.flowShowCmd(), c.flowCancelCmd())
	return cmd
}

func (c *cli) flowRunCmd() *cobra.Command {
	var input string
	var follow, asJSON bool
	cmd := &cobra.Command{
		Use:   "run FILE",
		Short: "Check a workflow file and start it",
		Long: `run sends the file and its input to the daemon, which checks the whole file
first (a cycle, an unknown step in needs, a bad expression, a missing
capability or an unknown field is refused with file:line and the reason)
and then starts it. It prints the workflow's ID; --follow prints each step's
changes until the workflow ends, and exits 0 only if it completed.`,
		Example: `  parley flow run order.yaml --input '{"sku":"A1","qty":2}'
  parley flow run order.yaml --input @order.json --follow
  parley flow run nightly.yaml --follow --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			src, err := readFlowFile(args[0], cmd.InOrStdin())
			if err != nil {
				return err
			}
			body := api.WorkflowBody{File: args[0], Source: string(src)}
			if input != "" {
				if body.Input, err = jsonArg("--input", input, cmd.InOrStdin()); err != nil {
					return err
				}
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			run, err := cl.StartWorkflow(cmd.Context(), body)
			if err != nil {
				var ae *api.Error
				if errors.As(err, &ae) && ae.Code == api.CodeBadRequest {
					return errors.New(ae.Message) // file:line: reason, one a line
				}
				return c.apiErr(err)
			}
			if !follow {
				if asJSON {
					return c.printJSON(run)
				}
				fmt.Fprintf(c.out, "workflow %s started: %d steps (parley flow show %s)\n", run.ID, len(run.Steps), run.ID)
				return nil
			}
			if !asJSON {
				fmt.Fprintf(c.out, "workflow %s started: %d steps\n", run.ID, len(run.Steps))
			}
			return c.followFlow(cmd, cl, run, asJSON)
		},
	}
	cmd.Flags().StringVar(&input, "input", "", "the workflow input: JSON, @FILE or - for stdin")
	cmd.Flags().BoolVar(&follow, "follow", false, "print each step's changes until the workflow ends; exit 0 only if it completed")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the workflow as JSON (with --follow: once it ended)")
	return cmd
}

// readFlowFile reads a workflow file, or stdin for "-", within the file limit.
func readFlowFile(name string, stdin io.Reader) ([]byte, error) {
	r := stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, workflow.MaxSourceSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(b) > workflow.MaxSourceSize {
		return nil, fmt.Errorf("%s: over the %d-byte limit of a workflow file", name, workflow.MaxSourceSize)
	}
	return b, nil
}

// followFlow prints what changes in the workflow's steps, from the
// daemon's event stream, until it has ended.
func (c *cli) followFlow(cmd *cobra.Command, cl *api.Client, run *workflow.Run, asJSON bool) error {
	seen := map[string]string{}
	err := cl.FollowWorkflow(cmd.Context(), run.ID, func(r *workflow.Run) error {
		run = r
		if asJSON {
			return nil
		}
		for _, st := range r.Steps {
			line := stepLine(st)
			if seen[st.Name] != line {
				seen[st.Name] = line
				fmt.Fprintf(c.out, "%s  %s\n", clock(r.Updated), line)
			}
		}
		return nil
	})
	if err != nil {
		if cmd.Context().Err() != nil {
			return fmt.Errorf("interrupted; workflow %s goes on in the daemon (parley flow cancel %s)", run.ID, run.ID)
		}
		return c.apiErr(err)
	}
	if asJSON {
		if err := c.printJSON(run); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(c.out, "workflow %s %s\n", run.ID, run.State)
		if len(run.Output) > 0 {
			fmt.Fprintf(c.out, "output: %s\n", run.Output)
		}
	}
	if run.State != workflow.StateCompleted {
		return fmt.Errorf("workflow %s %s: %s", run.ID, run.State, run.Error)
	}
	return nil
}

func stepLine(st workflow.StepRun) string {
	s := fmt.Sprintf("%-12s %-20s %s", st.Name, st.Capability, st.State)
	if n := len(st.Attempts); n > 0 {
		a := st.Attempts[n-1]
		s += fmt.Sprintf("  attempt %d", a.N)
		if a.WinnerName != "" || a.Winner != "" {
			s += fmt.Sprintf(" won by %s at %g", who(a.Winner, a.WinnerName), a.Price)
		}
	}
	if st.Error != "" {
		s += ": " + st.Error
	}
	if cp := st.Compensation; cp != nil {
		s += fmt.Sprintf("  (compensation %s: %s)", cp.Capability, cp.State)
	}
	return s
}

func (c *cli) flowLsCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "ls",
		Short:   "List the daemon's workflows, newest first",
		Example: "  parley flow ls\n  parley flow ls --json | jq '.[] | select(.state == \"running\")'",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			list, err := cl.Workflows(cmd.Context())
			if err != nil {
				return c.apiErr(err)
			}
			if asJSON {
				return c.printJSON(list)
			}
			if len(list) == 0 {
				fmt.Fprintln(os.Stderr, "no workflows")
				return nil
			}
			tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "WORKFLOW\tNAME\tSTATE\tSTEPS DONE\tUPDATED\tERROR")
			for _, w := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%s\t%s\n", w.ID, w.Name, w.State, w.Done, w.Steps, clock(w.Updated), flowFirstLine(w.Error))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	return cmd
}

func flowFirstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

func (c *cli) flowShowCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:               "show ID",
		Short:             "Print one workflow with each step's attempts, tasks, winners, prices and errors, and its shared context",
		Example:           "  parley flow show 9c0d1e2f3a4b5c6d7e8f901a2b3c4d5e\n  parley flow show 9c0d1e2f3a4b5c6d7e8f901a2b3c4d5e --json | jq .steps",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: c.completeWorkflows,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			run, err := cl.Workflow(cmd.Context(), args[0])
			if err != nil {
				return c.apiErr(err)
			}
			if asJSON {
				return c.printJSON(run)
			}
			fmt.Fprintf(c.out, "workflow %s (%s, %s): %s\n", run.ID, run.Name, run.File, run.State)
			if run.Error != "" {
				fmt.Fprintf(c.out, "error: %s\n", run.Error)
			}
			if run.Resumed > 0 {
				fmt.Fprintf(c.out, "resumed after %d restarts\n", run.Resumed)
			}
			for _, st := range run.Steps {
				fmt.Fprintf(c.out, "  %s\n", stepLine(st))
				for _, a := range st.Attempts {
					fmt.Fprintf(c.out, "      attempt %d  task %s  %s", a.N, a.Task, a.State)
					if a.Winner != "" {
						fmt.Fprintf(c.out, "  winner %s  price %g  (%d bids)", who(a.Winner, a.WinnerName), a.Price, a.Bids)
					}
					if a.Error != "" {
						fmt.Fprintf(c.out, "  %s", flowFirstLine(a.Error))
					}
					fmt.Fprintln(c.out)
				}
			}
			if len(run.Output) > 0 {
				fmt.Fprintf(c.out, "output: %s\n", run.Output)
			}
			wc, err := cl.WorkflowContext(cmd.Context(), run.ID)
			if err != nil {
				return c.apiErr(err)
			}
			if len(wc.Entries) > 0 {
				fmt.Fprintln(c.out, "shared context:")
			}
			for _, e := range wc.Entries {
				by := "the requester"
				if e.Step != "" {
					by = fmt.Sprintf("%s (step %s)", who(e.Writer, e.WriterName), e.Step)
				}
				check := "signature verified"
				if !e.Verified {
					check = "NOT VERIFIED: " + e.Error
				}
				fmt.Fprintf(c.out, "  %s = %s  by %s at %s, %s\n", e.Key, e.Value, by, e.Written.Local().Format(time.TimeOnly), check)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the workflow as JSON")
	return cmd
}

func (c *cli) flowCancelCmd() *cobra.Command {
	return &cobra.Command{
		Use:               "cancel ID",
		Short:             "Cancel a running workflow; its completed steps are compensated",
		Example:           "  parley flow cancel 9c0d1e2f3a4b5c6d7e8f901a2b3c4d5e",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: c.completeWorkflows,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			run, err := cl.CancelWorkflow(cmd.Context(), args[0])
			if err != nil {
				return c.apiErr(err)
			}
			fmt.Fprintf(c.out, "workflow %s: cancel sent (%s)\n", run.ID, run.State)
			return nil
		},
	}
}

func (c *cli) completeWorkflows(cmd *cobra.Command, args []string, prefix string) ([]string, cobra.ShellCompDirective) {
	return c.complete(func(ctx context.Context, cl *api.Client) ([]string, error) {
		list, err := cl.Workflows(ctx)
		var ids []string
		for _, w := range list {
			ids = append(ids, w.ID)
		}
		return ids, err
	})(cmd, args, prefix)
}
