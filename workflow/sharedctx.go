package workflow

import (
	"encoding/json"

	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/sharedctx"
)

// NodeContext adapts a node's shared-context service to the engine: each
// workflow's context is opened with owner (the node's requesting agent)
// signing its answers.
func NodeContext(svc *sharedctx.Service, owner *identity.Agent) SharedContext {
	return nodeContext{svc, owner}
}

type nodeContext struct {
	svc   *sharedctx.Service
	owner *identity.Agent
}

func (c nodeContext) Open(id string) (Replica, error) {
	r, err := c.svc.Open(id, c.owner)
	if err != nil {
		return nil, err
	}
	return replica{r}, nil
}

func (c nodeContext) Grant(id, task string, reads, writes []string) error {
	return c.svc.Grant(id, task, reads, writes)
}

func (c nodeContext) Revoke(task string) { c.svc.Revoke(task) }
func (c nodeContext) Drop(id string)     { c.svc.Drop(id) }

type replica struct{ r *sharedctx.Replica }

func (r replica) Values() map[string]json.RawMessage { return r.r.Values() }
func (r replica) Snapshot() ([]byte, error)          { return r.r.Snapshot(), nil }
func (r replica) Restore(b []byte) error             { return r.r.Restore(b) }
