package node

import (
	"context"
	"encoding/json"
)

// AnswerTask sends input to the winner of a task this node requested, as
// the answer to the question it asked (the task is input-required); the
// answer goes only to that committed winner, on its own stream. It
// returns an error wrapping negotiation.ErrUnknownTask, ErrNoQuestion,
// ErrTooLarge or ErrBadAnswer.
func (n *Node) AnswerTask(ctx context.Context, id string, input json.RawMessage) error {
	if _, err := n.running(); err != nil {
		return err
	}
	return n.neg.Answer(ctx, id, input)
}
