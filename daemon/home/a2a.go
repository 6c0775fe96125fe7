package home

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/parleynet/parley/intent"
)

// A2ATokenFile is the A2A gateway's bearer token in the home, unless
// a2a.token_file names another file.
const A2ATokenFile = "a2a.token"

// checkA2AAgent checks an agent entry's a2a fields.
func checkA2AAgent(name, u string, exec bool, price float64, eta time.Duration, tokenFile string) error {
	if u == "" {
		if price != 0 || eta != 0 || tokenFile != "" {
			return fmt.Errorf("%s: price, eta and a2a_token_file are for an agent backed by a remote A2A agent (a2a: URL)", name)
		}
		return nil
	}
	if exec {
		return fmt.Errorf("%s: has both exec and a2a; an agent is a command or a remote A2A agent", name)
	}
	p, err := url.Parse(u)
	if err != nil || p.Scheme != "http" && p.Scheme != "https" || p.Host == "" {
		return fmt.Errorf("%s: a2a %q: want the http:// or https:// URL of the A2A agent or of its card", name, u)
	}
	switch {
	case price < 0 || math.IsNaN(price) || math.IsInf(price, 0):
		return fmt.Errorf("%s: price %g: want ≥ 0", name, price)
	case eta < 0:
		return fmt.Errorf("%s: eta %s: want ≥ 0", name, eta)
	}
	return nil
}

// checkA2A checks the a2a block.
func checkA2A(c A2AConfig) error {
	if c.Listen != "" {
		if err := checkHostPort(c.Listen); err != nil {
			return fmt.Errorf("listen %q: %v", c.Listen, err)
		}
	}
	if c.GRPCListen != "" {
		if err := checkHostPort(c.GRPCListen); err != nil {
			return fmt.Errorf("grpc_listen %q: %v", c.GRPCListen, err)
		}
	}
	if c.URL != "" {
		if u, err := url.Parse(c.URL); err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
			return fmt.Errorf("url %q: want an http:// or https:// URL", c.URL)
		}
	}
	for _, e := range c.Export {
		if err := intent.ValidCapability(e); err != nil {
			return fmt.Errorf("export: %v", err)
		}
	}
	if c.MaxTasks < 0 || c.MaxLive < 0 || c.MaxBody < 0 {
		return errors.New("max_tasks, max_live and max_body must not be negative (0 keeps the default)")
	}
	return nil
}

// A2AToken returns the A2A gateway's bearer token: a2a.token_file's
// content, or the home's a2a.token, which is generated (mode 0600) if it
// does not exist yet. Unlike api.token it survives restarts: A2A
// clients outside this machine hold it.
func (h *Home) A2AToken() (string, error) {
	path := h.Config.A2A.TokenFile
	if path == "" {
		path = A2ATokenFile
	}
	path = h.path(path)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		tok := strings.TrimSpace(string(b))
		if len(tok) < 16 {
			return "", fmt.Errorf("%s: the A2A token must be at least 16 characters", path)
		}
		return tok, nil
	case !errors.Is(err, fs.ErrNotExist) || h.Config.A2A.TokenFile != "":
		return "", fmt.Errorf("a2a.token_file: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	tok := base64.RawURLEncoding.EncodeToString(raw)
	if err := writeFileAtomic(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write the A2A token: %w", err)
	}
	return tok, nil
}

// A2AAgentToken is the bearer token an a2a agent entry sends to its
// remote ("" without a2a_token_file).
func (h *Home) A2AAgentToken(ac AgentConfig) (string, error) {
	if ac.A2ATokenFile == "" {
		return "", nil
	}
	b, err := os.ReadFile(h.path(ac.A2ATokenFile))
	if err != nil {
		return "", fmt.Errorf("%s: line %d: agents: %s: a2a_token_file: %w", h.ConfigPath(), ac.Line, ac.Name, err)
	}
	return strings.TrimSpace(string(b)), nil
}
