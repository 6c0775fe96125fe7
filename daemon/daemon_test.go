package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/multiformats/go-multiaddr"
	"go.uber.org/goleak"

	"github.com/parleynet/parley/audit"
	"github.com/parleynet/parley/daemon/home"
	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/node"
	"github.com/parleynet/parley/node/api"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newHome makes an initialised home with the given config.yaml ("" keeps
// init's).
func newHome(t *testing.T, config string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "home")
	if _, err := home.Init(dir, false); err != nil {
		t.Fatal(err)
	}
	if config != "" {
		writeConfig(t, dir, config)
	}
	return dir
}

func writeConfig(t *testing.T, dir, config string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, home.ConfigFile), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// loopback are options for a daemon that keeps to loopback and itself.
func loopback(dir string) Options {
	return Options{Home: dir, Listen: []string{"/ip4/127.0.0.1/tcp/0"}, NoMDNS: true, DHTMode: "off"}
}

// start runs a daemon until the test ends.
func start(t *testing.T, opts Options) *Daemon {
	t.Helper()
	d, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
		defer cancel()
		if err := d.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return d
}

// snapshot records every file under dir with its size and time.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			m[path] = fmt.Sprintf("%v %v %d", fi.Mode(), fi.ModTime(), fi.Size())
		}
		return nil
	})
	return m
}

// TestNewRefusesBadOptions: every bad value is refused by New, naming the
// field or the file and line, and the home is left as it was.
func TestNewRefusesBadOptions(t *testing.T) {
	script := filepath.Join(t.TempDir(), "plain.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	psk := filepath.Join(t.TempDir(), "swarm.key")
	if err := os.WriteFile(psk, []byte("/key/swarm/psk/1.0.0/\n/base16/\n"+strings.Repeat("ab", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		config string // config.yaml; "" keeps init's
		opts   func(o *Options)
		option string   // the OptionError's field, if one
		want   []string // in the error
	}{
		{"listen", "", func(o *Options) { o.Listen = []string{"/ip4/999.1.1.1/tcp/1"} }, "Listen", []string{"/ip4/999.1.1.1/tcp/1"}},
		{"announce", "", func(o *Options) { o.Announce = []string{"203.0.113.7:4001"} }, "Announce", []string{"203.0.113.7:4001"}},
		{"announce port 0", "", func(o *Options) { o.Announce = []string{"/ip4/203.0.113.7/tcp/0"} }, "Announce", []string{"/ip4/203.0.113.7/tcp/0", "port 0"}},
		{"bootstrap without peer", "", func(o *Options) { o.Bootstrap = []string{"/ip4/127.0.0.1/tcp/4001"} }, "Bootstrap", []string{"/ip4/127.0.0.1/tcp/4001", "/p2p/<PeerID>"}},
		{"dht mode", "", func(o *Options) { o.DHTMode = "sometimes" }, "DHTMode", []string{"sometimes"}},
		{"api", "", func(o *Options) { o.API = "127.0.0.1:99999" }, "API", []string{"127.0.0.1:99999", "bad port"}},
		{"api not host:port", "", func(o *Options) { o.API = "localhost" }, "API", []string{"localhost"}},
		{"psk missing", "", func(o *Options) { o.PSK = "/nonexistent/swarm.key" }, "PSK", []string{"/nonexistent/swarm.key"}},
		{"psk with only quic", "", func(o *Options) {
			o.PSK, o.Listen = psk, []string{"/ip4/127.0.0.1/udp/0/quic-v1"}
		}, "Listen", []string{"needs a TCP listen address"}},
		{"policy", "", func(o *Options) { o.PolicyFile = "/nonexistent/policy.yaml" }, "PolicyFile", []string{"/nonexistent/policy.yaml"}},
		{"no home", "", func(o *Options) { o.Home = "" }, "Home", []string{"required"}},
		{"exec not found", "agents:\n  - name: default\n  - name: quoter\n    capabilities: [quote]\n    exec: [/nonexistent/quote]\n",
			nil, "", []string{"config.yaml: line 3", "agent quoter", "/nonexistent/quote does not exist"}},
		{"exec not on PATH", "agents:\n  - name: default\n  - name: quoter\n    capabilities: [quote]\n    exec: [no-such-program-x]\n",
			nil, "", []string{"config.yaml: line 3", `"no-such-program-x" is not on $PATH`}},
		{"exec not executable", "agents:\n  - name: default\n  - name: quoter\n    capabilities: [quote]\n    exec: [" + script + "]\n",
			nil, "", []string{"config.yaml: line 3", "not executable", "exec: [sh, "}},
		{"capabilities without exec", "agents:\n  - name: default\n  - name: quoter\n    capabilities: [quote]\n",
			nil, "", []string{"config.yaml: line 3", "no exec", "parley agents register"}},
		{"config policy broken", "policy: /nonexistent/p.yaml\n", nil, "", []string{"config.yaml: policy", "/nonexistent/p.yaml"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := newHome(t, tt.config)
			before := snapshot(t, dir)
			o := loopback(dir)
			if tt.opts != nil {
				tt.opts(&o)
			}
			_, err := New(o)
			if err == nil {
				t.Fatal("New accepted it")
			}
			var oe *OptionError
			if tt.option != "" && (!errors.As(err, &oe) || oe.Option != tt.option) {
				t.Fatalf("error %v, want an OptionError for %s", err, tt.option)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if after := snapshot(t, dir); !maps(before, after) {
				t.Fatalf("the home changed: %v -> %v", before, after)
			}
		})
	}
}

func maps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestBootstrapToItself: a node given its own address to join is refused.
func TestBootstrapToItself(t *testing.T) {
	dir := newHome(t, "")
	h, err := home.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	self := "/ip4/127.0.0.1/tcp/4001/p2p/" + h.PeerID().String()
	o := loopback(dir)
	o.Bootstrap = []string{self}
	var oe *OptionError
	if _, err := New(o); !errors.As(err, &oe) || oe.Option != "Bootstrap" || oe.Value != self || !strings.Contains(err.Error(), "own PeerID") {
		t.Fatalf("New: %v, want the Bootstrap option refused as the node itself", err)
	}
}

// TestStartAndClose: a started daemon publishes its API in the home and
// answers on it; Close withdraws the files, stops the node and closes the
// audit log (which another Open can then take).
func TestStartAndClose(t *testing.T) {
	dir := newHome(t, "")
	d, err := New(loopback(dir))
	if err != nil {
		t.Fatal(err)
	}
	if d.Health().Live {
		t.Fatal("live before Start")
	}
	if err := d.Start(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	url, token, err := home.ReadAPI(dir)
	if err != nil || url != d.APIURL() {
		t.Fatalf("api files: %q %v, want %s", url, err, d.APIURL())
	}
	if fi, err := os.Stat(filepath.Join(dir, home.TokenFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("api.token: %v %v", err, fi)
	}
	st, err := api.NewClient(url, token).Status(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if st.Peer != d.Node().ID() || !st.Audit.Enabled || st.Audit.Dir != filepath.Join(dir, "audit") ||
		len(st.Agents) != 1 || st.Agents[0].Kind != api.KindSigner {
		t.Fatalf("status %+v", st)
	}
	if h := d.Health(); !h.Live || h.Ready || !slices.Contains(h.Reasons, "no peers connected") {
		t.Fatalf("health of a lone node %+v, want live and not ready for want of peers", h)
	}
	if err := d.Start(ctxT(t)); err == nil {
		t.Fatal("a second Start succeeded")
	}

	ctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	if err := d.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{home.APIFile, home.TokenFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s still there after Close: %v", f, err)
		}
	}
	if _, err := http.Get(url + api.PathHealth); err == nil {
		t.Error("the API still answers after Close")
	}
	h, err := home.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.Open(filepath.Join(dir, "audit"), h.NodeKey, audit.Options{})
	if err != nil {
		t.Fatalf("the audit log is still held after Close: %v", err)
	}
	_ = l.Close()
	if err := d.Close(ctx); err != nil {
		t.Fatalf("a second Close: %v", err)
	}
	if _, err := d.Reload(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Reload after Close: %v, want ErrClosed", err)
	}
}

// TestSecondDaemonForTheSameHome is refused while the first runs.
func TestSecondDaemonForTheSameHome(t *testing.T) {
	dir := newHome(t, "")
	start(t, Options{Home: dir, Listen: []string{"/ip4/127.0.0.1/tcp/0"}, NoMDNS: true, DHTMode: "off"})
	d2, err := New(Options{Home: dir, Listen: []string{"/ip4/127.0.0.1/tcp/0"}, NoMDNS: true, DHTMode: "off", NoAudit: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := d2.Start(ctxT(t)); !errors.Is(err, ErrAlreadyRunning) {
		t.Fatalf("second Start: %v, want ErrAlreadyRunning", err)
	}
}

// TestFixedPortHeldElsewhere: a fixed listen port another socket holds is
// a start error naming the address — for TCP, where go-libp2p's reuseport
// would otherwise let both listen, and for QUIC's UDP — and the home is
// not written to.
func TestFixedPortHeldElsewhere(t *testing.T) {
	// The holder is a daemon on a port the kernel picked, so no other
	// socket can take the port between a pick and the bind.
	first := start(t, Options{Home: newHome(t, ""), Listen: []string{"/ip4/127.0.0.1/tcp/0"}, NoMDNS: true, DHTMode: "off"})
	var tcp string
	for _, a := range first.Node().Addrs() {
		if port, err := a.ValueForProtocol(multiaddr.P_TCP); err == nil {
			tcp = "/ip4/127.0.0.1/tcp/" + port
		}
	}
	if tcp == "" {
		t.Fatalf("the first daemon listens on no TCP address: %v", first.Node().Addrs())
	}

	udp, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	quic := fmt.Sprintf("/ip4/127.0.0.1/udp/%d/quic-v1", udp.LocalAddr().(*net.UDPAddr).Port)

	for _, listen := range [][]string{{tcp}, {"/ip4/127.0.0.1/tcp/0", quic}} {
		t.Run(listen[len(listen)-1], func(t *testing.T) {
			dir := newHome(t, "")
			before := snapshot(t, dir)
			d, err := New(Options{Home: dir, Listen: listen, NoMDNS: true, DHTMode: "off"})
			if err != nil {
				t.Fatal(err)
			}
			err = d.Start(ctxT(t))
			if !errors.Is(err, ErrAddrInUse) || !strings.Contains(err.Error(), listen[len(listen)-1]) {
				t.Fatalf("Start: %v, want ErrAddrInUse naming %s", err, listen[len(listen)-1])
			}
			if after := snapshot(t, dir); !maps(before, after) {
				t.Fatalf("the refused daemon wrote to its home: %v -> %v", before, after)
			}
		})
	}
}

// TestPSKDropsQUICWithAWarning: a private network listens on TCP only; it
// starts, without the QUIC address.
func TestPSKDropsQUIC(t *testing.T) {
	psk := filepath.Join(t.TempDir(), "swarm.key")
	if err := os.WriteFile(psk, []byte("/key/swarm/psk/1.0.0/\n/base16/\n"+strings.Repeat("cd", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o := loopback(newHome(t, ""))
	o.PSK = psk
	o.Listen = append(o.Listen, "/ip4/127.0.0.1/udp/0/quic-v1")
	d := start(t, o)
	for _, a := range d.Node().Addrs() {
		if strings.Contains(a.String(), "/udp/") {
			t.Fatalf("a private node listens on %s", a)
		}
	}
}

// TestCloseGivesUpInTimeAndKeepsTheAuditLogOpen: a node that cannot stop
// in time (here, an agent's work ignores cancellation) makes Close give up
// at its context's deadline, and the audit log it would still append to
// is left open rather than closed under it.
func TestCloseGivesUpInTimeAndKeepsTheAuditLogOpen(t *testing.T) {
	requester := start(t, loopback(newHome(t, "")))
	dir := newHome(t, "")
	o := loopback(dir)
	for _, a := range requester.Node().Addrs() {
		o.Bootstrap = append(o.Bootstrap, a.String())
	}
	d, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	working, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	if _, err := d.Node().AddAgent(node.AgentCard{Name: "stuck", Capabilities: []string{"stuck"}}, negotiation.HandlerFuncs{
		BidFunc: func(context.Context, negotiation.Call) (negotiation.Bid, error) {
			return negotiation.Bid{Price: 1}, nil
		},
		WorkFunc: func(context.Context, negotiation.Task) (json.RawMessage, error) {
			once.Do(func() { close(working) })
			<-release // ignores its context, as a badly written agent does
			return json.RawMessage(`1`), nil
		},
	}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); len(requester.Node().TopicPeers("stuck")) == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the requester never saw the stuck agent's node on its topic")
		}
	}
	rctx, cancel := context.WithCancel(ctxT(t))
	requested := make(chan struct{})
	go func() {
		defer close(requested)
		_, _ = requester.Node().Request(rctx, negotiation.Need{Capability: "stuck", Input: json.RawMessage(`1`)},
			negotiation.WithBidWindow(200*time.Millisecond), negotiation.WithTimeout(20*time.Second))
	}()
	defer func() { cancel(); <-requested }()
	select {
	case <-working:
	case <-time.After(15 * time.Second):
		t.Fatal("the stuck agent never got the work")
	}

	ctx, cancelClose := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancelClose()
	began := time.Now()
	err = d.Close(ctx)
	if err == nil || !strings.Contains(err.Error(), "the node did not stop in time") || !strings.Contains(err.Error(), "audit log is left open") {
		t.Fatalf("Close: %v, want it to give up and say the audit log is left open", err)
	}
	if took := time.Since(began); took > 2*time.Second {
		t.Fatalf("Close took %s with a 300ms context", took)
	}
	h, err := home.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if l, err := audit.Open(filepath.Join(dir, "audit"), h.NodeKey, audit.Options{}); !errors.Is(err, audit.ErrLocked) {
		if err == nil {
			_ = l.Close()
		}
		t.Fatalf("opening the log again: %v, want ErrLocked: it must still be open while the node's goroutines run", err)
	}
	close(release)
	// The node finishes closing on its own; its log is then the caller's to
	// close, as a process does by exiting.
	select {
	case <-d.nodeDone:
	case <-time.After(10 * time.Second):
		t.Fatal("the node did not finish closing")
	}
	if err := d.alog.Close(); err != nil {
		t.Fatal(err)
	}
}
