package workflow

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/itchyny/gojq"
	"go.yaml.in/yaml/v3"
)

// Expressions are jq (gojq): jq is made for building JSON from JSON,
// which is all a step's input is, and a jq program is pure — it reads its
// variables and nothing of the node (no env, no files: $ENV and input are
// off). CEL would need a conversion layer for every object literal.
//
// An expression sees $input (the workflow input), $steps (each ended
// step's {output, state, winner, price}), $ctx (the shared-context keys
// the step declared it reads) and $workflow (its ID); `.` is
// {input, steps, ctx} for those who prefer paths.
var exprVars = []string{"$input", "$steps", "$ctx", "$workflow"}

// Bounds of one evaluation: jq can loop forever (`repeat`), so every run
// has a deadline and its result a size.
const (
	exprTimeout = time.Second
	maxExprOut  = 1 << 20
)

// Expr is a compiled jq expression and where it is in the file.
type Expr struct {
	Src  string
	Line int
	code *gojq.Code
}

// MarshalJSON writes the expression's source, for the API.
func (e *Expr) MarshalJSON() ([]byte, error) { return json.Marshal(e.Src) }

func (p *parser) expr(v *yaml.Node, what string) *Expr {
	if v.Kind != yaml.ScalarNode || strings.TrimSpace(v.Value) == "" {
		p.errf(v, "%s: want a jq expression as a string", what)
		return nil
	}
	e, err := compileExpr(v.Value)
	if err != nil {
		line := v.Line
		var pe *gojq.ParseError
		if errors.As(err, &pe) {
			// A block scalar's text starts on the line after its indicator.
			if v.Style == yaml.LiteralStyle || v.Style == yaml.FoldedStyle {
				line++
			}
			if pe.Offset <= len(v.Value) {
				line += strings.Count(v.Value[:pe.Offset], "\n")
			}
		}
		p.errAt(line, "%s: bad expression %q: %v", what, clip(v.Value, 60), err)
		return nil
	}
	e.Line = v.Line
	return e
}

func compileExpr(src string) (*Expr, error) {
	q, err := gojq.Parse(src)
	if err != nil {
		return nil, err
	}
	// No $ENV, no input/inputs: an expression reads its variables only.
	code, err := gojq.Compile(q, gojq.WithVariables(exprVars), gojq.WithEnvironLoader(func() []string { return nil }))
	if err != nil {
		return nil, err
	}
	return &Expr{Src: src, code: code}, nil
}

func clip(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// scope is what an expression sees.
type scope struct {
	Input    any
	Steps    map[string]any
	Ctx      map[string]any
	Workflow string
}

func (s scope) dot() map[string]any {
	return map[string]any{"input": s.Input, "steps": s.Steps, "ctx": s.Ctx}
}

// eval runs e and returns its first result as JSON; an expression with
// no result is null.
func (e *Expr) eval(ctx context.Context, s scope) (json.RawMessage, error) {
	ctx, cancel := context.WithTimeout(ctx, exprTimeout)
	defer cancel()
	steps := s.Steps
	if steps == nil {
		steps = map[string]any{}
	}
	c := s.Ctx
	if c == nil {
		c = map[string]any{}
	}
	iter := e.code.RunWithContext(ctx, s.dot(), s.Input, steps, c, s.Workflow)
	v, ok := iter.Next()
	if !ok {
		return json.RawMessage("null"), nil
	}
	if err, isErr := v.(error); isErr {
		return nil, fmt.Errorf("expression at line %d: %w", e.Line, err)
	}
	b, err := gojq.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("expression at line %d: %w", e.Line, err)
	}
	if len(b) > maxExprOut {
		return nil, fmt.Errorf("expression at line %d: result of %d bytes over the limit of %d", e.Line, len(b), maxExprOut)
	}
	return b, nil
}

// truth evaluates e as a condition: false and null are false, as in jq.
func (e *Expr) truth(ctx context.Context, s scope) (bool, error) {
	b, err := e.eval(ctx, s)
	if err != nil {
		return false, err
	}
	b = bytes.TrimSpace(b)
	return !bytes.Equal(b, []byte("false")) && !bytes.Equal(b, []byte("null")), nil
}

// decode turns JSON into the values gojq takes; numbers stay exact.
func decode(b json.RawMessage) (any, error) {
	if len(b) == 0 {
		return nil, nil
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}
