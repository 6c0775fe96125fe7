package home

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/node"
)

func mode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

// entries lists the names in dir.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestInitCreatesHome(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "h")
	h, err := Init(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]fs.FileMode{
		dir:                                    0o700,
		filepath.Join(dir, "config.yaml"):      0o600,
		filepath.Join(dir, "keys", "node.key"): 0o600,
		filepath.Join(dir, "keys", "agents", "default.key"): 0o600,
	} {
		if got := mode(t, path); got != want {
			t.Errorf("%s: mode %#o, want %#o", path, got, want)
		}
	}
	if len(h.Agents) != 1 || h.Agents[0].Name != DefaultAgent {
		t.Fatalf("agents = %v, want one called %q", h.Agents, DefaultAgent)
	}
	if h.PeerID() == "" || !strings.HasPrefix(string(h.Agents[0].ID), "did:key:z6Mk") {
		t.Fatalf("bad identities: peer %q agent %q", h.PeerID(), h.Agents[0].ID)
	}
	// Nothing is left beside the home.
	if got := entries(t, filepath.Dir(dir)); len(got) != 1 {
		t.Fatalf("parent holds %v, want only the home", got)
	}

	// Open reads back the same identities.
	h2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if h2.PeerID() != h.PeerID() || h2.Agents[0].ID != h.Agents[0].ID {
		t.Fatal("Open returned other identities than Init")
	}
	cfg, err := h2.NodeConfig()
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.ListenAddrs) != 2 || cfg.NodeKey == nil || len(cfg.Agents) != 1 {
		t.Fatalf("NodeConfig = %+v", cfg)
	}
	if h2.Config.API.Listen != DefaultAPIListen {
		t.Fatalf("api.listen = %q", h2.Config.API.Listen)
	}
}

func TestInitRefusesExistingHome(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "h")
	h, err := Init(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Init(dir, false)
	if !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("second Init: %v, want ErrExists naming %s and --force", err, dir)
	}
	h2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if h2.PeerID() != h.PeerID() {
		t.Fatal("refused Init changed the node key")
	}
}

func TestInitForceReplaces(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "h")
	h, err := Init(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "stale"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	h2, err := Init(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	if h2.PeerID() == h.PeerID() || h2.Agents[0].ID == h.Agents[0].ID {
		t.Fatal("forced Init kept the old keys")
	}
	if _, err := os.Stat(filepath.Join(dir, "stale")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("forced Init kept a file of the old home")
	}
	if got := entries(t, filepath.Dir(dir)); len(got) != 1 {
		t.Fatalf("parent holds %v, want only the home", got)
	}
}

func TestInitFillsEmptyDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Init(dir, false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "notes.txt")); err != nil {
		t.Fatal("Init removed a file it did not own")
	}
	if _, err := Open(dir); err != nil {
		t.Fatal(err)
	}
}

func TestInitFailureLeavesNothing(t *testing.T) {
	boom := errors.New("injected failure")
	for _, step := range []string{"keys", "config", "swap"} {
		t.Run("new/"+step, func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, "h")
			_, err := initHome(dir, false, func(s string) error {
				if s == step {
					return boom
				}
				return nil
			})
			if !errors.Is(err, boom) {
				t.Fatalf("err = %v, want the injected failure", err)
			}
			if got := entries(t, parent); len(got) != 0 {
				t.Fatalf("failed Init left %v", got)
			}
		})
	}
	for _, step := range []string{"keys", "config", "aside", "swap"} {
		t.Run("force/"+step, func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, "h")
			h, err := Init(dir, false)
			if err != nil {
				t.Fatal(err)
			}
			_, err = initHome(dir, true, func(s string) error {
				if s == step {
					return boom
				}
				return nil
			})
			if !errors.Is(err, boom) {
				t.Fatalf("err = %v, want the injected failure", err)
			}
			if got := entries(t, parent); len(got) != 1 {
				t.Fatalf("failed Init left %v beside the home", got)
			}
			if got := entries(t, dir); !slices.Equal(got, []string{"config.yaml", "keys"}) {
				t.Fatalf("failed Init left %v in the home, want only config.yaml and keys", got)
			}
			h2, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			if h2.PeerID() != h.PeerID() {
				t.Fatal("failed forced Init changed the home")
			}
		})
	}
}

func TestInitReadOnlyParent(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root ignores directory permissions")
	}
	parent := t.TempDir()
	if err := os.Chmod(parent, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(parent, 0o700) })
	dir := filepath.Join(parent, "h")
	if _, err := Init(dir, false); err == nil {
		t.Fatal("Init in a read-only parent succeeded")
	}
	if got := entries(t, parent); len(got) != 0 {
		t.Fatalf("failed Init left %v", got)
	}
}

func TestOpenNotInitialised(t *testing.T) {
	for name, dir := range map[string]string{
		"empty":   t.TempDir(),
		"missing": filepath.Join(t.TempDir(), "nope"),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Open(dir)
			if !errors.Is(err, ErrNotInitialised) {
				t.Fatalf("err = %v, want ErrNotInitialised", err)
			}
			if msg := err.Error(); !strings.Contains(msg, dir) || !strings.Contains(msg, "parley init --home "+dir) {
				t.Fatalf("error %q does not name %s and the init command", msg, dir)
			}
		})
	}
}

func TestOpenGroupReadableKey(t *testing.T) {
	dir := t.TempDir()
	h, err := Init(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{h.NodeKeyPath(), h.AgentKeyPath(DefaultAgent)} {
		if err := os.Chmod(path, 0o640); err != nil {
			t.Fatal(err)
		}
		_, err := Open(dir)
		if !errors.Is(err, identity.ErrKeyPermissions) || !strings.Contains(err.Error(), path) {
			t.Fatalf("Open with %s at 0640: %v, want ErrKeyPermissions naming it", path, err)
		}
		if err := os.Chmod(path, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOpenCorruptKey(t *testing.T) {
	dir := t.TempDir()
	h, err := Init(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(h.NodeKeyPath(), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Open(dir)
	if !errors.Is(err, identity.ErrKeyCorrupt) || !strings.Contains(err.Error(), h.NodeKeyPath()) {
		t.Fatalf("Open with a corrupt key: %v", err)
	}
}

func TestConfig(t *testing.T) {
	const path = "/h/config.yaml"
	boot := "/ip4/192.0.2.1/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"
	tests := []struct {
		name, yaml string
		wantErr    []string // substrings of the error; nil means success
	}{
		{"default", defaultConfigYAML, nil},
		{"empty", "", nil},
		{"full", "listen: [/ip4/127.0.0.1/tcp/4001]\nbootstrap: [" + boot + "]\nagents: [{name: a}, {name: b}]\napi: {listen: '127.0.0.1:5001'}\nlimits: {max_intent_size: 2000, intent_ttl: 1m}\nconnmgr: {low: 1, high: 2}\n", nil},
		{"unknown key", "agents:\n  - name: default\nlisten_on: []\n", []string{path, "line 3", "listen_on"}},
		{"unknown nested key", "api:\n  listen: 127.0.0.1:0\n  port: 3\n", []string{path, "line 3", "port"}},
		{"bad listen", "listen:\n  - /ip4/1.2.3.4/tcp/1\n  - /ip4/nope\n", []string{path, "line 3", "listen", "/ip4/nope"}},
		{"bad bootstrap", "bootstrap:\n  - /ip4/1.2.3.4/tcp/1\n", []string{path, "line 2", "bootstrap", "/ip4/1.2.3.4/tcp/1"}},
		{"bad agent", "agents:\n  - name: Bad Name\n", []string{path, "line 2", "Bad Name"}},
		{"duplicate agent", "agents: [{name: a}, {name: a}]\n", []string{path, "listed twice"}},
		{"bad type", "limits:\n  max_intent_size: lots\n", []string{path, "line 2", "lots"}},
		{"bad duration", "limits:\n  intent_ttl: forever\n", []string{path, "line 2", "forever"}},
		{"bad api", "api: {listen: nowhere}\n", []string{path, "line 1", "nowhere"}},
		{"watermarks", "connmgr: {low: 10, high: 5}\n", []string{path, "low 10 is above high 5"}},
		{"discovery and nat", "mdns: false\ndht: {mode: client}\nannounce: [/ip4/203.0.113.7/tcp/4001]\nnat: {relay_service: true, hole_punching: false}\n", nil},
		{"bad announce", "announce:\n  - /ip4/203.0.113.7/tcp/4001\n  - not-an-addr\n", []string{path, "line 3", "announce", "not-an-addr"}},
		{"bad dht mode", "mdns: true\ndht:\n  mode: sometimes\n", []string{path, "line 3", "dht.mode", "sometimes"}},
		{"bad mdns", "mdns: maybe\n", []string{path, "line 1", "maybe"}},
		{"unknown nat key", "nat:\n  upnp: true\n", []string{path, "line 2", "upnp"}},
		{"bad reachability", "nat: {reachability: sometimes}\n", []string{path, "nat.reachability", "sometimes"}},
		{"relay without peer id", "nat: {relays: [/ip4/198.51.100.1/tcp/4001]}\n", []string{path, "nat.relays", "/ip4/198.51.100.1/tcp/4001"}},
		{"negative relay limit", "nat: {relay_limits: {reservations: -1}}\n", []string{path, "nat.relay_limits"}},
		{"capabilities without exec", "agents:\n  - name: default\n  - name: quoter\n    capabilities: [quote]\n",
			[]string{path, "line 3", "quoter offers quote but has no exec", "exec: [command", "parley agents register --name quoter --capability quote"}},
		{"exec without capabilities", "agents:\n  - name: default\n  - name: runner\n    exec: [sh, x.sh]\n", []string{path, "line 3", "runner runs a command but offers no capabilities"}},
		{"empty exec command", "agents:\n  - name: default\n  - name: q\n    capabilities: [quote]\n    exec: ['']\n", []string{path, "line 3", "command name is empty"}},
		{"negative agent timeout", "agents:\n  - name: default\n  - name: q\n    capabilities: [quote]\n    exec: [sh]\n    timeout: -1s\n", []string{path, "line 3", "negative timeout -1s"}},
		{"bad log level", "log_level: loud\n", []string{path, "line 1", `log_level "loud"`, "debug, info, warn or error"}},
		{"log level", "log_level: debug\n", nil},
		{"tiny intent size", "limits:\n  max_intent_size: 10\n", []string{path, "max_intent_size 10", "at least 1024"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseConfig(path, []byte(tt.yaml))
			if tt.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				if len(c.Agents) == 0 {
					t.Fatal("no agents: the default agent is missing")
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want one containing %q", tt.wantErr)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestNodeConfigFromFile(t *testing.T) {
	dir := t.TempDir()
	h, err := Init(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	h.Config.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	h.Config.Limits = LimitsConfig{MaxIntentSize: 1000, IntentTTL: time.Hour}
	h.Config.ConnMgr = ConnMgrConfig{Low: 5, High: 10}
	cfg, err := h.NodeConfig()
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.ListenAddrs) != 1 || cfg.MaxIntentSize != 1000 || cfg.IntentTTL != time.Hour ||
		cfg.ReplayWindow < time.Hour || cfg.ConnLow != 5 || cfg.ConnHigh != 10 {
		t.Fatalf("NodeConfig = %+v", cfg)
	}
}

// TestNodeConfigDiscovery: the daemon looks on the LAN and serves the DHT
// unless config.yaml says otherwise, and always remembers its peers in the
// home.
func TestNodeConfigDiscovery(t *testing.T) {
	dir := t.TempDir()
	h, err := Init(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := h.NodeConfig()
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.MDNS || cfg.DHTMode != "server" || len(cfg.Announce) != 0 ||
		!reflect.DeepEqual(cfg.NAT, node.NATConfig{}) || cfg.PeersFile != filepath.Join(h.Dir, "peers.json") {
		t.Fatalf("defaults: MDNS %v, DHTMode %q, Announce %v, NAT %+v, PeersFile %q", cfg.MDNS, cfg.DHTMode, cfg.Announce, cfg.NAT, cfg.PeersFile)
	}

	yml := "mdns: false\ndht: {mode: client}\nannounce: [/ip4/203.0.113.7/tcp/4001, /dns4/example.org/tcp/4001]\n" +
		"nat: {autonat_service: true, relay_service: true, relay_client: false, hole_punching: false, port_map: true,\n" +
		"  reachability: private, relays: [/ip4/198.51.100.1/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN],\n" +
		"  relay_limits: {reservations: 2, circuits: 4, per_ip: 1, duration: 1m, data: 65536, unlimited: true}}\n"
	if h.Config, err = parseConfig(h.ConfigPath(), []byte(yml)); err != nil {
		t.Fatal(err)
	}
	if cfg, err = h.NodeConfig(); err != nil {
		t.Fatal(err)
	}
	want := node.NATConfig{AutoNATService: true, RelayService: true, NoRelayClient: true, NoHolePunching: true, PortMap: true,
		Reachability: "private", Relays: []string{"/ip4/198.51.100.1/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"},
		RelayLimits: node.RelayLimits{Reservations: 2, Circuits: 4, PerIP: 1, Duration: time.Minute, Data: 65536, Unlimited: true}}
	if cfg.MDNS || cfg.DHTMode != "client" || len(cfg.Announce) != 2 || cfg.Announce[1].String() != "/dns4/example.org/tcp/4001" ||
		!reflect.DeepEqual(cfg.NAT, want) || cfg.PeersFile != filepath.Join(h.Dir, "peers.json") {
		t.Fatalf("from config: MDNS %v, DHTMode %q, Announce %v, NAT %+v, PeersFile %q", cfg.MDNS, cfg.DHTMode, cfg.Announce, cfg.NAT, cfg.PeersFile)
	}
	// The generated config.yaml offers every field, commented out.
	for _, k := range []string{"# mdns: true", "#   mode: server", "# announce:", "#   autonat_service: false", "#   relay_service: false",
		"#   relay_client: true", "#   hole_punching: true", "#   port_map: false", "#   reachability: auto", "#   relays:", "#   relay_limits:"} {
		if !strings.Contains(defaultConfigYAML, k) {
			t.Errorf("config.yaml does not show %q", k)
		}
	}
}

func TestAPIFiles(t *testing.T) {
	dir := t.TempDir()
	h, err := Init(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := ReadAPI(dir); !errors.Is(err, ErrNoAPIFile) {
		t.Fatalf("ReadAPI before WriteAPI: %v, want ErrNoAPIFile", err)
	}
	if err := h.WriteAPI("http://127.0.0.1:1234", "secret"); err != nil {
		t.Fatal(err)
	}
	if m := mode(t, h.TokenPath()); m != 0o600 {
		t.Fatalf("token mode %#o", m)
	}
	url, token, err := ReadAPI(dir)
	if err != nil || url != "http://127.0.0.1:1234" || token != "secret" {
		t.Fatalf("ReadAPI = %q, %q, %v", url, token, err)
	}
	// Another daemon's files are left alone.
	if err := h.RemoveAPI("http://127.0.0.1:9999"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ReadAPI(dir); err != nil {
		t.Fatal(err)
	}
	if err := h.RemoveAPI("http://127.0.0.1:1234"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{h.APIPath(), h.TokenPath()} {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s still there after RemoveAPI", p)
		}
	}
}

func TestDefaultDir(t *testing.T) {
	t.Setenv(EnvHome, "/somewhere/else")
	if got := DefaultDir(); got != "/somewhere/else" {
		t.Fatalf("DefaultDir = %q", got)
	}
	t.Setenv(EnvHome, "")
	if got := DefaultDir(); filepath.Base(got) != ".parley" {
		t.Fatalf("DefaultDir = %q", got)
	}
}

// TestLoadWritesNothing: an agent new in config.yaml gets its key from
// Load in memory only, so a caller can refuse the config with the home
// untouched; SaveKeys writes it, and Open does both.
func TestLoadWritesNothing(t *testing.T) {
	dir := t.TempDir()
	if _, err := Init(dir, false); err != nil {
		t.Fatal(err)
	}
	cfg := "agents:\n  - name: default\n  - name: helper\n"
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	h, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(h.AgentKeyPath("helper")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load wrote the new agent's key: %v", err)
	}
	if err := h.SaveKeys(); err != nil {
		t.Fatal(err)
	}
	h2, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if h2.Agents[1].ID != h.Agents[1].ID {
		t.Fatal("the saved key is not the one Load generated")
	}
}

// TestOpenNamesAnInterruptedReplacement: a home whose init --force died
// half-way says where the old home is.
func TestOpenNamesAnInterruptedReplacement(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, oldPrefix+"x")
	if err := os.MkdirAll(old, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(old, ConfigFile), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(dir)
	if !errors.Is(err, ErrNotInitialised) || !strings.Contains(err.Error(), old) {
		t.Fatalf("Open: %v, want ErrNotInitialised naming %s", err, old)
	}
}

func TestExternalAgentsFile(t *testing.T) {
	h, err := Init(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := h.ExternalAgents(); err != nil || len(got) != 0 {
		t.Fatalf("no file: %v, %v", got, err)
	}
	want := []ExternalAgent{{Name: "py", Capabilities: []string{"quote"}, TokenSHA256: "ab", Registered: time.Unix(1, 0).UTC()}}
	if err := h.SaveExternalAgents(want); err != nil {
		t.Fatal(err)
	}
	if m := mode(t, h.ExternalPath()); m != 0o600 {
		t.Fatalf("mode %#o", m)
	}
	got, err := h.ExternalAgents()
	if err != nil || len(got) != 1 || got[0].Name != "py" || got[0].TokenSHA256 != "ab" || !got[0].Registered.Equal(want[0].Registered) {
		t.Fatalf("read back %+v, %v", got, err)
	}
	k1, err := h.AgentKey("py")
	if err != nil {
		t.Fatal(err)
	}
	k2, err := h.AgentKey("py")
	if err != nil || !k1.Equals(k2) {
		t.Fatalf("AgentKey is not stable: %v", err)
	}
	if _, err := h.AgentKey("Bad Name"); !errors.Is(err, identity.ErrBadAgentName) {
		t.Fatalf("AgentKey(bad name): %v", err)
	}
}
