package main

import (
	"context"
	"fmt"
	"io"

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
	return pollNews(ctx, func(ctx context.Context, news func(key, line string)) error {
		tasks, err := cl.Tasks(ctx)
		for _, t := range tasks {
			if q := t.Question; t.Role == negotiation.RoleRequester && t.Capability == capability && q != nil {
				news(fmt.Sprintf("%s/%d", t.Task, q.Ask),
					fmt.Sprintf("task %s asks (question %d): %s — answer with: parley tasks answer %s JSON", t.Task, q.Ask, q.Note, t.Task))
			}
		}
		return err
	}, w)
}
