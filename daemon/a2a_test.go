package daemon

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/a2aproject/a2a-go/v2/a2a"
	"github.com/a2aproject/a2a-go/v2/a2aclient"
	"github.com/a2aproject/a2a-go/v2/a2aclient/agentcard"
	a2agrpc "github.com/a2aproject/a2a-go/v2/a2agrpc/v1"
	"github.com/a2aproject/a2a-go/v2/a2asrv"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/parleynet/parley/audit"
	"github.com/parleynet/parley/daemon/home"
	"github.com/parleynet/parley/node/api"
	"github.com/parleynet/parley/workflow"
)

// shouter is an A2A agent on a2a-go's server: skill "shout" upper-cases
// {"text": …} after a status note, and writes it to the shared context as
// "shouted" when its step may write that key.
type shouter struct{}

func (shouter) Execute(_ context.Context, ec *a2asrv.ExecutorContext) iter.Seq2[a2a.Event, error] {
	return func(yield func(a2a.Event, error) bool) {
		if !yield(a2a.NewSubmittedTask(ec, ec.Message), nil) ||
			!yield(a2a.NewStatusUpdateEvent(ec, a2a.TaskStateWorking, a2a.NewMessageForTask(a2a.MessageRoleAgent, ec, a2a.NewTextPart("taking a breath"))), nil) {
			return
		}
		in, _ := ec.Message.Parts[0].Data().(map[string]any)
		text, _ := in["text"].(string)
		art := a2a.NewArtifactEvent(ec, a2a.NewDataPart(map[string]any{"text": strings.ToUpper(text)}))
		if writes, _ := ec.Message.Metadata["parley.context_writes"].([]any); slices.Contains(writes, any("shouted")) {
			art.Artifact.Metadata = map[string]any{"parley.context": map[string]any{"shouted": strings.ToUpper(text)}}
		}
		if !yield(art, nil) {
			return
		}
		yield(a2a.NewStatusUpdateEvent(ec, a2a.TaskStateCompleted, nil), nil)
	}
}

func (shouter) Cancel(_ context.Context, ec *a2asrv.ExecutorContext) iter.Seq2[a2a.Event, error] {
	return func(yield func(a2a.Event, error) bool) {
		yield(a2a.NewStatusUpdateEvent(ec, a2a.TaskStateCanceled, nil), nil)
	}
}

func startShouter(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	card := &a2a.AgentCard{Name: "Shouter", Description: "shouts", Version: "1",
		SupportedInterfaces: []*a2a.AgentInterface{a2a.NewAgentInterface(base+"/rpc", a2a.TransportProtocolJSONRPC)},
		Capabilities:        a2a.AgentCapabilities{Streaming: true},
		DefaultInputModes:   []string{"application/json"}, DefaultOutputModes: []string{"application/json"},
		Skills: []a2a.AgentSkill{{ID: "shout", Name: "Shout", Description: "upper-cases text"}}}
	mux := http.NewServeMux()
	mux.Handle("/rpc", a2asrv.NewJSONRPCHandler(a2asrv.NewHandler(shouter{})))
	mux.Handle(a2asrv.WellKnownAgentCardPath, a2asrv.NewStaticAgentCardHandler(card))
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return base
}

// An A2A agent in config.yaml joins the mesh through its daemon and wins
// a negotiation another daemon starts from its A2A gateway: an A2A client
// → gateway → negotiation → the remote A2A agent and back. The contractor
// reports the agent as kind a2a with the card's skills, and the gateway's
// node audits the call.
func TestA2AGatewayToA2AContractorAcrossDaemons(t *testing.T) {
	shout := startShouter(t)
	contractor := start(t, loopback(newHome(t, fmt.Sprintf(`agents:
  - name: default
  - name: shouter
    a2a: %s
    price: 3
    eta: 1s
`, shout))))
	gwHome := newHome(t, "a2a:\n  export: [shout]\n  grpc_listen: 127.0.0.1:0\n")
	o := loopback(gwHome)
	o.A2AListen = "127.0.0.1:0"
	for _, a := range contractor.Node().Addrs() {
		o.Bootstrap = append(o.Bootstrap, a.String())
	}
	gwd := start(t, o)
	ctx := ctxT(t)
	if err := gwd.Node().WaitReady(ctx, "shout"); err != nil {
		t.Fatal(err)
	}

	st, err := contractor.Client().Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var kind, caps string
	for _, a := range st.Agents {
		if a.Name == "shouter" {
			kind, caps = a.Kind, strings.Join(a.Capabilities, ",")
		}
	}
	if kind != api.KindA2A || caps != "shout" {
		t.Errorf("contractor's status: shouter is %q offering %q, want a2a offering shout (from its card)", kind, caps)
	}
	hosted, err := contractor.Client().Agents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range hosted {
		if a.Name == "shouter" && strings.Join(a.Capabilities, ",") != "shout" {
			t.Errorf("GET /v1/agents: shouter offers %v, want shout (from its card)", a.Capabilities)
		}
	}

	url := gwd.A2AURL()
	if url == "" {
		t.Fatal("the gateway daemon has no A2A URL")
	}
	token, err := os.ReadFile(filepath.Join(gwHome, home.A2ATokenFile))
	if err != nil {
		t.Fatalf("the gateway's token: %v", err)
	}
	card, err := agentcard.DefaultResolver.Resolve(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	c, err := a2aclient.NewFromCard(ctx, card)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Destroy() }()
	actx := a2aclient.AttachServiceParams(ctx, a2aclient.ServiceParams{"Authorization": {"Bearer " + strings.TrimSpace(string(token))}})
	msg := a2a.NewMessage(a2a.MessageRoleUser, a2a.NewDataPart(map[string]any{"text": "hello"}))
	msg.Metadata = map[string]any{"skill": "shout", "bid_window": "200ms"}
	res, err := c.SendMessage(actx, &a2a.SendMessageRequest{Message: msg})
	if err != nil {
		t.Fatalf("SendMessage through the gateway: %v", err)
	}
	task, ok := res.(*a2a.Task)
	if !ok || task.Status.State != a2a.TaskStateCompleted || len(task.Artifacts) != 1 {
		t.Fatalf("SendMessage: %#v, want a completed task with an artifact", res)
	}
	if got := task.Artifacts[0].Parts[0].Data(); fmt.Sprint(got) != "map[text:HELLO]" {
		t.Errorf("artifact %v, want the remote A2A agent's HELLO", got)
	}
	if wn := task.Artifacts[0].Metadata["winner_name"]; wn != "shouter" {
		t.Errorf("winner %v, want shouter", wn)
	}

	// a2a.grpc_listen: the card names the gRPC binding, which works too.
	var grpcIface *a2a.AgentInterface
	for _, i := range card.SupportedInterfaces {
		if i.ProtocolBinding == a2a.TransportProtocolGRPC {
			grpcIface = i
		}
	}
	if grpcIface == nil {
		t.Fatalf("card interfaces %+v: no gRPC one", card.SupportedInterfaces)
	}
	gc, err := a2aclient.NewFromEndpoints(ctx, []*a2a.AgentInterface{grpcIface},
		a2agrpc.WithGRPCTransport(grpc.WithTransportCredentials(insecure.NewCredentials())))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = gc.Destroy() }()
	got, err := gc.GetTask(actx, &a2a.GetTaskRequest{ID: task.ID})
	if err != nil || got.Status.State != a2a.TaskStateCompleted {
		t.Errorf("GetTask over gRPC: %+v, %v", got, err)
	}

	recs, err := audit.Tail(filepath.Join(gwHome, "audit"), 200)
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	for _, r := range recs {
		if r.Kind == "a2a.call" {
			calls++
		}
	}
	if calls == 0 {
		t.Errorf("the gateway's audit log has no a2a.call record among %d", len(recs))
	}

	// A workflow step the A2A agent wins: its write comes back through
	// its daemon into the requester's context, signed as the agent.
	wc := gwd.Client()
	run, err := wc.StartWorkflow(ctx, api.WorkflowBody{File: "shout.yaml",
		Source: "version: 1\nsteps:\n  shout: {capability: shout, bid_window: 200ms, input: '{text: \"wf\"}', context: {writes: [shouted]}}\n"})
	if err != nil {
		t.Fatal(err)
	}
	var ended *workflow.Run
	if err := wc.FollowWorkflow(ctx, run.ID, func(r *workflow.Run) error { ended = r; return nil }); err != nil {
		t.Fatal(err)
	}
	if ended.State != workflow.StateCompleted {
		t.Fatalf("workflow %s: %s", ended.State, ended.Error)
	}
	shared, err := wc.WorkflowContext(ctx, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(shared.Entries) != 1 || shared.Entries[0].Key != "shouted" || string(shared.Entries[0].Value) != `"WF"` ||
		shared.Entries[0].WriterName != "shouter" || !shared.Entries[0].Verified {
		t.Fatalf("the workflow's context %+v; want shouted = WF by the shouter, verified", shared.Entries)
	}
}

// SIGHUP adds and removes an A2A-backed agent: its card is fetched, it is
// hosted as kind a2a, the gateway's card shows its skill, and once it is
// removed the skill and the agent are gone (and its client closed: the
// leak check of TestMain would see its connections).
func TestA2AAgentReload(t *testing.T) {
	shout := startShouter(t)
	dir := newHome(t, "a2a:\n  listen: 127.0.0.1:0\n")
	d := start(t, loopback(dir))
	ctx := ctxT(t)
	skills := func() []string {
		card, err := agentcard.DefaultResolver.Resolve(ctx, d.A2AURL())
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, s := range card.Skills {
			out = append(out, s.ID)
		}
		return out
	}
	if got := skills(); len(got) != 0 {
		t.Fatalf("skills before: %v, want none", got)
	}
	// An external agent registered over the API is one of this node's
	// agents too: its capabilities are skills while it is registered.
	if _, err := d.Client().RegisterExternal(ctx, api.ExternalAgentBody{Name: "pyquoter", Capabilities: []string{"quote.shipping"}}); err != nil {
		t.Fatal(err)
	}
	if got := skills(); strings.Join(got, ",") != "quote.shipping" {
		t.Errorf("skills with an external agent: %v, want quote.shipping", got)
	}
	if err := d.Client().RemoveExternal(ctx, "pyquoter"); err != nil {
		t.Fatal(err)
	}
	if got := skills(); len(got) != 0 {
		t.Fatalf("skills after the external agent left: %v, want none", got)
	}
	writeConfig(t, dir, fmt.Sprintf("a2a:\n  listen: 127.0.0.1:0\nagents:\n  - name: default\n  - name: shouter\n    a2a: %s/.well-known/agent-card.json\n    price: 1\n", shout))
	c, err := d.Reload()
	if err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if strings.Join(c.Added, ",") != "shouter" {
		t.Errorf("changes %+v, want shouter added", c)
	}
	if got := skills(); strings.Join(got, ",") != "shout" {
		t.Errorf("gateway skills after the reload: %v, want shout", got)
	}
	// A card that no longer offers the listed skill is refused and
	// nothing changes.
	writeConfig(t, dir, fmt.Sprintf("a2a:\n  listen: 127.0.0.1:0\nagents:\n  - name: default\n  - name: shouter\n    a2a: %s\n    capabilities: [whisper]\n", shout))
	if _, err := d.Reload(); err == nil || !strings.Contains(err.Error(), `no skill "whisper"`) || !strings.Contains(err.Error(), "config.yaml: line") {
		t.Errorf("Reload with a skill the card lacks: %v, want it refused naming the file, line and skill", err)
	}
	if got := skills(); strings.Join(got, ",") != "shout" {
		t.Errorf("gateway skills after a refused reload: %v, want shout still", got)
	}
	writeConfig(t, dir, "a2a:\n  listen: 127.0.0.1:0\n")
	if c, err = d.Reload(); err != nil || strings.Join(c.Removed, ",") != "shouter" {
		t.Fatalf("Reload removing it: %+v, %v", c, err)
	}
	if got := skills(); len(got) != 0 {
		t.Errorf("skills after removal: %v, want none", got)
	}
	if _, err := d.Node().Agent("shouter"); err == nil {
		t.Error("shouter is still hosted after its removal")
	}
}

// The gateway keeps to loopback unless told otherwise, and a bad address
// is refused by New, naming the option.
func TestA2AListenChecked(t *testing.T) {
	o := loopback(newHome(t, ""))
	o.A2AListen = "nowhere"
	var oe *OptionError
	if _, err := New(o); !errors.As(err, &oe) || oe.Option != "A2AListen" {
		t.Errorf("New with A2AListen %q: %v, want an OptionError for A2AListen", o.A2AListen, err)
	}
	o.A2AListen = "0.0.0.0:0"
	d, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	err = d.Start(ctxT(t))
	if !errors.As(err, &oe) || oe.Option != "A2AListen" || !strings.Contains(err.Error(), "not a loopback address") {
		t.Errorf("Start with the gateway on 0.0.0.0: %v, want it refused as not loopback", err)
	}
	if err == nil {
		_ = d.Close(ctxT(t))
	}
}
