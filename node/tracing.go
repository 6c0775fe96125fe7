package node

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-msgio"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/parleynet/parley/intent"
	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/tracing"
)

// TraceProtocolID is the protocol a node asks another for its spans of a
// trace on. It is an entry point like any other: admission decides.
const TraceProtocolID = "/parley/trace/1.0.0"

// MaxTraceAnswer bounds one answer on the trace protocol, in bytes.
const MaxTraceAnswer = 4 << 20

// ErrTracingOff is returned for traces asked of a node that records none.
var ErrTracingOff = errors.New("tracing is off on this node")

type traceRequest struct {
	ID string `json:"id"`
}

type traceAnswer struct {
	Spans     []tracing.Span `json:"spans"`
	Truncated bool           `json:"truncated,omitempty"`
	Error     string         `json:"error,omitempty"`
}

// Tracing returns the node's tracing, nil when off.
func (n *Node) Tracing() *tracing.Tracing { return n.tracing }

// traced wraps a topic validator with an intent.validate span for every
// accepted call for work that carries a trace (parley gives only those
// one). With tracing off it returns v
// itself: the hot path is unchanged.
func (n *Node) traced(v pubsub.ValidatorEx) pubsub.ValidatorEx {
	tr := n.tracing.Tracer("parley/node")
	if tr == nil {
		return v
	}
	return func(ctx context.Context, from peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
		start := time.Now()
		res := v(ctx, from, msg)
		rec, ok := msg.ValidatorData.(received)
		// This node's own intents have their publish span already.
		if res != pubsub.ValidationAccept || !ok || rec.in.Trace == "" || rec.in.Kind != intent.KindTask || from == n.ID() {
			return res
		}
		_, span := tr.Start(tracing.Extract(ctx, tr, rec.in.Trace), "intent.validate",
			trace.WithTimestamp(start), trace.WithSpanKind(trace.SpanKindConsumer))
		if span.IsRecording() {
			span.SetAttributes(attribute.String("parley.capability", rec.in.Capability), attribute.String("parley.kind", string(rec.in.Kind)),
				tracing.AttrAgent.String(string(rec.in.From)), tracing.AttrPeer.String(from.String()),
				attribute.Bool("parley.delivered", rec.deliver))
		}
		span.End()
		return res
	}
}

// serveTraces answers a peer's ask for this node's spans of a trace: the
// admission layer's peer list and rate first, then only if the asker took
// part in a task those spans are about, at most TraceSpans of them.
func (n *Node) serveTraces(s network.Stream) {
	defer s.Close()
	p := s.Conn().RemotePeer()
	if err := n.adm.TraceStream(p); err != nil {
		_ = s.Reset()
		return
	}
	_ = s.SetDeadline(time.Now().Add(10 * time.Second))
	r := msgio.NewVarintReaderSize(s, 1<<10)
	msg, err := r.ReadMsg()
	if err != nil {
		_ = s.Reset()
		return
	}
	var req traceRequest
	err = json.Unmarshal(msg, &req)
	r.ReleaseMsg(msg)
	if err != nil || !tracing.IsTraceID(req.ID) {
		_ = s.Reset()
		return
	}
	var ans traceAnswer
	ring := n.tracing.Ring()
	if ring == nil {
		ans.Error = ErrTracingOff.Error()
	} else {
		res := ring.Lookup(req.ID, n.adm.Limits().TraceSpans)
		if err := n.adm.Trace(p, req.ID, n.tookPart(p, res.Tasks)); err != nil {
			ans.Error = err.Error()
		} else {
			ans.Spans, ans.Truncated = res.Spans, res.Truncated
		}
	}
	for {
		out, err := json.Marshal(ans)
		if err != nil {
			_ = s.Reset()
			return
		}
		if len(out) <= MaxTraceAnswer || len(ans.Spans) == 0 {
			_ = msgio.NewVarintWriter(s).WriteMsg(out)
			return
		}
		ans.Spans, ans.Truncated = ans.Spans[:len(ans.Spans)/2], true
	}
}

// tookPart reports whether p is the requester's node or a bidder's in one
// of tasks on this node.
func (n *Node) tookPart(p peer.ID, tasks []string) bool {
	neg := n.negotiation()
	if neg == nil {
		return false
	}
	for _, t := range tasks {
		if slices.Contains(neg.Participants(t), p) {
			return true
		}
	}
	return false
}

// FetchTrace asks peer p for its spans of trace traceID. Spans it answers
// for other traces are dropped, and each is marked as p's: a peer speaks
// only for itself.
func (n *Node) FetchTrace(ctx context.Context, p peer.ID, traceID string) ([]tracing.Span, bool, error) {
	h := n.Host()
	if h == nil {
		return nil, false, ErrNotStarted
	}
	s, err := h.NewStream(network.WithAllowLimitedConn(ctx, "parley trace"), p, TraceProtocolID)
	if err != nil {
		return nil, false, fmt.Errorf("trace protocol to %s: %w", p, err)
	}
	defer s.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer stop()
	req, _ := json.Marshal(traceRequest{ID: traceID})
	if err := msgio.NewVarintWriter(s).WriteMsg(req); err != nil {
		return nil, false, fmt.Errorf("trace request to %s: %w", p, err)
	}
	msg, err := msgio.NewVarintReaderSize(s, MaxTraceAnswer).ReadMsg()
	if err != nil {
		return nil, false, fmt.Errorf("trace answer from %s: %w", p, err)
	}
	var ans traceAnswer
	if err := json.Unmarshal(msg, &ans); err != nil {
		return nil, false, fmt.Errorf("trace answer from %s: %w", p, err)
	}
	if ans.Error != "" {
		return nil, false, fmt.Errorf("%s refused: %s", p, ans.Error)
	}
	kept := ans.Spans[:0]
	for _, sp := range ans.Spans {
		if sp.TraceID == traceID {
			sp.Node = p.String()
			kept = append(kept, sp)
		}
	}
	return kept, ans.Truncated, nil
}

// TraceView is a trace gathered from the nodes of its tasks.
type TraceView struct {
	tracing.Result
	// Nodes says, for each node asked, how many spans it gave or why not.
	Nodes []TraceNode `json:"nodes"`
}

// TraceNode is one node's part in a gathered trace.
type TraceNode struct {
	Peer  string `json:"peer"`
	Spans int    `json:"spans"`
	Error string `json:"error,omitempty"`
}

// GatherTrace returns this node's spans of id (a trace or task ID) and,
// when mesh is set, those of every node that took part in its tasks here
// (the bidders of a task this node requested, the requester of one it bid
// on), asked over the trace protocol within ctx.
func (n *Node) GatherTrace(ctx context.Context, id string, mesh bool) (TraceView, error) {
	ring := n.tracing.Ring()
	if ring == nil {
		return TraceView{}, ErrTracingOff
	}
	res := ring.Lookup(id, 0)
	view := TraceView{Result: res, Nodes: []TraceNode{{Peer: n.ID().String(), Spans: len(res.Spans)}}}
	if !mesh || len(res.Traces) == 0 {
		return view, nil
	}
	neg := n.negotiation()
	var peers []peer.ID
	for _, t := range res.Tasks {
		if neg != nil {
			peers = append(peers, neg.Participants(t)...)
		}
	}
	slices.Sort(peers)
	peers = slices.Compact(peers)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, p := range peers {
		if p == n.ID() {
			continue
		}
		wg.Go(func() {
			tn := TraceNode{Peer: p.String()}
			for _, tid := range res.Traces {
				spans, trunc, err := n.FetchTrace(ctx, p, tid)
				if err != nil {
					tn.Error = err.Error()
					break
				}
				mu.Lock()
				view.Spans = append(view.Spans, spans...)
				view.Truncated = view.Truncated || trunc
				mu.Unlock()
				tn.Spans += len(spans)
			}
			mu.Lock()
			view.Nodes = append(view.Nodes, tn)
			mu.Unlock()
		})
	}
	wg.Wait()
	slices.SortFunc(view.Nodes[1:], func(a, b TraceNode) int { return cmp.Compare(a.Peer, b.Peer) })
	tracing.SortCausal(view.Spans)
	return view, nil
}

// negotiation returns the node's negotiation service, nil before Start.
func (n *Node) negotiation() *negotiation.Service {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.neg
}
