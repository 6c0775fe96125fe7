package tracing

import (
	"context"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"
)

func TestParseTraceparent(t *testing.T) {
	good := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, tc := range []struct {
		name string
		in   string
		ok   bool
	}{
		{"valid", good, true},
		{"not sampled", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", true},
		{"empty", "", false},
		{"future version", "01" + good[2:], false},
		{"upper case", strings.ToUpper(good), false},
		{"zero trace", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", false},
		{"zero span", "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", false},
		{"unknown flags", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff", false},
		{"long", good + "-extra", false},
		{"bad separator", strings.Replace(good, "-", "_", 1), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc, err := ParseTraceparent(tc.in)
			if (err == nil) != tc.ok {
				t.Fatalf("ParseTraceparent(%q) = %v, want ok %v", tc.in, err, tc.ok)
			}
			if tc.ok {
				if !sc.IsRemote() {
					t.Error("parsed span context not marked remote")
				}
				if got := Traceparent(sc); got != tc.in {
					t.Errorf("round trip = %q, want %q", got, tc.in)
				}
			}
		})
	}
}

func TestOffAllocatesNothing(t *testing.T) {
	tr, err := New(Config{}, Options{Getenv: func(string) string { return "" }})
	if err != nil || tr != nil {
		t.Fatalf("New(zero) = %v, %v; want nil, nil", tr, err)
	}
	ctx := context.Background()
	allocs := testing.AllocsPerRun(100, func() {
		c, span := Start(ctx, tr.Tracer("x"), "op", trace.SpanKindInternal)
		if span.IsRecording() {
			t.Fatal("recording while off")
		}
		_ = Extract(c, nil, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
		span.End()
	})
	if allocs != 0 {
		t.Fatalf("tracing off allocates %v per span", allocs)
	}
}

func TestRingLookupAndBound(t *testing.T) {
	tr, err := New(Config{Enabled: true, RingSize: 5}, Options{Node: "n1", Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close(context.Background())
	tracer := tr.Tracer("test")
	ctx, root := tracer.Start(context.Background(), "root", trace.WithAttributes(AttrTask.String("task-1")))
	_, child := tracer.Start(ctx, "child")
	child.End()
	root.End()
	// A remote parent joins its trace.
	remote := Extract(context.Background(), tracer, Traceparent(root.SpanContext()))
	_, joined := tracer.Start(remote, "joined")
	joined.End()

	res := tr.Ring().Lookup("task-1", 0)
	if len(res.Spans) != 3 || len(res.Traces) != 1 || res.Traces[0] != root.SpanContext().TraceID().String() {
		t.Fatalf("Lookup(task) = %+v, want 3 spans of one trace", res)
	}
	if res.Spans[2].ParentID != root.SpanContext().SpanID().String() || res.Spans[2].Node != "n1" {
		t.Fatalf("joined span = %+v, want child of root on n1", res.Spans[2])
	}
	// A workflow's steps are traces of their own: its ID finds them all.
	for _, task := range []string{"step-a", "step-b"} {
		_, s := tracer.Start(context.Background(), "workflow.step", trace.WithAttributes(AttrWorkflow.String("wf-1"), AttrTask.String(task)))
		s.End()
	}
	if got := tr.Ring().Lookup("wf-1", 0); len(got.Traces) != 2 || len(got.Tasks) != 2 {
		t.Fatalf("Lookup(workflow) = traces %v, tasks %v; want both steps'", got.Traces, got.Tasks)
	}
	if got := tr.Ring().Lookup(res.Traces[0], 2); len(got.Spans) != 2 || !got.Truncated {
		t.Fatalf("Lookup(trace, limit 2) = %d spans, truncated %v", len(got.Spans), got.Truncated)
	}
	for range 10 {
		_, s := tracer.Start(context.Background(), "filler")
		s.End()
	}
	if n := tr.Ring().Len(); n != 5 {
		t.Fatalf("ring holds %d spans, want its bound 5", n)
	}
	if got := tr.Ring().Lookup("task-1", 0); len(got.Spans) != 0 {
		t.Fatalf("evicted spans still found: %+v", got)
	}
}
