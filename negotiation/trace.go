package negotiation

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/parleynet/parley/tracing"
)

// Span names, one per negotiation phase on each side, and for the
// decisions and records made inside them.
const (
	spanRequest = "negotiation.request"
	spanCall    = "negotiation.call"
	spanBid     = "negotiation.bid"
	spanAward   = "negotiation.award"
	spanCommit  = "negotiation.commit"
	spanWork    = "negotiation.work"
	spanResult  = "negotiation.result"
	spanCounter = "negotiation.counter"
	// Policy decisions, one event name per Guard stage (constants:
	// building them would allocate with tracing off).
	spanPolicyRequest  = "policy.request"
	spanPolicyCall     = "policy.call"
	spanPolicyProposal = "policy.proposal"
	spanPolicyAward    = "policy.award"
	spanPolicyCommit   = "policy.commit"
	// eventAudit is the event an audited step adds to its phase's span.
	eventAudit = "audit.append"
)

// span starts a span about task with the service's tracer; with tracing
// off it allocates nothing and returns a no-op span.
func (s *Service) span(ctx context.Context, name string, kind trace.SpanKind, task string) (context.Context, trace.Span) {
	ctx, sp := tracing.Start(ctx, s.cfg.Tracer, name, kind)
	if sp.IsRecording() && task != "" {
		sp.SetAttributes(tracing.AttrTask.String(task))
	}
	return ctx, sp
}

// remote returns ctx with the sender's traceparent as parent, if valid.
func (s *Service) remote(ctx context.Context, tp string) context.Context {
	return tracing.Extract(ctx, s.cfg.Tracer, tp)
}

// failSpan marks sp failed with why.
func failSpan(sp trace.Span, why string) {
	if sp.IsRecording() {
		sp.SetStatus(codes.Error, why)
	}
}

// bidAttrs describes a bid on a span.
func bidAttrs(b BidInfo) []attribute.KeyValue {
	return []attribute.KeyValue{
		attribute.String("parley.bidder", string(b.Agent)),
		attribute.String("parley.bidder_name", b.Name),
		tracing.AttrPeer.String(b.Peer.String()),
		attribute.Float64("parley.price", b.Bid.Price),
		attribute.Int64("parley.eta_ms", b.Bid.ETA.Milliseconds()),
		attribute.String("parley.bid_rationale", b.Bid.Rationale),
	}
}

// decided ends a policy span with the Guard's answer.
// policyEvent records a Guard decision made since start as an event on
// ctx's span: the stage (the event's name), the verdict, the reason of a
// refusal and how long it took, so an approval held for a human shows as
// its wait. As spans of their own, a negotiation's five decisions were a
// quarter of what tracing cost it.
func policyEvent(ctx context.Context, name string, start time.Time, err error) {
	sp := trace.SpanFromContext(ctx)
	if !sp.IsRecording() {
		return
	}
	attrs := []attribute.KeyValue{attribute.String("parley.verdict", "allow"), attribute.Int64("parley.policy_us", time.Since(start).Microseconds())}
	if err != nil {
		attrs[0] = attribute.String("parley.verdict", "deny")
		attrs = append(attrs, attribute.String("parley.reason", err.Error()))
	}
	sp.AddEvent(name, trace.WithAttributes(attrs...))
}

// auditIn records e under ctx's span: an event on the phase's span with
// how long the append took, not a span of its own. A negotiation audits a
// dozen steps, and as spans they were close to half its tracing cost.
func (s *Service) auditIn(ctx context.Context, e Event) error {
	if s.cfg.Audit == nil {
		return nil
	}
	sp := trace.SpanFromContext(ctx)
	if sc := sp.SpanContext(); sc.HasTraceID() {
		e.Trace = sc.TraceID().String()
	}
	if !sp.IsRecording() {
		return s.audit(e)
	}
	start := time.Now()
	err := s.audit(e)
	attrs := []attribute.KeyValue{attribute.String("parley.audit_kind", e.Kind), attribute.Int64("parley.audit_us", time.Since(start).Microseconds())}
	if err != nil {
		attrs = append(attrs, attribute.String("parley.error", err.Error()))
	}
	sp.AddEvent(eventAudit, trace.WithAttributes(attrs...))
	return err
}
