package mcp

import (
	"context"
	"encoding/json"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// AnswerTaskIn is answer_task's input.
type AnswerTaskIn struct {
	Task   string `json:"task" jsonschema:"the ID of the input-required task"`
	Answer any    `json:"answer" jsonschema:"the answer to the winner's question (any JSON; the question's schema hints at its shape)"`
}

// Question is what a task's winner asked its requester.
type Question struct {
	Note   string `json:"note" jsonschema:"the question"`
	Schema any    `json:"schema,omitempty" jsonschema:"a hint of the answer's shape (any JSON, commonly a JSON Schema)"`
	Ask    int    `json:"ask" jsonschema:"the question's number in the task"`
}

// addAnswer adds answer_task: a request whose winner asks is
// input-required (its progress notifications say so, and task shows the
// question) until answered here.
func (t *tools) addAnswer(s *sdk.Server) {
	sdk.AddTool(s, &sdk.Tool{
		Name:  "answer_task",
		Title: "Answer a task's question",
		Description: "Answer the question of an input-required task this node requested (its winner asked for more input: " +
			"see the request's progress notifications or the task's question); the task works on. A task that asks nothing is a tool error.",
		Annotations: &sdk.ToolAnnotations{OpenWorldHint: ptr(true), DestructiveHint: ptr(false)},
	}, t.answerTask)
}

func (t *tools) answerTask(ctx context.Context, req *sdk.CallToolRequest, in AnswerTaskIn) (*sdk.CallToolResult, Task, error) {
	c, err := t.client(req)
	if err != nil {
		return nil, Task{}, err
	}
	b, err := json.Marshal(in.Answer)
	if err != nil {
		return nil, Task{}, err
	}
	ti, err := c.AnswerTask(ctx, in.Task, b)
	if err != nil {
		return nil, Task{}, toolError("answer task "+in.Task, err)
	}
	return nil, taskOf(*ti), nil
}
