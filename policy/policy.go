package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.yaml.in/yaml/v3"

	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/intent"
)

// Approval stages.
const (
	// StageAward is the requester side, before it accepts a bid.
	StageAward = "award"
	// StageCommit is the contractor side, before it commits to an award.
	StageCommit = "commit"
)

// DefaultAgentKey is the agents key whose rules apply to agents not listed.
const DefaultAgentKey = "*"

// MaxFileSize bounds the policy file Load reads.
const MaxFileSize = 1 << 20

// ErrInvalid is wrapped by every error about the content of a policy file.
var ErrInvalid = errors.New("invalid policy")

// Error is a policy file's error: the file, the line (0 if unknown) and
// what is wrong. It wraps ErrInvalid.
type Error struct {
	File string
	Line int
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// Unwrap returns ErrInvalid.
func (e *Error) Unwrap() error { return ErrInvalid }

// Policy is a parsed and validated policy file. It is immutable; the zero
// value and Allow() allow everything.
type Policy struct {
	name   string
	agents map[string]agentRule

	peerAllow, peerDeny   map[peer.ID]struct{}
	agentAllow, agentDeny map[identity.AgentID]struct{}

	intentRate *rateRule

	maxPrice, maxSpendHour optFloat
	maxTasks               int // < 0: no limit

	approvals []approvalRule
}

type agentRule struct {
	offer, request capSet
}

// capSet is a capability list; set is false when the list was omitted.
type capSet struct {
	set  bool
	caps map[string]struct{}
}

type rateRule struct {
	perSecond float64
	burst     int
}

type optFloat struct {
	set bool
	v   float64
}

type approvalRule struct {
	name       string
	stage      string
	capability string // "" matches any
	minPrice   optFloat
}

// Allow returns a policy that allows everything.
func Allow() *Policy { return &Policy{name: "(allow all)", maxTasks: -1} }

// Name is the file name the policy was parsed from.
func (p *Policy) Name() string { return p.name }

// Load reads and parses the policy file at path.
func Load(path string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(data) > MaxFileSize {
		return nil, &Error{File: path, Msg: fmt.Sprintf("larger than %d bytes", MaxFileSize)}
	}
	return Parse(data, path)
}

var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): `)

// Parse parses and validates a policy file's content; name is the file
// name errors carry.
func Parse(data []byte, name string) (*Policy, error) {
	ps := &parser{name: name}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p := Allow()
			p.name = name
			return p, nil
		}
		return nil, ps.yamlErr(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, ps.yamlErr(err)
		}
		return nil, ps.errf(&extra, "only one YAML document is allowed")
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) != 1 {
			return nil, ps.errf(root, "want one YAML document")
		}
		root = root.Content[0]
	}
	return ps.policy(root)
}

type parser struct{ name string }

func (ps *parser) errf(n *yaml.Node, format string, args ...any) error {
	line := 0
	if n != nil {
		line = n.Line
	}
	return &Error{File: ps.name, Line: line, Msg: fmt.Sprintf(format, args...)}
}

func (ps *parser) yamlErr(err error) error {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &Error{File: ps.name, Line: line, Msg: msg[len(m[0]):]}
	}
	return &Error{File: ps.name, Msg: strings.TrimPrefix(msg, "yaml: ")}
}

// resolve follows an alias to the node it names.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 8; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// entry is one key and value of a mapping.
type entry struct{ key, val *yaml.Node }

// mapping returns the entries of a section. A null section has none; keys
// must be scalars, unique and, if known is not nil, among known.
func (ps *parser) mapping(n *yaml.Node, where string, known []string) ([]entry, error) {
	n = resolve(n)
	if isNull(n) {
		return nil, nil
	}
	if n.Kind != yaml.MappingNode {
		return nil, ps.errf(n, "%s: want a mapping", where)
	}
	var out []entry
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), n.Content[i+1]
		if k == nil || k.Kind != yaml.ScalarNode {
			return nil, ps.errf(n.Content[i], "%s: keys must be strings", where)
		}
		if known != nil && !contains(known, k.Value) {
			if where == "" {
				return nil, ps.errf(k, "unknown key %q", k.Value)
			}
			return nil, ps.errf(k, "unknown key %q in %s", k.Value, where)
		}
		if l, dup := seen[k.Value]; dup {
			return nil, ps.errf(k, "%s: key %q is given twice (first at line %d)", join(where), k.Value, l)
		}
		seen[k.Value] = k.Line
		out = append(out, entry{k, v})
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func join(where string) string {
	if where == "" {
		return "policy"
	}
	return where
}

// scalars returns the items of a list of scalars.
func (ps *parser) scalars(n *yaml.Node, where string) ([]*yaml.Node, error) {
	n = resolve(n)
	if isNull(n) {
		return nil, ps.errf(n, "%s: no value (write [] for an empty list)", where)
	}
	if n.Kind != yaml.SequenceNode {
		return nil, ps.errf(n, "%s: want a list", where)
	}
	out := make([]*yaml.Node, 0, len(n.Content))
	for _, it := range n.Content {
		it = resolve(it)
		if isNull(it) || it.Kind != yaml.ScalarNode {
			return nil, ps.errf(it, "%s: want a list of strings", where)
		}
		out = append(out, it)
	}
	return out, nil
}

// str returns a non-empty scalar string.
func (ps *parser) str(n *yaml.Node, where string) (string, error) {
	n = resolve(n)
	if isNull(n) || n.Kind != yaml.ScalarNode || n.Value == "" {
		return "", ps.errf(n, "%s: want a string", where)
	}
	return n.Value, nil
}

// number returns a finite, non-negative number.
func (ps *parser) number(n *yaml.Node, where string) (float64, error) {
	n = resolve(n)
	if isNull(n) {
		return 0, ps.errf(n, "%s: no value", where)
	}
	var f float64
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!int" && n.ShortTag() != "!!float") || n.Decode(&f) != nil {
		return 0, ps.errf(n, "%s: want a number, not %q", where, n.Value)
	}
	switch {
	case math.IsNaN(f) || math.IsInf(f, 0):
		return 0, ps.errf(n, "%s: %s is not a finite number", where, n.Value)
	case f < 0:
		return 0, ps.errf(n, "%s: %s is negative", where, n.Value)
	}
	return f, nil
}

// integer returns a non-negative integer of at most 1<<31-1.
func (ps *parser) integer(n *yaml.Node, where string) (int, error) {
	n = resolve(n)
	if isNull(n) {
		return 0, ps.errf(n, "%s: no value", where)
	}
	var i int64
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&i) != nil {
		return 0, ps.errf(n, "%s: want a whole number, not %q", where, n.Value)
	}
	switch {
	case i < 0:
		return 0, ps.errf(n, "%s: %s is negative", where, n.Value)
	case i > math.MaxInt32:
		return 0, ps.errf(n, "%s: %s is too large", where, n.Value)
	}
	return int(i), nil
}

func (ps *parser) policy(root *yaml.Node) (*Policy, error) {
	p := Allow()
	p.name = ps.name
	top, err := ps.mapping(root, "", []string{"agents", "peers", "remote_agents", "rate_limits", "budgets", "max_concurrent_tasks", "approvals"})
	if err != nil {
		return nil, err
	}
	for _, e := range top {
		switch e.key.Value {
		case "agents":
			err = ps.agents(p, e.val)
		case "peers":
			err = ps.peers(p, e.val)
		case "remote_agents":
			err = ps.remoteAgents(p, e.val)
		case "rate_limits":
			err = ps.rateLimits(p, e.val)
		case "budgets":
			err = ps.budgets(p, e.val)
		case "max_concurrent_tasks":
			p.maxTasks, err = ps.integer(e.val, "max_concurrent_tasks")
		case "approvals":
			err = ps.approvals(p, e.val)
		}
		if err != nil {
			return nil, err
		}
	}
	return p, nil
}

func (ps *parser) agents(p *Policy, n *yaml.Node) error {
	entries, err := ps.mapping(n, "agents", nil)
	if err != nil {
		return err
	}
	p.agents = make(map[string]agentRule, len(entries))
	for _, e := range entries {
		name := e.key.Value
		if name != DefaultAgentKey {
			if err := identity.ValidAgentName(name); err != nil {
				return ps.errf(e.key, "agents: %v", err)
			}
		}
		where := "agents." + name
		fields, err := ps.mapping(e.val, where, []string{"offer", "request"})
		if err != nil {
			return err
		}
		var r agentRule
		for _, f := range fields {
			cs, err := ps.capSet(f.val, where+"."+f.key.Value)
			if err != nil {
				return err
			}
			if f.key.Value == "offer" {
				r.offer = cs
			} else {
				r.request = cs
			}
		}
		p.agents[name] = r
	}
	return nil
}

func (ps *parser) capSet(n *yaml.Node, where string) (capSet, error) {
	items, err := ps.scalars(n, where)
	if err != nil {
		return capSet{}, err
	}
	cs := capSet{set: true, caps: make(map[string]struct{}, len(items))}
	for _, it := range items {
		if err := intent.ValidCapability(it.Value); err != nil {
			return capSet{}, ps.errf(it, "%s: %v", where, err)
		}
		cs.caps[it.Value] = struct{}{}
	}
	return cs, nil
}

func (ps *parser) peers(p *Policy, n *yaml.Node) error {
	var err error
	p.peerAllow, p.peerDeny, err = allowDeny(ps, n, "peers", func(s string) (peer.ID, error) {
		id, err := peer.Decode(s)
		if err != nil {
			return "", fmt.Errorf("bad peer ID %q: %w", s, err)
		}
		return id, nil
	})
	return err
}

func (ps *parser) remoteAgents(p *Policy, n *yaml.Node) error {
	var err error
	p.agentAllow, p.agentDeny, err = allowDeny(ps, n, "remote_agents", identity.ParseAgentID)
	return err
}

// allowDeny parses a section of allow and deny lists of IDs.
func allowDeny[T comparable](ps *parser, n *yaml.Node, section string, parse func(string) (T, error)) (allow, deny map[T]struct{}, err error) {
	entries, err := ps.mapping(n, section, []string{"allow", "deny"})
	if err != nil {
		return nil, nil, err
	}
	lines := map[string]map[T]int{}
	for _, e := range entries {
		where := section + "." + e.key.Value
		items, err := ps.scalars(e.val, where)
		if err != nil {
			return nil, nil, err
		}
		set := make(map[T]struct{}, len(items))
		lines[e.key.Value] = make(map[T]int, len(items))
		for _, it := range items {
			id, err := parse(it.Value)
			if err != nil {
				return nil, nil, ps.errf(it, "%s: %v", where, err)
			}
			set[id] = struct{}{}
			lines[e.key.Value][id] = it.Line
		}
		if e.key.Value == "allow" {
			allow = set
		} else {
			deny = set
		}
	}
	// Report the first conflict in the file, so the error is stable.
	var bad *Error
	for id, line := range lines["deny"] {
		if l, ok := lines["allow"][id]; ok && (bad == nil || line < bad.Line) {
			bad = &Error{File: ps.name, Line: line,
				Msg: fmt.Sprintf("%s.deny: %v is also in %s.allow at line %d", section, id, section, l)}
		}
	}
	if bad != nil {
		return nil, nil, bad
	}
	return allow, deny, nil
}

func (ps *parser) rateLimits(p *Policy, n *yaml.Node) error {
	entries, err := ps.mapping(n, "rate_limits", []string{"intents_per_origin"})
	if err != nil {
		return err
	}
	for _, e := range entries {
		const where = "rate_limits.intents_per_origin"
		fields, err := ps.mapping(e.val, where, []string{"per_second", "burst"})
		if err != nil {
			return err
		}
		if len(fields) == 0 {
			continue // a section with no value is an omitted section
		}
		var r rateRule
		perSecondSet := false
		for _, f := range fields {
			switch f.key.Value {
			case "per_second":
				if r.perSecond, err = ps.number(f.val, where+".per_second"); err != nil {
					return err
				}
				if r.perSecond == 0 {
					return ps.errf(f.val, "%s.per_second: must be above 0", where)
				}
				perSecondSet = true
			case "burst":
				if r.burst, err = ps.integer(f.val, where+".burst"); err != nil {
					return err
				}
				if r.burst == 0 {
					return ps.errf(f.val, "%s.burst: must be at least 1", where)
				}
			}
		}
		if !perSecondSet {
			return ps.errf(e.key, "%s: per_second is required", where)
		}
		if r.burst == 0 {
			r.burst = int(min(math.Ceil(r.perSecond), math.MaxInt32))
		}
		p.intentRate = &r
	}
	return nil
}

func (ps *parser) budgets(p *Policy, n *yaml.Node) error {
	entries, err := ps.mapping(n, "budgets", []string{"max_price_per_task", "max_spend_per_hour"})
	if err != nil {
		return err
	}
	for _, e := range entries {
		v, err := ps.number(e.val, "budgets."+e.key.Value)
		if err != nil {
			return err
		}
		if e.key.Value == "max_price_per_task" {
			p.maxPrice = optFloat{true, v}
		} else {
			p.maxSpendHour = optFloat{true, v}
		}
	}
	return nil
}

func (ps *parser) approvals(p *Policy, n *yaml.Node) error {
	n = resolve(n)
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		return ps.errf(n, "approvals: want a list of rules")
	}
	names := map[string]int{}
	for i, item := range n.Content {
		where := fmt.Sprintf("approvals[%d]", i)
		item = resolve(item)
		if isNull(item) {
			return ps.errf(item, "%s: empty rule", where)
		}
		fields, err := ps.mapping(item, where, []string{"name", "stage", "capability", "min_price"})
		if err != nil {
			return err
		}
		var r approvalRule
		for _, f := range fields {
			fw := where + "." + f.key.Value
			switch f.key.Value {
			case "name":
				if r.name, err = ps.str(f.val, fw); err != nil {
					return err
				}
				if l, dup := names[r.name]; dup {
					return ps.errf(f.val, "%s: rule name %q is already used at line %d", fw, r.name, l)
				}
				names[r.name] = resolve(f.val).Line
			case "stage":
				if r.stage, err = ps.str(f.val, fw); err != nil {
					return err
				}
				if r.stage != StageAward && r.stage != StageCommit {
					return ps.errf(f.val, "%s: unknown stage %q (want %s or %s)", fw, r.stage, StageAward, StageCommit)
				}
			case "capability":
				if r.capability, err = ps.str(f.val, fw); err != nil {
					return err
				}
				if err := intent.ValidCapability(r.capability); err != nil {
					return ps.errf(f.val, "%s: %v", fw, err)
				}
			case "min_price":
				v, err := ps.number(f.val, fw)
				if err != nil {
					return err
				}
				r.minPrice = optFloat{true, v}
			}
		}
		switch {
		case r.name == "":
			return ps.errf(item, "%s: name is required", where)
		case r.stage == "":
			return ps.errf(item, "%s (%s): stage is required", where, r.name)
		}
		p.approvals = append(p.approvals, r)
	}
	return nil
}
