package workflow

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const goodFile = `version: 1
name: order
input:
  required: [sku]
deadline: 1m
steps:
  forecast:
    capability: forecast
    input: '{sku: $input.sku}'
  stock:
    capability: inventory
    needs: [forecast]
    input: |
      {sku: $input.sku,
       units: $steps.forecast.output.units}
    retry: {attempts: 3, backoff: 200ms}
    budget: 12.5
    context: {reads: [stock], writes: [reserved]}
    compensate:
      capability: inventory.release
      input: '{id: $steps.stock.output.id}'
  price:
    capability: pricing
    needs: [forecast]
    if: '$input.qty > 0'
    strategy: fastest
  ship:
    capability: shipping
    needs: [stock, price]
    approval: true
    deadline: 5s
    bid_window: 100ms
success: '$steps.ship.output.ok'
output: '{tracking: $steps.ship.output.tracking}'
`

func TestParseGood(t *testing.T) {
	s, err := Parse("order.yaml", []byte(goodFile))
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "order" || len(s.Steps) != 4 || s.Deadline != time.Minute || s.Required[0] != "sku" {
		t.Fatalf("spec = %+v", s)
	}
	st := s.Steps[1]
	if st.Name != "stock" || st.Retry != (Retry{3, 200 * time.Millisecond}) || st.Budget != 12.5 || st.Compensate.Capability != "inventory.release" ||
		st.Context.Reads[0] != "stock" || st.Line != 10 {
		t.Fatalf("stock = %+v", st)
	}
	if sh := s.Steps[3]; !sh.Approval || sh.Deadline != 5*time.Second || sh.BidWindow != 100*time.Millisecond || sh.Retry.Attempts != 1 {
		t.Fatalf("ship = %+v", sh)
	}
}

// Every refusal names the file, the line and the reason, before anything runs.
func TestParseBad(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      string // file:line: reason, in the error
	}{
		{"cycle", "version: 1\nsteps:\n  a:\n    capability: x\n    needs: [c]\n  b:\n    capability: x\n    needs: [a]\n  c:\n    capability: x\n    needs: [b]\n",
			"f.yaml:8: step b: needs form a cycle: a → c → b → a"},
		{"unknown need", "version: 1\nsteps:\n  a:\n    capability: x\n  b:\n    capability: x\n    needs: [a, z]\n", `f.yaml:7: step b: needs unknown step "z"`},
		{"self need", "version: 1\nsteps:\n  a:\n    capability: x\n    needs: [a]\n", "f.yaml:5: step a.needs: a step cannot need itself"},
		{"bad expression", "version: 1\nsteps:\n  a:\n    capability: x\n    input: '{sku: $input.sku'\n", `f.yaml:5: step a.input: bad expression "{sku: $input.sku": unexpected EOF`},
		{"bad expression in a block", "version: 1\nsteps:\n  a:\n    capability: x\n    input: |\n      {a: 1,\n       b: ]}\n", "f.yaml:7: step a.input: bad expression"},
		{"unknown variable", "version: 1\nsteps:\n  a:\n    capability: x\n    if: '$nope'\n", "f.yaml:5: step a.if: bad expression \"$nope\": variable not defined: $nope"},
		{"missing capability", "version: 1\nsteps:\n  a:\n    input: '.'\n", "f.yaml:3: step a: capability is required"},
		{"bad capability", "version: 1\nsteps:\n  a:\n    capability: 'Has Space'\n", "f.yaml:4: step a.capability:"},
		{"unknown field", "version: 1\nsteps:\n  a:\n    capability: x\n    retries: 3\n", `f.yaml:5: step a: unknown field "retries"`},
		{"unknown top field", "version: 1\nsteep: {}\nsteps:\n  a: {capability: x}\n", `f.yaml:2: workflow: unknown field "steep"`},
		{"no version", "steps:\n  a: {capability: x}\n", "f.yaml:1: version is required"},
		{"wrong version", "version: 2\nsteps:\n  a: {capability: x}\n", `f.yaml:1: version: "2" is not supported; want 1`},
		{"no steps", "version: 1\n", "f.yaml:1: steps is required"},
		{"duplicate step", "version: 1\nsteps:\n  a: {capability: x}\n  a: {capability: y}\n", `f.yaml:4: step "a" is already defined at line 3`},
		{"bad step name", "version: 1\nsteps:\n  Big: {capability: x}\n", `f.yaml:3: step name "Big"`},
		{"bad duration", "version: 1\nsteps:\n  a: {capability: x, deadline: soon}\n", `f.yaml:3: step a.deadline: "soon": want a positive duration`},
		{"bad attempts", "version: 1\nsteps:\n  a:\n    capability: x\n    retry: {attempts: 0}\n", `f.yaml:5: step a.retry.attempts: "0"`},
		{"negative budget", "version: 1\nsteps:\n  a: {capability: x, budget: -1}\n", `f.yaml:3: step a.budget: "-1": want a number ≥ 0`},
		{"bad strategy", "version: 1\nsteps:\n  a: {capability: x, strategy: luck}\n", `f.yaml:3: step a.strategy: strategy "luck"`},
		{"needs in a compensation", "version: 1\nsteps:\n  a:\n    capability: x\n    compensate: {capability: y, needs: [a]}\n", `f.yaml:5: step a.compensate: unknown field "needs"`},
		{"yaml syntax", "version: 1\nsteps:\n  a: [\n", "f.yaml:3: YAML: did not find expected node content"},
		{"empty", "", "f.yaml: empty file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("f.yaml", []byte(tc.src))
			if err == nil {
				t.Fatal("parsed")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("%v does not wrap ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error:\n%v\nwant it to contain\n%s", err, tc.want)
			}
		})
	}
}

// Every problem at once, in line order.
func TestParseReportsAll(t *testing.T) {
	_, err := Parse("f.yaml", []byte("version: 1\nsteps:\n  a:\n    capability: x\n    bogus: 1\n  b:\n    needs: [q]\n"))
	var pe ParseErrors
	if !errors.As(err, &pe) || len(pe) != 3 || pe[0].Line != 5 || pe[1].Line != 6 || pe[2].Line != 7 {
		t.Fatalf("errors = %v", err)
	}
}

// The example in examples/workflow (and the README) parses.
func TestParseExamples(t *testing.T) {
	files, _ := filepath.Glob("../examples/workflow/*.yaml")
	if len(files) == 0 {
		t.Fatal("no examples")
	}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		s, err := Parse(f, src)
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Steps) < 2 {
			t.Fatalf("%s: %d steps", f, len(s.Steps))
		}
	}
}
