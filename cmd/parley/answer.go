package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/parleynet/parley/negotiation"
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
