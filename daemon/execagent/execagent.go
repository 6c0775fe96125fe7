// Package execagent makes a command an agent: for each call for proposals
// it runs the command with {"phase":"bid",…} on stdin and reads a bid or a
// refusal from stdout; for an award it runs it with {"phase":"execute",…}
// and reads the result; for a requester's counter-offer to its bid it runs
// it with {"phase":"counter",…} and reads a bid (the counter's terms to
// accept, others to revise) or a refusal (the bid stands). An execute
// run that needs more input prints {"ask":{"note":…,"schema":…}} instead
// of a result: parley puts the question to the requester (the task is
// input-required) and runs the execute phase again with every answer so
// far in "answers", so the command keeps no state between runs. Any
// language that reads and writes JSON can be an agent this way. A
// non-zero exit, a timeout or bad output is a refusal (bid, counter) or a
// failure (execute); the command's stderr goes to the node log.
package execagent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	logging "github.com/ipfs/go-log/v2"

	"github.com/parleynet/parley/intent"
	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/sharedctx"
)

var log = logging.Logger("parley/exec")

// MaxOutput caps what a command may print on stdout.
const MaxOutput = 1 << 20

// Agent runs Command for each phase. It implements negotiation.Handler.
type Agent struct {
	Name    string
	Command []string
	// Timeout bounds one run of the command (default 30 s); the task's
	// own deadline bounds it too.
	Timeout time.Duration
	// Dir is the command's working directory ("" is the daemon's).
	Dir string
	// Context, when set, gives each task's command its workflow's shared
	// context: the keys its step may read come in the execute request
	// ("context"), and a "context" object in its reply is written back,
	// signed as the agent, before the result goes to the requester.
	Context func(negotiation.Task) (*sharedctx.Client, error)
}

// bidRequest is what the command reads in the bid phase.
type bidRequest struct {
	Phase string           `json:"phase"` // "bid"
	Call  negotiation.Call `json:"call"`
}

// executeRequest is what the command reads in the execute phase.
type executeRequest struct {
	Phase string           `json:"phase"` // "execute"
	Call  negotiation.Call `json:"call"`
	Bid   bidOut           `json:"bid"`
	Input json.RawMessage  `json:"input,omitempty"`
	// Context holds the keys of the shared context the step may read;
	// absent when the task has no context.
	Context map[string]json.RawMessage `json:"context,omitempty"`
	// ContextWrites are the keys (a trailing * is a prefix) it may write.
	ContextWrites []string `json:"context_writes,omitempty"`
	// Answers are the requester's answers to the questions earlier runs
	// of this task asked, oldest first.
	Answers []answered `json:"answers,omitempty"`
}

// question is what an execute run prints to ask: {"ask":{…}}.
type question struct {
	Note   string          `json:"note"`
	Schema json.RawMessage `json:"schema,omitempty"`
}

// answered is a question an earlier run asked and the requester's answer.
type answered struct {
	question
	Answer json.RawMessage `json:"answer"`
}

// counterRequest is what the command reads in the counter phase: the call
// and the counter-offer, whose "bid" is the agent's last bid.
type counterRequest struct {
	Phase   string              `json:"phase"` // "counter"
	Call    negotiation.Call    `json:"call"`
	Counter negotiation.Counter `json:"counter"`
}

type bidOut struct {
	Price     float64         `json:"price"`
	ETA       intent.Duration `json:"eta"`
	Rationale string          `json:"rationale,omitempty"`
}

// reply is what the command prints: {"bid":{…}}, {"refuse":"why"},
// {"result":…, "context":{…}}, {"ask":{…}} or {"error":"why"}.
type reply struct {
	Bid    *bidOut         `json:"bid,omitempty"`
	Refuse string          `json:"refuse,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	Ask    *question       `json:"ask,omitempty"`
	Error  string          `json:"error,omitempty"`
	// Context are writes to the task's shared context, key → JSON value.
	Context map[string]json.RawMessage `json:"context,omitempty"`
}

// ErrNoCommand is wrapped by Check's errors: the command cannot be run.
var ErrNoCommand = errors.New("command not found")

// Check reports whether the command can be run: its program exists and is
// executable, found as exec would find it (a name without a slash on
// $PATH, a relative path from Dir). A daemon checks this at start, so that
// an agent that could never work is an error there rather than a failure
// told to a requester.
func (a *Agent) Check() error {
	if len(a.Command) == 0 || a.Command[0] == "" {
		return fmt.Errorf("agent %s: %w: exec is empty", a.Name, ErrNoCommand)
	}
	prog := a.Command[0]
	if !strings.Contains(prog, "/") {
		if _, err := exec.LookPath(prog); err != nil {
			return fmt.Errorf("agent %s: %w: %q is not on $PATH", a.Name, ErrNoCommand, prog)
		}
		return nil
	}
	path := prog
	if !filepath.IsAbs(path) && a.Dir != "" {
		path = filepath.Join(a.Dir, path)
	}
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("agent %s: %w: %s does not exist", a.Name, ErrNoCommand, path)
	case err != nil:
		return fmt.Errorf("agent %s: %w: %v", a.Name, ErrNoCommand, err)
	case st.IsDir():
		return fmt.Errorf("agent %s: %w: %s is a directory", a.Name, ErrNoCommand, path)
	case st.Mode().Perm()&0o111 == 0:
		return fmt.Errorf("agent %s: %w: %s is not executable (chmod +x, or run it through its interpreter: exec: [sh, %s])", a.Name, ErrNoCommand, path, prog)
	}
	return nil
}

// Bid implements negotiation.Handler. A command that fails is a refusal
// whose reason is only that the agent could not bid.
func (a *Agent) Bid(ctx context.Context, call negotiation.Call) (negotiation.Bid, error) {
	r, err := a.run(ctx, "bid", call.Task, bidRequest{Phase: "bid", Call: call})
	if err != nil {
		return negotiation.Bid{}, err
	}
	switch {
	case r.Refuse != "":
		return negotiation.Bid{}, fmt.Errorf("%w: %s", negotiation.ErrNoBid, r.Refuse)
	case r.Bid == nil:
		return negotiation.Bid{}, a.failed("bid", call.Task, errors.New("the bid phase printed neither bid nor refuse"))
	}
	return negotiation.Bid{Price: r.Bid.Price, ETA: time.Duration(r.Bid.ETA), Rationale: r.Bid.Rationale}, nil
}

// Counter implements negotiation.Counterer: {"bid":{…}} accepts the
// counter (its terms) or revises the bid (other terms); {"refuse":"why"}
// refuses, and so does a command that fails (one written before counters
// existed exits non-zero on the unknown phase): the bid stands.
func (a *Agent) Counter(ctx context.Context, call negotiation.Call, c negotiation.Counter) (negotiation.Bid, error) {
	r, err := a.run(ctx, "counter", call.Task, counterRequest{Phase: "counter", Call: call, Counter: c})
	if err != nil {
		return negotiation.Bid{}, fmt.Errorf("%w: %v", negotiation.ErrRefuseCounter, err)
	}
	switch {
	case r.Refuse != "":
		return negotiation.Bid{}, fmt.Errorf("%w: %s", negotiation.ErrRefuseCounter, r.Refuse)
	case r.Bid == nil:
		return negotiation.Bid{}, fmt.Errorf("%w: %v", negotiation.ErrRefuseCounter,
			a.failed("counter", call.Task, errors.New("the counter phase printed neither bid nor refuse")))
	}
	return negotiation.Bid{Price: r.Bid.Price, ETA: time.Duration(r.Bid.ETA), Rationale: r.Bid.Rationale}, nil
}

// Work implements negotiation.Handler. An {"error": …} the command prints
// is its message to the requester and is passed on as it is; any other
// failure is reported as the agent's failure, with the detail in the log.
// A run that asks is run again with the answer; how many questions a task
// may ask, and how long an answer may take, are the node's bounds.
func (a *Agent) Work(ctx context.Context, t negotiation.Task) (json.RawMessage, error) {
	req := executeRequest{Phase: "execute", Call: t.Call,
		Bid: bidOut{Price: t.Bid.Price, ETA: intent.Duration(t.Bid.ETA), Rationale: t.Bid.Rationale}, Input: t.Input}
	var cl *sharedctx.Client
	var r *reply
	for {
		var err error
		// Read on each run: a participant may have written while the
		// requester thought about its answer.
		if cl, err = a.taskContext(ctx, t, &req); err != nil {
			return nil, err
		}
		if r, err = a.run(ctx, "execute", t.Call.Task, req); err != nil {
			return nil, err
		}
		if r.Ask == nil || r.Error != "" || len(r.Result) > 0 {
			break
		}
		if t.Ask == nil {
			return nil, fmt.Errorf("agent %s asked %q, but its requester's node cannot answer questions", a.Name, r.Ask.Note)
		}
		in, err := t.Ask(ctx, r.Ask.Note, r.Ask.Schema)
		if err != nil {
			return nil, fmt.Errorf("agent %s asked %q: %w", a.Name, r.Ask.Note, err)
		}
		req.Answers = append(req.Answers, answered{question: *r.Ask, Answer: in})
	}
	switch {
	case r.Ask != nil:
		return nil, a.failed("execute", t.Call.Task, errors.New("the execute phase printed an ask with a result or an error"))
	case r.Error != "":
		return nil, errors.New(r.Error)
	case len(r.Result) == 0:
		return nil, a.failed("execute", t.Call.Task, errors.New("the execute phase printed no result"))
	case len(r.Context) > 0 && cl == nil:
		return nil, fmt.Errorf("agent %s wrote to a shared context, but task %s has none", a.Name, t.Call.Task)
	case len(r.Context) > 0:
		if _, _, err := cl.PutAll(ctx, r.Context); err != nil {
			return nil, fmt.Errorf("agent %s: write its context: %w", a.Name, err)
		}
	}
	return r.Result, nil
}

// taskContext reads the task's shared context into req; it returns the
// client, or nil when the task has none.
func (a *Agent) taskContext(ctx context.Context, t negotiation.Task, req *executeRequest) (*sharedctx.Client, error) {
	if a.Context == nil {
		return nil, nil
	}
	cl, err := a.Context(t)
	if err != nil {
		return nil, fmt.Errorf("agent %s: shared context: %w", a.Name, err)
	}
	es, err := cl.Get(ctx)
	switch {
	case errors.Is(err, sharedctx.ErrNoContext):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("agent %s: read its context: %w", a.Name, err)
	}
	req.Context = make(map[string]json.RawMessage, len(es))
	for k, e := range es {
		req.Context[k] = e.Value
	}
	_, req.ContextWrites = cl.Granted()
	return cl, nil
}

// failed logs what went wrong, with the detail, and returns the error the
// other side is told.
func (a *Agent) failed(phase, task string, detail error) error {
	log.Warnw("exec agent failed", "agent", a.Name, "phase", phase, "task", task, "command", a.Command, "err", detail)
	return fmt.Errorf("agent %s failed in its %s phase (the detail is in its node's log)", a.Name, phase)
}

// run runs the command once with req on stdin and decodes its stdout. Its
// errors are the ones the requester may see.
func (a *Agent) run(ctx context.Context, phase, task string, req any) (*reply, error) {
	r, err := a.runDetail(ctx, req)
	if err == nil {
		return r, nil
	}
	if ctx.Err() != nil {
		// Cancelled by the negotiation (the requester, the deadline, the
		// bid window): not the agent's failure.
		log.Infow("exec agent stopped", "agent", a.Name, "phase", phase, "task", task, "err", err)
		return nil, fmt.Errorf("agent %s: %w", a.Name, ctx.Err())
	}
	return nil, a.failed(phase, task, err)
}

func (a *Agent) runDetail(ctx context.Context, req any) (*reply, error) {
	if len(a.Command) == 0 {
		return nil, errors.New("no command")
	}
	timeout := a.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	in, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, a.Command[0], a.Command[1:]...)
	cmd.Stdin = bytes.NewReader(in)
	cmd.Dir = a.Dir
	var stdout, stderr limited
	stdout.max, stderr.max = MaxOutput, 64<<10
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = time.Second
	err = cmd.Run()
	for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		if line != "" {
			log.Infow("agent stderr", "agent", a.Name, "line", line)
		}
	}
	switch {
	case ctx.Err() != nil:
		return nil, fmt.Errorf("%s timed out after %s or was canceled: %w", a.Command[0], timeout, ctx.Err())
	case err != nil:
		return nil, fmt.Errorf("%s failed: %v: %s", a.Command[0], err, lastLine(stderr.String()))
	case stdout.over:
		return nil, fmt.Errorf("%s printed more than %d bytes", a.Command[0], MaxOutput)
	}
	var r reply
	dec := json.NewDecoder(strings.NewReader(stdout.String()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("stdout is not a reply ({\"bid\"…}, {\"refuse\"…}, {\"result\"…}, {\"ask\"…} or {\"error\"…}): %v", err)
	}
	return &r, nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// limited is a buffer that keeps at most max bytes and notes overflow.
type limited struct {
	bytes.Buffer
	max  int
	over bool
}

func (l *limited) Write(p []byte) (int, error) {
	if room := l.max - l.Len(); len(p) > room {
		l.over = true
		if room > 0 {
			l.Buffer.Write(p[:room])
		}
		return len(p), nil
	}
	return l.Buffer.Write(p)
}
