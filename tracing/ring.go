package tracing

import (
	"context"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Span is an ended span as the API, the trace protocol and `parley
// trace` show it.
type Span struct {
	TraceID    string         `json:"trace_id"`
	SpanID     string         `json:"span_id"`
	ParentID   string         `json:"parent_id,omitempty"`
	Name       string         `json:"name"`
	Kind       string         `json:"kind,omitempty"`
	Node       string         `json:"node"`
	Start      time.Time      `json:"start"`
	End        time.Time      `json:"end"`
	Duration   string         `json:"duration"`
	Status     string         `json:"status,omitempty"` // "error" or empty
	Message    string         `json:"message,omitempty"`
	Attributes map[string]any `json:"attributes,omitempty"`
	Events     []Event        `json:"events,omitempty"`
}

// Event is a timed note inside a span (a bid received, say).
type Event struct {
	Name       string         `json:"name"`
	Time       time.Time      `json:"time"`
	Attributes map[string]any `json:"attributes,omitempty"`
}

// Task returns the parley task ID the span is about, or "".
func (s *Span) Task() string {
	t, _ := s.Attributes[string(AttrTask)].(string)
	return t
}

// Ring keeps the last N ended spans of a node. It is an OpenTelemetry
// SpanProcessor, so every span the node records passes it whether or not
// a collector is configured. Safe for concurrent use.
type Ring struct {
	node string

	// buf holds the SDK's own read-only spans: converting them costs only
	// when someone asks.
	mu   sync.Mutex
	buf  []sdktrace.ReadOnlySpan
	next int
	full bool
}

// NewRing keeps the last size spans (at least 1) recorded by node.
func NewRing(size int, node string) *Ring {
	return &Ring{node: node, buf: make([]sdktrace.ReadOnlySpan, max(size, 1))}
}

// OnStart implements sdktrace.SpanProcessor.
func (r *Ring) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

// OnEnd implements sdktrace.SpanProcessor: it keeps s, evicting the oldest.
func (r *Ring) OnEnd(s sdktrace.ReadOnlySpan) {
	if !s.SpanContext().IsSampled() {
		return
	}
	r.mu.Lock()
	r.buf[r.next] = s
	r.next++
	if r.next == len(r.buf) {
		r.next, r.full = 0, true
	}
	r.mu.Unlock()
}

// Shutdown implements sdktrace.SpanProcessor.
func (r *Ring) Shutdown(context.Context) error { return nil }

// ForceFlush implements sdktrace.SpanProcessor.
func (r *Ring) ForceFlush(context.Context) error { return nil }

func (r *Ring) convert(s sdktrace.ReadOnlySpan) Span {
	sc := s.SpanContext()
	sp := Span{
		TraceID: sc.TraceID().String(), SpanID: sc.SpanID().String(), Name: s.Name(), Node: r.node,
		Start: s.StartTime(), End: s.EndTime(), Duration: s.EndTime().Sub(s.StartTime()).String(),
	}
	if k := s.SpanKind(); k != trace.SpanKindInternal && k != trace.SpanKindUnspecified {
		sp.Kind = k.String()
	}
	if p := s.Parent(); p.IsValid() {
		sp.ParentID = p.SpanID().String()
	}
	if st := s.Status(); st.Code == codes.Error {
		sp.Status, sp.Message = "error", st.Description
	}
	sp.Attributes = attrMap(s.Attributes())
	for _, e := range s.Events() {
		sp.Events = append(sp.Events, Event{Name: e.Name, Time: e.Time, Attributes: attrMap(e.Attributes)})
	}
	return sp
}

func attrMap(kvs []attribute.KeyValue) map[string]any {
	if len(kvs) == 0 {
		return nil
	}
	m := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.AsInterface()
	}
	return m
}

// Len is how many spans the ring holds.
func (r *Ring) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.full {
		return len(r.buf)
	}
	return r.next
}

// each calls f on every span held, oldest first, under the lock.
func (r *Ring) each(f func(sdktrace.ReadOnlySpan)) {
	if r.full {
		for i := r.next; i < len(r.buf); i++ {
			f(r.buf[i])
		}
	}
	for i := 0; i < r.next; i++ {
		f(r.buf[i])
	}
}

// Lookup returns the spans of id, a trace ID, a parley task ID or a
// workflow ID: every span of each trace that is id or one of whose spans
// is about task id or is a step of workflow id. At most limit spans (0: no limit) are returned, oldest first, and
// the trace IDs they belong to. Traces lists the task IDs the spans are
// about, so a caller can decide who may see them.
func (r *Ring) Lookup(id string, limit int) Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	// Task IDs are 32 hex digits too: id is looked for as both.
	traces := map[trace.TraceID]bool{}
	tid, _ := trace.TraceIDFromHex(id)
	r.each(func(s sdktrace.ReadOnlySpan) {
		if t := s.SpanContext().TraceID(); (tid.IsValid() && t == tid) || taskOf(s) == id || attrOf(s, AttrWorkflow) == id {
			traces[t] = true
		}
	})
	var res Result
	tasks := map[string]bool{}
	r.each(func(s sdktrace.ReadOnlySpan) {
		if !traces[s.SpanContext().TraceID()] {
			return
		}
		if t := taskOf(s); t != "" {
			tasks[t] = true
		}
		if limit > 0 && len(res.Spans) >= limit {
			res.Truncated = true
			return
		}
		res.Spans = append(res.Spans, r.convert(s))
	})
	for t := range tasks {
		res.Tasks = append(res.Tasks, t)
	}
	slices.Sort(res.Tasks)
	for t := range traces {
		res.Traces = append(res.Traces, t.String())
	}
	slices.Sort(res.Traces)
	return res
}

// All returns every span held, oldest first.
func (r *Ring) All() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Span
	r.each(func(s sdktrace.ReadOnlySpan) { out = append(out, r.convert(s)) })
	return out
}

// taskOf is the span's parley task attribute, or "".
func taskOf(s sdktrace.ReadOnlySpan) string { return attrOf(s, AttrTask) }

// attrOf is the span's string attribute k, or "".
func attrOf(s sdktrace.ReadOnlySpan, k attribute.Key) string {
	for _, kv := range s.Attributes() {
		if kv.Key == k {
			return kv.Value.AsString()
		}
	}
	return ""
}

// Result is what Lookup found.
type Result struct {
	// Traces are the trace IDs looked for.
	Traces []string `json:"traces"`
	// Tasks are the parley tasks the spans are about.
	Tasks     []string `json:"tasks"`
	Spans     []Span   `json:"spans"`
	Truncated bool     `json:"truncated,omitempty"`
}

// IsTraceID reports whether s is a non-zero trace ID in lower-case hex.
func IsTraceID(s string) bool {
	if len(s) != 32 || !lowerHex(s) {
		return false
	}
	id, err := trace.TraceIDFromHex(s)
	return err == nil && id.IsValid()
}

// SortCausal orders spans so that parents come before their children and
// siblings by start time: by start time alone, a child on a node whose
// clock runs behind would come before its parent.
func SortCausal(spans []Span) {
	slices.SortStableFunc(spans, func(a, b Span) int { return a.Start.Compare(b.Start) })
	byID := make(map[string]int, len(spans))
	for i := range spans {
		byID[spans[i].TraceID+"/"+spans[i].SpanID] = i
	}
	children := make(map[int][]int, len(spans))
	var roots []int
	for i := range spans {
		if p, ok := byID[spans[i].TraceID+"/"+spans[i].ParentID]; ok && spans[i].ParentID != "" && p != i {
			children[p] = append(children[p], i)
		} else {
			roots = append(roots, i)
		}
	}
	out := make([]Span, 0, len(spans))
	seen := make([]bool, len(spans))
	var walk func(i int)
	walk = func(i int) {
		if seen[i] {
			return
		}
		seen[i] = true
		out = append(out, spans[i])
		for _, c := range children[i] {
			walk(c)
		}
	}
	for _, r := range roots {
		walk(r)
	}
	for i := range spans { // cycles a lying peer could send
		walk(i)
	}
	copy(spans, out)
}
