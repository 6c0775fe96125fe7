package daemon

import (
	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/parleynet/parley/daemon/home"
	"github.com/parleynet/parley/node/api"
)

// registry keeps the API's external agents in the home: their keys in
// keys/agents/<name>.key, their registrations in external.json.
type registry struct{ h *home.Home }

func (r registry) Key(name string) (crypto.PrivKey, error) { return r.h.AgentKey(name) }

func (r registry) Load() ([]api.Registration, error) {
	ext, err := r.h.ExternalAgents()
	if err != nil {
		return nil, err
	}
	regs := make([]api.Registration, 0, len(ext))
	for _, e := range ext {
		regs = append(regs, api.Registration{Name: e.Name, Capabilities: e.Capabilities, TokenSHA256: e.TokenSHA256, Registered: e.Registered})
	}
	return regs, nil
}

func (r registry) Save(regs []api.Registration) error {
	ext := make([]home.ExternalAgent, 0, len(regs))
	for _, g := range regs {
		ext = append(ext, home.ExternalAgent{Name: g.Name, Capabilities: g.Capabilities, TokenSHA256: g.TokenSHA256, Registered: g.Registered})
	}
	return r.h.SaveExternalAgents(ext)
}
