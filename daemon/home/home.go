// Package home owns a parley node's home directory: its layout, creating it
// (Init), loading it (Open), its config.yaml, and the files through which a
// running daemon tells local clients where its API is (api, api.token).
//
// Layout:
//
//	<home>/config.yaml             commented node configuration
//	<home>/keys/node.key           the node's libp2p key (0600)
//	<home>/keys/agents/<name>.key  one key per hosted agent, config.yaml's
//	                               and external ones alike (0600)
//	<home>/external.json           external agents registered over the API:
//	                               name, capabilities, SHA-256 of its token
//	<home>/api                     URL of the running daemon's API
//	<home>/api.token               the API's operator token (0600)
//	<home>/peers.json              peers met, redialled at the next start
//	                               (written by package discovery)
//	<home>/audit/                  the audit log (package audit)
//	<home>/audit.replaced-<unix>/  the log of a home replaced by init
//	                               --force, with node.pub: the PeerID of
//	                               the node key that signed it
//
// It does not own the key format or permission checks (package identity),
// what the configuration means to a node (package node), or the API itself
// (package node/api).
package home

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	logging "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parleynet/parley/identity"
)

var log = logging.Logger("parley/home")

// File and directory names inside a home.
const (
	ConfigFile = "config.yaml"
	KeysDir    = "keys"
	NodeKey    = "node.key"
	AgentsDir  = "agents"
	APIFile    = "api"
	TokenFile  = "api.token"
	AuditDir   = "audit" // the daemon's audit log
)

// DefaultAgent is the name of the agent Init creates.
const DefaultAgent = "default"

// EnvHome names the environment variable that overrides the default home.
const EnvHome = "PARLEY_HOME"

// Sentinel errors callers branch on.
var (
	// ErrNotInitialised is returned by Open for a directory Init never
	// completed in.
	ErrNotInitialised = errors.New("home not initialised")
	// ErrExists is returned by Init for a home that is already initialised
	// when force is not set.
	ErrExists = errors.New("home already initialised")
	// ErrNoAPIFile is returned by ReadAPI when no daemon has published its
	// API in the home.
	ErrNoAPIFile = errors.New("no daemon API published")
)

// Home is an initialised, loaded home directory.
type Home struct {
	// pending are the keys Load generated for agents new in config.yaml,
	// written by SaveKeys.
	pending map[string]crypto.PrivKey

	// Dir is the home's absolute path.
	Dir string
	// Config is config.yaml as loaded and checked by Open.
	Config Config
	// NodeKey is the node's libp2p identity.
	NodeKey crypto.PrivKey
	// Agents are the agents named in the config, in its order; the first
	// is the default agent.
	Agents []*identity.Agent
}

// DefaultDir returns $PARLEY_HOME, or else ~/.parley (./.parley if the
// user's home directory is unknown).
func DefaultDir() string {
	if d := os.Getenv(EnvHome); d != "" {
		return d
	}
	u, err := os.UserHomeDir()
	if err != nil {
		return ".parley"
	}
	return filepath.Join(u, ".parley")
}

// PeerID returns the node's PeerID.
func (h *Home) PeerID() peer.ID {
	id, _ := peer.IDFromPrivateKey(h.NodeKey)
	return id
}

// ConfigPath returns the path of config.yaml.
func (h *Home) ConfigPath() string { return configPath(h.Dir) }

// NodeKeyPath returns the path of the node key.
func (h *Home) NodeKeyPath() string { return nodeKeyPath(h.Dir) }

// AgentKeyPath returns the path of the named agent's key.
func (h *Home) AgentKeyPath(name string) string { return agentKeyPath(h.Dir, name) }

func configPath(dir string) string  { return filepath.Join(dir, ConfigFile) }
func nodeKeyPath(dir string) string { return filepath.Join(dir, KeysDir, NodeKey) }
func agentKeyPath(dir, name string) string {
	return filepath.Join(dir, KeysDir, AgentsDir, name+".key")
}

// Open loads the home in dir, as Load does, and writes the keys of agents
// new in config.yaml.
func Open(dir string) (*Home, error) {
	h, err := Load(dir)
	if err != nil {
		return nil, err
	}
	if err := h.SaveKeys(); err != nil {
		return nil, err
	}
	return h, nil
}

// Load reads the home in dir: its config, node key and the keys of the
// agents its config names, and writes nothing. An agent new in config.yaml
// gets a key generated here, kept until SaveKeys writes it (so a caller
// can check everything before the home changes). A directory that was
// never initialised gives an error wrapping ErrNotInitialised; key file
// errors come from identity and name the file.
func Load(dir string) (*Home, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("home %s: %w", dir, err)
	}
	if _, err := os.Stat(configPath(abs)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, notInitialised(dir)
		}
		return nil, fmt.Errorf("home %s: %w", dir, err)
	}
	cfg, err := loadConfig(configPath(abs))
	if err != nil {
		return nil, err
	}
	h := &Home{Dir: abs, Config: cfg, pending: map[string]crypto.PrivKey{}}
	if h.NodeKey, err = identity.ReadKeyFile(nodeKeyPath(abs)); err != nil {
		return nil, fmt.Errorf("node key: %w", err)
	}
	for _, ac := range cfg.Agents {
		path := agentKeyPath(abs, ac.Name)
		k, err := identity.ReadKeyFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			// An agent newly added to config.yaml gets its key here, the
			// way init made the default agent's.
			if k, err = identity.GenerateKey(); err == nil {
				h.pending[ac.Name] = k
			}
		}
		if err != nil {
			return nil, fmt.Errorf("agent %q: %w", ac.Name, err)
		}
		a, err := identity.NewAgent(ac.Name, k)
		if err != nil {
			return nil, fmt.Errorf("agent %q: %w", ac.Name, err)
		}
		h.Agents = append(h.Agents, a)
	}
	return h, nil
}

// SaveKeys writes the keys Load generated for agents new in config.yaml.
func (h *Home) SaveKeys() error {
	for name, k := range h.pending {
		if err := identity.WriteKeyFile(agentKeyPath(h.Dir, name), k); err != nil {
			return fmt.Errorf("agent %q: %w", name, err)
		}
		delete(h.pending, name)
	}
	return nil
}

// AgentKey returns the key of the named agent from keys/agents/<name>.key,
// creating the file if there is none: external agents, registered over the
// API, keep their AgentID across restarts this way.
func (h *Home) AgentKey(name string) (crypto.PrivKey, error) {
	if err := identity.ValidAgentName(name); err != nil {
		return nil, err
	}
	path := agentKeyPath(h.Dir, name)
	k, err := identity.ReadKeyFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if k, err = identity.GenerateKey(); err == nil {
			err = identity.WriteKeyFile(path, k)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("agent %q: %w", name, err)
	}
	return k, nil
}

func notInitialised(dir string) error {
	msg := fmt.Sprintf("%s has no %s (run: parley init --home %s)", dir, ConfigFile, dir)
	if old := leftOver(dir); old != "" {
		msg += fmt.Sprintf("; an interrupted 'parley init --force' left the previous home in %s: move its files back into %s to restore it, or remove it", old, dir)
	}
	return fmt.Errorf("%w: %s", ErrNotInitialised, msg)
}

// leftOver returns a replaced home that an interrupted Init left inside
// dir, or "".
func leftOver(dir string) string {
	olds, _ := filepath.Glob(filepath.Join(dir, oldPrefix+"*", ConfigFile))
	if len(olds) == 0 {
		return ""
	}
	return filepath.Dir(olds[0])
}

// initialised reports whether dir holds (part of) a home.
func initialised(dir string) (bool, error) {
	for _, name := range []string{ConfigFile, KeysDir} {
		_, err := os.Lstat(filepath.Join(dir, name))
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return false, err
		}
	}
	return false, nil
}
