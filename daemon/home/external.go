package home

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// ExternalFile holds the external agents registered over the API.
const ExternalFile = "external.json"

// ExternalAgent is one registration in external.json. Only a hash of the
// agent's token is kept: the home then holds nothing that lets a reader
// act as the agent (the operator token in api.token aside).
type ExternalAgent struct {
	Name         string    `json:"name"`
	Capabilities []string  `json:"capabilities"`
	TokenSHA256  string    `json:"token_sha256"`
	Registered   time.Time `json:"registered"`
}

type externalFile struct {
	Agents []ExternalAgent `json:"agents"`
}

// ExternalPath returns the path of external.json.
func (h *Home) ExternalPath() string { return filepath.Join(h.Dir, ExternalFile) }

// ExternalAgents reads the registrations in external.json; a home without
// the file has none.
func (h *Home) ExternalAgents() ([]ExternalAgent, error) {
	data, err := os.ReadFile(h.ExternalPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var f externalFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", h.ExternalPath(), err)
	}
	return f.Agents, nil
}

// SaveExternalAgents replaces external.json, atomically, with mode 0600.
func (h *Home) SaveExternalAgents(agents []ExternalAgent) error {
	if agents == nil {
		agents = []ExternalAgent{}
	}
	data, err := json.MarshalIndent(externalFile{Agents: agents}, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(h.ExternalPath(), append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", h.ExternalPath(), err)
	}
	return nil
}
