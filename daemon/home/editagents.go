package home

import (
	"bytes"
	"fmt"

	"go.yaml.in/yaml/v3"
)

// EditAgents returns config.yaml's text data with the agent add appended
// to its agents list (if add is not nil) and the agent named remove taken
// out (if remove is not ""). The rest of the file, comments included, is
// kept; a file without an agents list gets one holding the default agent
// it implied. It does not check the result: Load does.
func EditAgents(data []byte, add *AgentConfig, remove string) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if doc.Kind == 0 { // an empty file
		doc = yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.MappingNode}}}
	}
	top := doc.Content[0]
	if top.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: want a mapping at the top", top.Line)
	}
	var agents *yaml.Node
	for i := 0; i+1 < len(top.Content); i += 2 {
		if top.Content[i].Value == "agents" {
			agents = top.Content[i+1]
		}
	}
	if agents == nil || agents.Kind == yaml.ScalarNode && agents.Tag == "!!null" {
		seq := &yaml.Node{Kind: yaml.SequenceNode}
		def := &yaml.Node{}
		if err := def.Encode(agentEntry{Name: DefaultAgent}); err != nil {
			return nil, err
		}
		seq.Content = append(seq.Content, def)
		if agents == nil {
			top.Content = append(top.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: "agents"}, seq)
		} else {
			*agents = *seq
		}
		agents = seq
	}
	if agents.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("line %d: agents: want a list", agents.Line)
	}
	if remove != "" {
		kept := agents.Content[:0]
		for _, a := range agents.Content {
			var e agentEntry
			if a.Decode(&e) == nil && e.Name == remove {
				continue
			}
			kept = append(kept, a)
		}
		agents.Content = kept
	}
	if add != nil {
		e := agentEntry{Name: add.Name, Capabilities: add.Capabilities, Exec: add.Exec}
		if add.Timeout > 0 {
			e.Timeout = add.Timeout.String()
		}
		n := &yaml.Node{}
		if err := n.Encode(e); err != nil {
			return nil, err
		}
		for _, v := range n.Content { // lists on one line, as the template writes them
			if v.Kind == yaml.SequenceNode {
				v.Style = yaml.FlowStyle
			}
		}
		agents.Content = append(agents.Content, n)
	}
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// agentEntry is one agents: item as EditAgents writes it.
type agentEntry struct {
	Name         string   `yaml:"name"`
	Capabilities []string `yaml:"capabilities,omitempty"`
	Exec         []string `yaml:"exec,omitempty"`
	Timeout      string   `yaml:"timeout,omitempty"`
}

// WriteConfig replaces config.yaml with data, atomically: a reader sees
// the old file or the new one.
func (h *Home) WriteConfig(data []byte) error {
	return writeFileAtomic(h.ConfigPath(), data, 0o600)
}
