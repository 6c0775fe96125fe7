package a2a

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/a2aproject/a2a-go/v2/a2a"
	"github.com/a2aproject/a2a-go/v2/a2aclient"
	"github.com/a2aproject/a2a-go/v2/a2aclient/agentcard"

	"github.com/parleynet/parley/intent"
	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/sharedctx"
)

// ErrBadCard is wrapped by NewAgent's errors about the remote agent's
// card: unreachable, unreadable, or not offering what the entry says.
var ErrBadCard = errors.New("remote A2A agent card")

// MaxResult bounds a remote agent's result, in bytes.
const MaxResult = 1 << 20

// AgentConfig is a mesh agent backed by a remote A2A agent.
type AgentConfig struct {
	// Name is the parley agent's name (for messages and logs).
	Name string
	// URL is the remote agent's base URL (its card is at
	// /.well-known/agent-card.json under it) or its card's URL (ending
	// in .json).
	URL string
	// Capabilities the agent offers in the mesh; each must be a skill on
	// the card. Empty: every skill on the card whose ID is a valid
	// capability name.
	Capabilities []string
	// Price and ETA are the bid made on every call (the price rule): no
	// bid when the call's budget is below Price.
	Price float64
	ETA   time.Duration
	// Token, if set, is sent as a bearer token to the remote agent.
	Token string
	// Timeout bounds one task at the remote agent (default 5 minutes);
	// the task's own deadline bounds it too.
	Timeout time.Duration
	// HTTPClient carries the calls (default: a client of its own, closed
	// by Close).
	HTTPClient *http.Client
	// Context, when set, gives each task's remote agent its workflow's
	// shared context: the keys its step may read go in the message's
	// metadata (MetaContext, MetaContextWrites), and a MetaContext object
	// in its answer's metadata is written back, signed as the agent,
	// before the result goes to the requester (node.TaskContext).
	Context func(negotiation.Task) (*sharedctx.Client, error)
}

// Agent is a negotiation.Handler that bids by its price rule and hands
// the work it wins to a remote A2A agent with a2a-go's client, the
// remote's status updates becoming progress and its artifact the result.
type Agent struct {
	cfg    AgentConfig
	card   *a2a.AgentCard
	caps   []string
	client *a2aclient.Client
	own    *http.Transport // closed by Close when the client is ours
}

var _ negotiation.Handler = (*Agent)(nil)

// NewAgent fetches and checks the remote agent's card within ctx and
// builds a client for it.
func NewAgent(ctx context.Context, cfg AgentConfig) (*Agent, error) {
	switch {
	case cfg.Price < 0 || math.IsNaN(cfg.Price) || math.IsInf(cfg.Price, 0):
		return nil, fmt.Errorf("a2a agent %s: price %g: want ≥ 0", cfg.Name, cfg.Price)
	case cfg.ETA < 0:
		return nil, fmt.Errorf("a2a agent %s: eta %s: want ≥ 0", cfg.Name, cfg.ETA)
	}
	base, path, err := cardLocation(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("a2a agent %s: a2a %q: %w", cfg.Name, cfg.URL, err)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Minute
	}
	a := &Agent{cfg: cfg}
	hc := cfg.HTTPClient
	if hc == nil {
		a.own = &http.Transport{Proxy: http.ProxyFromEnvironment, MaxIdleConnsPerHost: 8, IdleConnTimeout: 30 * time.Second,
			ResponseHeaderTimeout: 30 * time.Second}
		hc = &http.Client{Transport: a.own}
	}
	var opts []agentcard.ResolveOption
	if path != "" {
		opts = append(opts, agentcard.WithPath(path))
	}
	if cfg.Token != "" {
		opts = append(opts, agentcard.WithRequestHeader("Authorization", "Bearer "+cfg.Token))
	}
	fetchCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	card, err := agentcard.NewResolver(&http.Client{Transport: hc.Transport, Timeout: 10 * time.Second}).Resolve(fetchCtx, base, opts...)
	if err != nil {
		a.Close()
		return nil, fmt.Errorf("a2a agent %s: %w: fetch from %s: %v", cfg.Name, ErrBadCard, cfg.URL, err)
	}
	if card.Name == "" || len(card.SupportedInterfaces) == 0 {
		a.Close()
		return nil, fmt.Errorf("a2a agent %s: %w: %s answered with no agent card (no name, no interfaces)", cfg.Name, ErrBadCard, cfg.URL)
	}
	if a.caps, err = capabilitiesOf(card, cfg.Capabilities); err != nil {
		a.Close()
		return nil, fmt.Errorf("a2a agent %s: %w at %s: %v", cfg.Name, ErrBadCard, cfg.URL, err)
	}
	// The stream is held as long as the task: no client-wide timeout.
	streaming := &http.Client{Transport: hc.Transport}
	a.client, err = a2aclient.NewFromCard(ctx, card, a2aclient.WithJSONRPCTransport(streaming), a2aclient.WithRESTTransport(streaming))
	if err != nil {
		a.Close()
		return nil, fmt.Errorf("a2a agent %s: %w at %s: no interface this client speaks: %v", cfg.Name, ErrBadCard, cfg.URL, err)
	}
	a.card = card
	return a, nil
}

// cardLocation splits an agent's URL into the base and card path the
// resolver takes.
func cardLocation(s string) (base, path string, err error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", "", err
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return "", "", errors.New("want an http:// or https:// URL")
	}
	if strings.HasSuffix(u.Path, ".json") {
		path = u.Path
		u.Path = ""
		return u.String(), path, nil
	}
	return strings.TrimSuffix(u.String(), "/"), "", nil
}

// capabilitiesOf checks the wanted capabilities against the card's
// skills, or takes the skills whose IDs are capability names.
func capabilitiesOf(card *a2a.AgentCard, want []string) ([]string, error) {
	var skills []string
	for _, s := range card.Skills {
		skills = append(skills, s.ID)
	}
	if len(want) > 0 {
		for _, c := range want {
			if !slices.Contains(skills, c) {
				return nil, fmt.Errorf("its card (%q) has no skill %q; it has %s", card.Name, c, listOr(skills))
			}
		}
		return slices.Clone(want), nil
	}
	var caps []string
	for _, s := range skills {
		if intent.ValidCapability(s) == nil {
			caps = append(caps, s)
		}
	}
	if len(caps) == 0 {
		return nil, fmt.Errorf("its card (%q) has no skill whose ID is a capability name (%s); list the capabilities in the entry", card.Name, listOr(skills))
	}
	return caps, nil
}

// Capabilities are what the agent offers in the mesh.
func (a *Agent) Capabilities() []string { return slices.Clone(a.caps) }

// Card is the remote agent's card as fetched.
func (a *Agent) Card() *a2a.AgentCard { return a.card }

// Close releases the client's connections.
func (a *Agent) Close() {
	if a == nil {
		return
	}
	if a.client != nil {
		_ = a.client.Destroy()
	}
	if a.own != nil {
		a.own.CloseIdleConnections()
	}
}

// Bid implements negotiation.Handler: the configured price and ETA,
// unless the call's budget is below the price.
func (a *Agent) Bid(_ context.Context, call negotiation.Call) (negotiation.Bid, error) {
	if call.Budget > 0 && call.Budget < a.cfg.Price {
		return negotiation.Bid{}, fmt.Errorf("%w: budget %g is below %s's price %g", negotiation.ErrNoBid, call.Budget, a.cfg.Name, a.cfg.Price)
	}
	return negotiation.Bid{Price: a.cfg.Price, ETA: a.cfg.ETA, Rationale: fmt.Sprintf("A2A agent %q at a fixed price", a.card.Name)}, nil
}

// Work implements negotiation.Handler: the task's input goes to the
// remote agent as a data part naming the skill; its status updates are
// progress, its artifact (or reply) the result, a failed or canceled
// end an error. With Context, the shared context goes in and out in the
// metadata (context.go). Its input-required status is a question to the
// requester (Task.Ask), whose answer goes back to the same remote task.
func (a *Agent) Work(ctx context.Context, t negotiation.Task) (json.RawMessage, error) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.Timeout)
	defer cancel()
	if a.cfg.Token != "" {
		ctx = a2aclient.AttachServiceParams(ctx, a2aclient.ServiceParams{"Authorization": {"Bearer " + a.cfg.Token}})
	}
	var input any = map[string]any{}
	if len(t.Input) > 0 {
		if err := json.Unmarshal(t.Input, &input); err != nil {
			return nil, fmt.Errorf("a2a agent %s: the task's input: %w", a.cfg.Name, err)
		}
	}
	msg := a2a.NewMessage(a2a.MessageRoleUser, a2a.NewDataPart(input))
	msg.Metadata = map[string]any{MetaSkill: t.Capability, MetaTask: t.Task}
	cl, cerr := a.taskContext(ctx, t, msg.Metadata)
	if cerr != nil {
		return nil, cerr
	}
	var writes contextWrites
	req := &a2a.SendMessageRequest{Message: msg}

	var result json.RawMessage
	var taskID a2a.TaskID
	var contextID string
	var question *a2a.TaskStatus // set when the remote agent asks for input
	open := false                // the remote task is not in a terminal state
	finish := func(st a2a.TaskStatus) error {
		switch st.State {
		case a2a.TaskStateCompleted:
			return nil
		case a2a.TaskStateFailed, a2a.TaskStateRejected, a2a.TaskStateCanceled:
			return fmt.Errorf("the A2A agent %s: %s", strings.TrimPrefix(string(st.State), "TASK_STATE_"), textOf(st.Message))
		case a2a.TaskStateInputRequired:
			question = &st
		case a2a.TaskStateAuthRequired:
			// A2A's sign-in happens out of band; a credential has no
			// place in the negotiation, so the operator gives one up front.
			return fmt.Errorf("the A2A agent wants authentication first (%s); parley does not sign in for a requester: "+
				"give the agent's entry an a2a_token_file with a token it accepts", textOf(st.Message))
		}
		return nil
	}
	take := func(parts a2a.ContentParts) error {
		r, err := resultOf(parts)
		if err == nil {
			result = r
		}
		return err
	}
	handle := func(ev a2a.Event) (done bool, err error) {
		switch e := ev.(type) {
		case *a2a.Message:
			writes.take(e.Metadata)
			return true, take(e.Parts)
		case *a2a.Task:
			taskID, contextID = e.ID, e.ContextID
			writes.take(e.Metadata)
			for _, art := range e.Artifacts {
				writes.take(art.Metadata)
				if err := take(art.Parts); err != nil {
					return true, err
				}
			}
			open = !e.Status.State.Terminal()
			if !open || e.Status.State == a2a.TaskStateInputRequired || e.Status.State == a2a.TaskStateAuthRequired {
				return true, finish(e.Status)
			}
		case *a2a.TaskStatusUpdateEvent:
			taskID, contextID = e.TaskID, e.ContextID
			open = !e.Status.State.Terminal()
			if !open || e.Status.State == a2a.TaskStateInputRequired || e.Status.State == a2a.TaskStateAuthRequired {
				return true, finish(e.Status)
			}
			if note := textOf(e.Status.Message); note != "" && t.Progress != nil {
				f, _ := e.Metadata["fraction"].(float64)
				t.Progress(min(max(f, 0), 1), clip(note, maxNote))
			}
		case *a2a.TaskArtifactUpdateEvent:
			taskID = e.TaskID
			writes.take(e.Artifact.Metadata)
			return false, take(e.Artifact.Parts)
		}
		return false, nil
	}
	var err error
	done := false
	for {
		if a.card.Capabilities.Streaming {
			for ev, serr := range a.client.SendStreamingMessage(ctx, req) {
				if serr != nil {
					err = serr
					break
				}
				if done, err = handle(ev); done || err != nil {
					break
				}
			}
		} else {
			var res a2a.SendMessageResult
			if res, err = a.client.SendMessage(ctx, req); err == nil {
				done, err = handle(res)
			}
		}
		if err != nil || question == nil {
			break
		}
		// The remote agent asked: the requester answers, and the answer
		// goes to the same remote task as a follow-up (input.go).
		if req, err = a.answerRemote(ctx, t, taskID, contextID, msg.Metadata, *question); err != nil {
			break
		}
		question, done = nil, false
	}
	if open && taskID != "" && (err != nil || ctx.Err() != nil) {
		// Given up here while the remote task runs or waits (the
		// requester canceled, the deadline, a sign-in parley cannot
		// give, a bad result): tell the remote, which would keep it.
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		_, _ = a.client.CancelTask(cctx, &a2a.CancelTaskRequest{ID: taskID})
		ccancel()
	}
	switch {
	case err != nil && ctx.Err() != nil:
		return nil, fmt.Errorf("a2a agent %s: %w", a.cfg.Name, ctx.Err())
	case err != nil:
		return nil, fmt.Errorf("a2a agent %s: %w", a.cfg.Name, err)
	case !done:
		return nil, fmt.Errorf("a2a agent %s: the A2A agent's stream ended before its task did", a.cfg.Name)
	case result == nil:
		return nil, fmt.Errorf("a2a agent %s: the A2A agent completed with no artifact", a.cfg.Name)
	}
	if err := writes.put(ctx, cl, t.Task); err != nil {
		return nil, fmt.Errorf("a2a agent %s: %w", a.cfg.Name, err)
	}
	return result, nil
}

// resultOf is an artifact or reply as a parley result: a data part's
// data, else the text (itself if it is JSON, else a JSON string).
func resultOf(parts a2a.ContentParts) (json.RawMessage, error) {
	r, err := inputOf(parts)
	if err != nil {
		return nil, err
	}
	if len(r) > MaxResult {
		return nil, fmt.Errorf("the A2A agent's result is %d bytes, over %d", len(r), MaxResult)
	}
	return r, nil
}

// maxNote bounds a progress note passed on from the remote agent: it
// travels in a negotiation frame, whose size is capped.
const maxNote = 512

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func textOf(m *a2a.Message) string {
	if m == nil {
		return ""
	}
	var texts []string
	for _, p := range m.Parts {
		if p != nil {
			if s := p.Text(); s != "" {
				texts = append(texts, s)
			}
		}
	}
	return strings.Join(texts, " ")
}
