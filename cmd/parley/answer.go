package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/node/api"
)

// taskAnswerCmd answers the question of an input-required task.
func (c *cli) taskAnswerCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "answer ID JSON",
		Short: "Answer the question of an input-required task the running daemon requested",
		Long: `answer sends JSON (a literal, @FILE or - for stdin) to the winner of a task
whose winner asked a question ('parley tasks show ID' prints it), and the
task works on. It fails if the task is unknown or asks nothing now.`,
		Example: `  parley tasks answer 3b6f0c1d '"M"'
  parley tasks answer 3b6f0c1d @size.json`,
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: c.completeTasks,
		RunE: func(cmd *cobra.Command, args []string) error {
			input, err := jsonArg("the answer", args[1], cmd.InOrStdin())
			if err != nil {
				return err
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			t, err := cl.AnswerTask(cmd.Context(), args[0], input)
			if err != nil {
				return c.apiErr(err)
			}
			_, err = fmt.Fprintf(c.out, "task %s: answer sent, state %s\n", args[0], t.State)
			return err
		},
	}
}

// printQuestion prints an input-required task's open question.
func printQuestion(w io.Writer, q *negotiation.Question) {
	if q == nil {
		return
	}
	fmt.Fprintf(w, "question %d: %s\n", q.Ask, q.Note)
	if len(q.Schema) > 0 {
		fmt.Fprintf(w, "answer schema: %s\n", q.Schema)
	}
}

// watchQuestions tells w, once each, about the questions winners ask on
// capability's requested tasks while a request waits, and how to answer
// them, so that a request waiting for its requester says so instead of
// hanging silently. Like watchApprovals it matches by capability: the
// request's ID is not known until it ends. stop ends the watch and waits
// for it.
func watchQuestions(ctx context.Context, cl *api.Client, capability string, w io.Writer) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		seen := map[string]bool{}
		tick := time.NewTicker(approvalPoll)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			tasks, err := cl.Tasks(ctx)
			if err != nil {
				continue // the request's own answer says what went wrong
			}
			for _, t := range tasks {
				q := t.Question
				if t.Role != negotiation.RoleRequester || t.Capability != capability || q == nil {
					continue
				}
				key := fmt.Sprintf("%s/%d", t.Task, q.Ask)
				if seen[key] {
					continue
				}
				seen[key] = true
				fmt.Fprintf(w, "task %s asks (question %d): %s — answer with: parley tasks answer %s JSON\n", t.Task, q.Ask, q.Note, t.Task)
			}
		}
	}()
	return func() { cancel(); <-done }
}
