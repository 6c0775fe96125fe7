package nodetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/parleynet/parley/negotiation"
)

// SizeQuestion and SizeSchema are what AskSize asks its requester.
const (
	SizeQuestion = "which size?"
	SizeSchema   = `{"enum":["S","M"]}`
)

// AskSize is a winner's work that asks its requester SizeQuestion and
// answers {"size": <the answer>}: the tests' agent for input-required.
func AskSize(ctx context.Context, task negotiation.Task) (json.RawMessage, error) {
	if task.Ask == nil {
		return nil, errors.New("the requester cannot be asked")
	}
	a, err := task.Ask(ctx, SizeQuestion, json.RawMessage(SizeSchema))
	if err != nil {
		return nil, err
	}
	return json.RawMessage(fmt.Sprintf(`{"size":%s}`, a)), nil
}

// Sizer is an agent that bids 1 and works as AskSize.
func Sizer() negotiation.HandlerFuncs {
	return negotiation.HandlerFuncs{
		BidFunc: func(context.Context, negotiation.Call) (negotiation.Bid, error) {
			return negotiation.Bid{Price: 1}, nil
		},
		WorkFunc: AskSize,
	}
}
