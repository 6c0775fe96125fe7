package simulations

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"time"

	"go.yaml.in/yaml/v3"
)

// Scenario describes one simulated mesh and what happens in it.
type Scenario struct {
	Name string `yaml:"name" json:"name"`
	// Nodes in the mesh.
	Nodes int `yaml:"nodes" json:"nodes"`
	// Degree of the random graph the nodes are connected in.
	Degree int `yaml:"degree" json:"degree"`
	// Latency of every link, one way.
	Latency time.Duration `yaml:"latency" json:"latency"`
	// Bandwidth of every link in bytes per second; 0 is unlimited.
	Bandwidth float64 `yaml:"bandwidth" json:"bandwidth"`
	// Warmup lets meshes form before the workload starts.
	Warmup time.Duration `yaml:"warmup" json:"warmup"`

	// Intents is the gossip workload: Count intents from random nodes,
	// one every Every, each expected at every node.
	Intents struct {
		Count int           `yaml:"count" json:"count"`
		Every time.Duration `yaml:"every" json:"every"`
	} `yaml:"intents" json:"intents"`

	// Tasks is the negotiation workload: Count requests from random
	// nodes, one every Every, to Contractors agents (spread over the
	// nodes) that each work for Work.
	Tasks struct {
		Count       int           `yaml:"count" json:"count"`
		Every       time.Duration `yaml:"every" json:"every"`
		Contractors int           `yaml:"contractors" json:"contractors"`
		Work        time.Duration `yaml:"work" json:"work"`
		BidWindow   time.Duration `yaml:"bid_window" json:"bid_window"`
		Timeout     time.Duration `yaml:"timeout" json:"timeout"`
	} `yaml:"tasks" json:"tasks"`

	// Workflows are Count three-step workflows (check, then price and
	// ship in parallel, on the tasks' contractors), one every Every, each
	// run by its requester's node with no coordinator. They need
	// Tasks.Contractors.
	Workflows struct {
		Count int           `yaml:"count" json:"count"`
		Every time.Duration `yaml:"every" json:"every"`
	} `yaml:"workflows" json:"workflows"`

	// Churn kills Fraction of the contractor nodes, one every Every, and
	// restarts each after Downtime (0: never).
	Churn struct {
		Fraction float64       `yaml:"fraction" json:"fraction"`
		Every    time.Duration `yaml:"every" json:"every"`
		Downtime time.Duration `yaml:"downtime" json:"downtime"`
	} `yaml:"churn" json:"churn"`

	// Partition cuts Fraction of the nodes off from the rest at At for For.
	Partition struct {
		At       time.Duration `yaml:"at" json:"at"`
		For      time.Duration `yaml:"for" json:"for"`
		Fraction float64       `yaml:"fraction" json:"fraction"`
	} `yaml:"partition" json:"partition"`

	// Hostile makes Fraction of the nodes raw peers that flood forged and
	// oversize intents.
	Hostile struct {
		Fraction float64 `yaml:"fraction" json:"fraction"`
		Rounds   int     `yaml:"rounds" json:"rounds"`
	} `yaml:"hostile" json:"hostile"`

	Seed uint64 `yaml:"seed" json:"seed"`

	// Bare runs the nodes without the audit log a daemon keeps: lighter
	// than what ships, for comparison (parley sim --bare).
	Bare bool `yaml:"bare" json:"bare"`
}

// BuiltinNames names the built-in scenarios.
func BuiltinNames() []string {
	return []string{"gossip", "supply-chain", "workflow", "churn", "partition", "hostile"}
}

// Builtin returns a built-in scenario by name: gossip, supply-chain,
// workflow, churn, partition or hostile.
func Builtin(name string) (Scenario, error) {
	var s Scenario
	s.Name, s.Degree, s.Latency, s.Warmup, s.Seed = name, 6, 50*time.Millisecond, 3*time.Second, 1
	switch name {
	case "gossip":
		s.Nodes = 1000
		s.Intents.Count, s.Intents.Every = 20, 200*time.Millisecond
	case "supply-chain":
		s.Nodes = 100
		s.Tasks.Count, s.Tasks.Every, s.Tasks.Contractors = 50, 100*time.Millisecond, 20
		s.Tasks.Work, s.Tasks.BidWindow, s.Tasks.Timeout = 200*time.Millisecond, 300*time.Millisecond, 10*time.Second
		s.Churn.Fraction, s.Churn.Every, s.Churn.Downtime = 0.1, 500*time.Millisecond, 2*time.Second
	case "workflow":
		s.Nodes = 100
		s.Tasks.Contractors = 20
		s.Tasks.Work, s.Tasks.BidWindow, s.Tasks.Timeout = 100*time.Millisecond, 300*time.Millisecond, 10*time.Second
		s.Workflows.Count, s.Workflows.Every = 30, 200*time.Millisecond
		s.Churn.Fraction, s.Churn.Every, s.Churn.Downtime = 0.1, 500*time.Millisecond, 2*time.Second
	case "churn":
		s.Nodes = 100
		s.Intents.Count, s.Intents.Every = 20, 250*time.Millisecond
		s.Tasks.Count, s.Tasks.Every, s.Tasks.Contractors = 20, 250*time.Millisecond, 20
		s.Tasks.Work, s.Tasks.BidWindow, s.Tasks.Timeout = 100*time.Millisecond, 300*time.Millisecond, 10*time.Second
		s.Churn.Fraction, s.Churn.Every, s.Churn.Downtime = 0.3, 200*time.Millisecond, time.Second
	case "partition":
		s.Nodes = 100
		s.Intents.Count, s.Intents.Every = 40, 250*time.Millisecond
		s.Partition.At, s.Partition.For, s.Partition.Fraction = 2*time.Second, 3*time.Second, 0.3
	case "hostile":
		s.Nodes = 50
		s.Intents.Count, s.Intents.Every = 20, 200*time.Millisecond
		s.Tasks.Count, s.Tasks.Every, s.Tasks.Contractors = 20, 200*time.Millisecond, 10
		s.Tasks.Work, s.Tasks.BidWindow, s.Tasks.Timeout = 50*time.Millisecond, 300*time.Millisecond, 10*time.Second
		s.Hostile.Fraction, s.Hostile.Rounds = 0.1, 100
	default:
		return Scenario{}, fmt.Errorf("unknown scenario %q: want gossip, supply-chain, workflow, churn, partition or hostile", name)
	}
	return s, s.Validate()
}

// Load reads a scenario from a YAML file; unknown keys are errors.
func Load(path string) (Scenario, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Scenario{}, fmt.Errorf("scenario: %w", err)
	}
	var s Scenario
	s.Degree, s.Latency, s.Warmup, s.Seed = 6, 50*time.Millisecond, 3*time.Second, 1
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil {
		return Scenario{}, fmt.Errorf("scenario %s: %w", path, err)
	}
	if s.Name == "" {
		s.Name = path
	}
	if err := s.Validate(); err != nil {
		return Scenario{}, fmt.Errorf("scenario %s: %w", path, err)
	}
	return s, nil
}

// Validate checks a scenario and names the first bad field.
func (s *Scenario) Validate() error {
	switch {
	case s.Nodes < 2:
		return errors.New("nodes: want at least 2")
	case s.Degree < 1:
		return errors.New("degree: want at least 1")
	case s.Latency < 0 || s.Warmup < 0 || s.Bandwidth < 0:
		return errors.New("latency, warmup and bandwidth must not be negative")
	case s.Intents.Count < 0 || s.Tasks.Count < 0:
		return errors.New("intents.count and tasks.count must not be negative")
	case s.Workflows.Count < 0:
		return errors.New("workflows.count must not be negative")
	case (s.Tasks.Count > 0 || s.Workflows.Count > 0) && (s.Tasks.Contractors < 1 || s.Tasks.Contractors >= s.Nodes):
		return fmt.Errorf("tasks.contractors: want 1 to %d", s.Nodes-1)
	case s.Churn.Fraction < 0 || s.Churn.Fraction > 1 || s.Partition.Fraction < 0 || s.Partition.Fraction >= 1 ||
		s.Hostile.Fraction < 0 || s.Hostile.Fraction >= 1:
		return errors.New("churn.fraction, partition.fraction and hostile.fraction must be in [0, 1)")
	case s.Churn.Fraction > 0 && s.Churn.Every <= 0:
		return errors.New("churn.every: want a positive duration")
	case s.Partition.Fraction > 0 && s.Partition.For <= 0:
		return errors.New("partition.for: want a positive duration")
	}
	if s.Tasks.BidWindow <= 0 {
		s.Tasks.BidWindow = 300 * time.Millisecond
	}
	if s.Tasks.Timeout <= 0 {
		s.Tasks.Timeout = 10 * time.Second
	}
	if s.Intents.Every <= 0 {
		s.Intents.Every = 100 * time.Millisecond
	}
	if s.Tasks.Every <= 0 {
		s.Tasks.Every = 100 * time.Millisecond
	}
	if s.Workflows.Every <= 0 {
		s.Workflows.Every = 100 * time.Millisecond
	}
	return nil
}

// MarshalScenario writes a scenario as YAML that Load reads back.
func MarshalScenario(s Scenario) ([]byte, error) { return yaml.Marshal(s) }
