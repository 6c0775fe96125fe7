package admission

import (
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"
)

// TraceStream is asked when peer p opens a trace stream
// (/parley/trace/1.0.0), before anything on it is read: the policy's peer
// list, then the peer's rate.
func (l *Layer) TraceStream(p peer.ID) error {
	if err := l.decided(l.pol.Peer(p), refusal{entry: EntryTrace, peer: p}); err != nil {
		return err
	}
	_, err := l.rated(EntryTrace, l.tracers, l.newcomers.tracers, p, "limits.traces_per_peer", "asked for spans")
	return err
}

// Trace is asked before this node answers peer p with its spans of id (a
// trace or task ID). Spans tell who bid what and when: only a peer that
// took part in a task they are about — its requester's node, or a
// bidder's — may read them; tookPart says whether p did. A refusal is
// audited like any other.
func (l *Layer) Trace(p peer.ID, id string, tookPart bool) error {
	if tookPart {
		return nil
	}
	return l.deny(refusal{entry: EntryTrace, rule: "trace.not_a_participant", peer: p,
		rationale: fmt.Sprintf("peer %s took part in no task of %q on this node", p, id), detail: map[string]any{"id": id}})
}
