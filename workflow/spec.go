package workflow

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/parleynet/parley/intent"
	"github.com/parleynet/parley/negotiation"
)

// Version is the only workflow file version this package reads.
const Version = 1

// Bounds of a workflow file, whatever the engine's config says.
const (
	MaxSourceSize = 256 << 10 // bytes of YAML
	maxErrors     = 20        // reported at once; the rest are counted
)

// ErrInvalid is wrapped by every error of Parse.
var ErrInvalid = errors.New("invalid workflow")

// Spec is a parsed, checked workflow file.
type Spec struct {
	Version int
	Name    string
	// Required lists the keys the workflow input must have.
	Required []string
	// Steps in file order.
	Steps []*Step
	// Deadline bounds the whole workflow (0: the sum of its steps').
	Deadline time.Duration
	// Success, if set, must be true once every step has ended, or the
	// workflow fails (and compensates).
	Success *Expr
	// Output builds the workflow's output; nil keeps the outputs of the
	// steps no other step needs.
	Output *Expr
}

// Step is one unit of work: a negotiation for Capability.
type Step struct {
	Name       string
	Capability string
	Needs      []string
	Input      *Expr // nil: the workflow input
	Summary    *Expr // the call's public part; nil sends none
	If         *Expr // nil: always
	Deadline   time.Duration
	BidWindow  time.Duration
	EnoughBids int // close the bid window at this many bids; 0 waits it out
	Retry      Retry
	Budget     float64
	Approval   bool
	Strategy   string
	Agent      string // the requesting hosted agent; "" is the default
	Context    ContextKeys
	Compensate *Step // run when a later step fails for good
	Line       int   // where the step starts in the file

	needLine map[string]int // where each of Needs is written
}

// Retry is a step's retry rule: Attempts requests at most (1 = no retry),
// waiting Backoff, doubled after each failure, between them.
type Retry struct {
	Attempts int
	Backoff  time.Duration
}

// ContextKeys are the shared-context keys a step declares.
type ContextKeys struct {
	Reads  []string
	Writes []string
}

// Defaults of a step's fields.
const (
	DefaultStepDeadline = 30 * time.Second
	DefaultAttempts     = 1
	DefaultBackoff      = time.Second
	maxAttempts         = 10
	maxBackoff          = time.Minute
)

// ParseError is one problem of a workflow file, at a line.
type ParseError struct {
	File string
	Line int
	Msg  string
}

func (e *ParseError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// ParseErrors are all the problems found in one file, in line order.
type ParseErrors []*ParseError

func (es ParseErrors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Is makes errors.Is(err, ErrInvalid) hold.
func (es ParseErrors) Is(target error) bool { return target == ErrInvalid }

var stepName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)

type parser struct {
	file string
	errs ParseErrors
	more int
}

func (p *parser) errf(n *yaml.Node, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	p.errAt(line, format, args...)
}

func (p *parser) errAt(line int, format string, args ...any) {
	if len(p.errs) >= maxErrors {
		p.more++
		return
	}
	p.errs = append(p.errs, &ParseError{File: p.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// Parse reads a workflow file; file names it in errors. Every problem is
// reported with its line, and nothing is returned unless there are none:
// a workflow runs whole or not at all.
func Parse(file string, src []byte) (*Spec, error) {
	p := &parser{file: file}
	if len(src) > MaxSourceSize {
		p.errAt(0, "%d bytes, over the limit of %d", len(src), MaxSourceSize)
		return nil, p.errs
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		line, msg := yamlLine(err)
		p.errAt(line, "%s", msg)
		return nil, p.errs
	}
	if len(doc.Content) == 0 {
		p.errAt(0, "empty file: want a mapping with version, steps")
		return nil, p.errs
	}
	s := p.spec(doc.Content[0])
	p.graph(s)
	if len(p.errs) > 0 {
		slices.SortStableFunc(p.errs, func(a, b *ParseError) int { return a.Line - b.Line })
		if p.more > 0 {
			p.errs = append(p.errs, &ParseError{File: file, Msg: fmt.Sprintf("and %d more problems", p.more)})
		}
		return nil, p.errs
	}
	return s, nil
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func yamlLine(err error) (int, string) {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(strings.SplitN(msg, "\n", 2)[0]); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n, "YAML: " + m[2]
	}
	return 0, msg
}

// fields walks a mapping, refusing duplicate and unknown keys.
func (p *parser) fields(n *yaml.Node, what string, known []string, f func(key string, k, v *yaml.Node)) {
	if n.Kind != yaml.MappingNode {
		p.errf(n, "%s: want a mapping", what)
		return
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if at, dup := seen[k.Value]; dup {
			p.errf(k, "%s: %q is already given at line %d", what, k.Value, at)
			continue
		}
		seen[k.Value] = k.Line
		if !slices.Contains(known, k.Value) {
			p.errf(k, "%s: unknown field %q (want one of %s)", what, k.Value, strings.Join(known, ", "))
			continue
		}
		f(k.Value, k, v)
	}
}

func (p *parser) spec(root *yaml.Node) *Spec {
	s := &Spec{}
	var steps *yaml.Node
	versionAt := 0
	p.fields(root, "workflow", []string{"version", "name", "input", "steps", "deadline", "success", "output"}, func(key string, k, v *yaml.Node) {
		switch key {
		case "version":
			versionAt = k.Line
			if n, err := strconv.Atoi(v.Value); err != nil || v.Kind != yaml.ScalarNode || n != Version {
				p.errf(v, "version: %q is not supported; want %d", v.Value, Version)
			} else {
				s.Version = n
			}
		case "name":
			s.Name = p.str(v, "name")
		case "input":
			p.fields(v, "input", []string{"required"}, func(_ string, _, v *yaml.Node) { s.Required = p.strs(v, "input.required") })
		case "steps":
			steps = v
		case "deadline":
			s.Deadline = p.duration(v, "deadline")
		case "success":
			s.Success = p.expr(v, "success")
		case "output":
			s.Output = p.expr(v, "output")
		}
	})
	if root.Kind != yaml.MappingNode {
		return s
	}
	if versionAt == 0 {
		p.errf(root, "version is required (version: %d)", Version)
	}
	if steps == nil {
		p.errf(root, "steps is required: a mapping of step names to steps")
		return s
	}
	if steps.Kind != yaml.MappingNode || len(steps.Content) == 0 {
		p.errf(steps, "steps: want a mapping of step names to steps, with at least one")
		return s
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(steps.Content); i += 2 {
		k, v := steps.Content[i], steps.Content[i+1]
		if !stepName.MatchString(k.Value) {
			p.errf(k, "step name %q: want lower case letters, digits and _, starting with a letter, at most 63", k.Value)
			continue
		}
		if at, dup := seen[k.Value]; dup {
			p.errf(k, "step %q is already defined at line %d", k.Value, at)
			continue
		}
		seen[k.Value] = k.Line
		st := p.step(k.Value, k, v, false)
		s.Steps = append(s.Steps, st)
	}
	return s
}

func (p *parser) step(name string, k, v *yaml.Node, compensation bool) *Step {
	st := &Step{Name: name, Line: k.Line, Retry: Retry{Attempts: DefaultAttempts, Backoff: DefaultBackoff}}
	what := "step " + name
	known := []string{"capability", "needs", "input", "summary", "if", "deadline", "bid_window", "enough_bids", "retry", "budget", "approval", "strategy", "agent", "context", "compensate"}
	if compensation {
		what += ".compensate"
		known = []string{"capability", "input", "summary", "deadline", "bid_window", "enough_bids", "retry", "budget", "strategy", "agent"}
	}
	capAt := false
	p.fields(v, what, known, func(key string, k, v *yaml.Node) {
		switch key {
		case "capability":
			capAt = true
			st.Capability = p.str(v, what+".capability")
			if st.Capability != "" {
				if err := intent.ValidCapability(st.Capability); err != nil {
					p.errf(v, "%s.capability: %v", what, err)
				}
			}
		case "needs":
			st.Needs = p.strs(v, what+".needs")
			st.needLine = map[string]int{}
			for _, e := range v.Content {
				if _, seen := st.needLine[e.Value]; !seen {
					st.needLine[e.Value] = e.Line
				}
				if e.Value == name {
					p.errf(e, "%s.needs: a step cannot need itself", what)
				}
			}
		case "input":
			st.Input = p.expr(v, what+".input")
		case "summary":
			st.Summary = p.expr(v, what+".summary")
		case "if":
			st.If = p.expr(v, what+".if")
		case "deadline":
			st.Deadline = p.duration(v, what+".deadline")
		case "bid_window":
			st.BidWindow = p.duration(v, what+".bid_window")
		case "enough_bids":
			n, err := strconv.Atoi(v.Value)
			if err != nil || v.Kind != yaml.ScalarNode || n < 1 {
				p.errf(v, "%s.enough_bids: %q: want a whole number ≥ 1", what, v.Value)
				return
			}
			st.EnoughBids = n
		case "retry":
			p.fields(v, what+".retry", []string{"attempts", "backoff"}, func(key string, _, v *yaml.Node) {
				if key == "backoff" {
					st.Retry.Backoff = p.duration(v, what+".retry.backoff")
					if st.Retry.Backoff > maxBackoff {
						p.errf(v, "%s.retry.backoff: %s is over the limit of %s", what, st.Retry.Backoff, maxBackoff)
					}
					return
				}
				n, err := strconv.Atoi(v.Value)
				if err != nil || v.Kind != yaml.ScalarNode || n < 1 || n > maxAttempts {
					p.errf(v, "%s.retry.attempts: %q: want a whole number from 1 to %d", what, v.Value, maxAttempts)
					return
				}
				st.Retry.Attempts = n
			})
		case "budget":
			f, err := strconv.ParseFloat(v.Value, 64)
			if err != nil || v.Kind != yaml.ScalarNode || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
				p.errf(v, "%s.budget: %q: want a number ≥ 0", what, v.Value)
				return
			}
			st.Budget = f
		case "approval":
			b, err := strconv.ParseBool(v.Value)
			if err != nil || v.Kind != yaml.ScalarNode {
				p.errf(v, "%s.approval: %q: want true or false", what, v.Value)
				return
			}
			st.Approval = b
		case "strategy":
			st.Strategy = p.str(v, what+".strategy")
			if _, err := negotiation.ParseStrategy(st.Strategy); err != nil {
				p.errf(v, "%s.strategy: %v", what, err)
			}
		case "agent":
			st.Agent = p.str(v, what+".agent")
		case "context":
			p.fields(v, what+".context", []string{"reads", "writes"}, func(key string, _, v *yaml.Node) {
				if key == "reads" {
					st.Context.Reads = p.strs(v, what+".context.reads")
				} else {
					st.Context.Writes = p.strs(v, what+".context.writes")
				}
			})
		case "compensate":
			st.Compensate = p.step(name, k, v, true)
		}
	})
	if !capAt && v.Kind == yaml.MappingNode {
		p.errf(k, "%s: capability is required", what)
	}
	return st
}

func (p *parser) str(v *yaml.Node, what string) string {
	if v.Kind != yaml.ScalarNode || v.Tag == "!!null" || v.Value == "" {
		p.errf(v, "%s: want a non-empty string", what)
		return ""
	}
	return v.Value
}

func (p *parser) strs(v *yaml.Node, what string) []string {
	if v.Kind != yaml.SequenceNode {
		p.errf(v, "%s: want a list of names", what)
		return nil
	}
	var out []string
	for _, e := range v.Content {
		if s := p.str(e, what); s != "" {
			if slices.Contains(out, s) {
				p.errf(e, "%s: %q is listed twice", what, s)
				continue
			}
			out = append(out, s)
		}
	}
	return out
}

func (p *parser) duration(v *yaml.Node, what string) time.Duration {
	d, err := time.ParseDuration(v.Value)
	if err != nil || v.Kind != yaml.ScalarNode || d <= 0 {
		p.errf(v, "%s: %q: want a positive duration such as 500ms or 30s", what, v.Value)
		return 0
	}
	return d
}

// graph checks needs: every name a step, and no cycle.
func (p *parser) graph(s *Spec) {
	byName := map[string]*Step{}
	for _, st := range s.Steps {
		byName[st.Name] = st
	}
	for _, st := range s.Steps {
		for _, n := range st.Needs {
			if byName[n] == nil {
				p.errAt(st.needLine[n], "step %s: needs unknown step %q", st.Name, n)
			}
		}
	}
	// Depth-first, in file order, so the cycle reported is the same each time.
	const (
		unseen = iota
		onPath
		done
	)
	mark := map[string]int{}
	var path []string
	var visit func(st *Step) bool
	visit = func(st *Step) bool {
		mark[st.Name] = onPath
		path = append(path, st.Name)
		for _, n := range st.Needs {
			next := byName[n]
			if next == nil || mark[n] == done {
				continue
			}
			if mark[n] == onPath {
				i := slices.Index(path, n)
				cycle := append(slices.Clone(path[i:]), n)
				p.errAt(st.needLine[n], "step %s: needs form a cycle: %s", st.Name, strings.Join(cycle, " → "))
				return false
			}
			if !visit(next) {
				return false
			}
		}
		path = path[:len(path)-1]
		mark[st.Name] = done
		return true
	}
	for _, st := range s.Steps {
		if mark[st.Name] == unseen {
			path = path[:0]
			if !visit(st) {
				return
			}
		}
	}
}
