// Package tracing owns a node's traces: its OpenTelemetry TracerProvider,
// the bounded ring of recent spans the node serves on its API and to the
// peers of a task, OTLP export when configured, and the strict W3C
// traceparent codec that carries trace context in intents, negotiation
// frames and direct asks.
//
// Tracing is off unless configured. Off, Tracer returns nil and callers
// start no span at all (see Start), so hot paths allocate nothing more.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Attribute keys parley's spans use.
const (
	AttrTask = attribute.Key("parley.task")
	// AttrWorkflow is the workflow a step attempt's span belongs to:
	// looking a workflow ID up finds every step's trace.
	AttrWorkflow = attribute.Key("parley.workflow")
	AttrNode     = attribute.Key("parley.node")
	AttrAgent    = attribute.Key("parley.agent")
	AttrName     = attribute.Key("parley.agent_name")
	AttrPeer     = attribute.Key("parley.peer")
)

// DefaultRingSize is how many recent spans a node keeps by default.
const DefaultRingSize = 10000

// MaxRingSize bounds RingSize whatever the configuration says.
const MaxRingSize = 1 << 20

// Protocols of OTLP export.
const (
	ProtocolGRPC = "grpc"
	ProtocolHTTP = "http/protobuf"
)

// ErrBadConfig is wrapped by New for a configuration it cannot use.
var ErrBadConfig = errors.New("tracing: bad config")

// Config turns tracing on and says where spans go. The zero value is off.
type Config struct {
	// Enabled records spans into the ring (and exports them if OTLP is
	// configured). An OTLP endpoint, here or in the environment, turns
	// tracing on too.
	Enabled bool `yaml:"enabled" json:"enabled"`
	// RingSize bounds the spans kept for the API and peers (default
	// DefaultRingSize).
	RingSize int `yaml:"ring_size" json:"ring_size,omitempty"`
	// SampleRatio is the share of new traces this node records, 0 < r ≤ 1
	// (default 1). A remote trace context never decides it: a call that
	// claims to be sampled is sampled by this node's ratio like any other.
	SampleRatio float64 `yaml:"sample_ratio" json:"sample_ratio,omitempty"`
	// OTLP exports spans to a collector.
	OTLP OTLPConfig `yaml:"otlp" json:"otlp"`
}

// OTLPConfig configures OTLP export. Empty fields are taken from the
// standard OTEL_EXPORTER_OTLP_* variables by the exporters themselves.
type OTLPConfig struct {
	// Protocol is "grpc" or "http/protobuf"; empty reads
	// OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, then OTEL_EXPORTER_OTLP_PROTOCOL,
	// else grpc.
	Protocol string `yaml:"protocol" json:"protocol,omitempty"`
	// Endpoint is host:port (grpc) or a URL (http); empty reads the
	// environment, and with nothing there nothing is exported.
	Endpoint string `yaml:"endpoint" json:"endpoint,omitempty"`
	// Insecure sends without TLS.
	Insecure bool `yaml:"insecure" json:"insecure,omitempty"`
}

// Options are what the node adds to a Config.
type Options struct {
	// Node is this node's PeerID, set on every span's resource.
	Node string
	// Getenv reads the environment (default os.Getenv).
	Getenv func(string) string
}

// Tracing is a node's tracer provider and ring. A nil *Tracing is off.
type Tracing struct {
	tp   *sdktrace.TracerProvider
	ring *Ring
	node string
}

func (c Config) endpoint(getenv func(string) string) string {
	if c.OTLP.Endpoint != "" {
		return c.OTLP.Endpoint
	}
	if e := getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"); e != "" {
		return e
	}
	return getenv("OTEL_EXPORTER_OTLP_ENDPOINT")
}

func (c Config) protocol(getenv func(string) string) string {
	for _, p := range []string{c.OTLP.Protocol, getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"), getenv("OTEL_EXPORTER_OTLP_PROTOCOL")} {
		if p != "" {
			return p
		}
	}
	return ProtocolGRPC
}

// Validate checks c.
func (c Config) Validate() error {
	switch {
	case c.RingSize < 0 || c.RingSize > MaxRingSize:
		return fmt.Errorf("%w: ring_size %d: want 0 (default) to %d", ErrBadConfig, c.RingSize, MaxRingSize)
	case c.SampleRatio < 0 || c.SampleRatio > 1:
		return fmt.Errorf("%w: sample_ratio %g: want 0 (default 1) to 1", ErrBadConfig, c.SampleRatio)
	}
	switch c.OTLP.Protocol {
	case "", ProtocolGRPC, ProtocolHTTP:
	default:
		return fmt.Errorf("%w: otlp.protocol %q: want %q or %q", ErrBadConfig, c.OTLP.Protocol, ProtocolGRPC, ProtocolHTTP)
	}
	return nil
}

// New builds the node's tracing from c, or returns nil (off) when c
// enables nothing and the environment names no OTLP endpoint.
func New(c Config, o Options) (*Tracing, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	getenv := o.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	endpoint := c.endpoint(getenv)
	if !c.Enabled && endpoint == "" {
		return nil, nil
	}
	size := c.RingSize
	if size == 0 {
		size = DefaultRingSize
	}
	ratio := c.SampleRatio
	if ratio == 0 {
		ratio = 1
	}
	ring := NewRing(size, o.Node)
	// The ratio decides every trace this node records: a remote parent's
	// sampled flag chooses nothing here.
	root := sdktrace.TraceIDRatioBased(ratio)
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithSampler(sdktrace.ParentBased(root,
			sdktrace.WithRemoteParentSampled(root), sdktrace.WithRemoteParentNotSampled(root))),
		sdktrace.WithSpanProcessor(ring),
		sdktrace.WithRawSpanLimits(sdktrace.SpanLimits{
			AttributeValueLengthLimit: 512, AttributeCountLimit: 32, EventCountLimit: 64,
			LinkCountLimit: 8, AttributePerEventCountLimit: 16, AttributePerLinkCountLimit: 8,
		}),
		sdktrace.WithResource(resource.NewSchemaless(
			attribute.String("service.name", "parley"), AttrNode.String(o.Node))),
	}
	if endpoint != "" {
		exp, err := newExporter(c, getenv)
		if err != nil {
			return nil, err
		}
		// Bounded queue: spans past it are dropped, not held.
		opts = append(opts, sdktrace.WithBatcher(exp, sdktrace.WithMaxQueueSize(4096), sdktrace.WithBatchTimeout(time.Second)))
	}
	return &Tracing{tp: sdktrace.NewTracerProvider(opts...), ring: ring, node: o.Node}, nil
}

func newExporter(c Config, getenv func(string) string) (sdktrace.SpanExporter, error) {
	ctx := context.Background()
	switch p := c.protocol(getenv); p {
	case ProtocolGRPC:
		var opts []otlptracegrpc.Option
		if c.OTLP.Endpoint != "" {
			opts = append(opts, otlptracegrpc.WithEndpoint(strings.TrimPrefix(strings.TrimPrefix(c.OTLP.Endpoint, "http://"), "https://")))
		}
		if c.OTLP.Insecure {
			opts = append(opts, otlptracegrpc.WithInsecure())
		}
		exp, err := otlptracegrpc.New(ctx, opts...)
		if err != nil {
			return nil, fmt.Errorf("tracing: otlp grpc exporter: %w", err)
		}
		return exp, nil
	case ProtocolHTTP:
		var opts []otlptracehttp.Option
		if e := c.OTLP.Endpoint; e != "" {
			if strings.Contains(e, "://") {
				opts = append(opts, otlptracehttp.WithEndpointURL(e))
			} else {
				opts = append(opts, otlptracehttp.WithEndpoint(e))
			}
		}
		if c.OTLP.Insecure {
			opts = append(opts, otlptracehttp.WithInsecure())
		}
		exp, err := otlptracehttp.New(ctx, opts...)
		if err != nil {
			return nil, fmt.Errorf("tracing: otlp http exporter: %w", err)
		}
		return exp, nil
	default:
		return nil, fmt.Errorf("%w: otlp protocol %q: want %q or %q", ErrBadConfig, p, ProtocolGRPC, ProtocolHTTP)
	}
}

// Tracer returns the named tracer, or nil when t is off: callers then
// start no span (Start does that for them).
func (t *Tracing) Tracer(name string) trace.Tracer {
	if t == nil {
		return nil
	}
	return t.tp.Tracer(name)
}

// Ring returns the recent spans, or nil when t is off.
func (t *Tracing) Ring() *Ring {
	if t == nil {
		return nil
	}
	return t.ring
}

// Node is the PeerID t was built for.
func (t *Tracing) Node() string {
	if t == nil {
		return ""
	}
	return t.node
}

// ForceFlush exports every ended span now.
func (t *Tracing) ForceFlush(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.tp.ForceFlush(ctx)
}

// Close flushes and stops the exporters; it waits at most until ctx ends.
func (t *Tracing) Close(ctx context.Context) error {
	if t == nil {
		return nil
	}
	if err := t.tp.Shutdown(ctx); err != nil {
		return fmt.Errorf("tracing: shutdown: %w", err)
	}
	return nil
}

// Start starts a span with tr, or returns ctx and a no-op span when tr is
// nil (tracing off) — without allocating. Build attributes only when
// span.IsRecording().
func Start(ctx context.Context, tr trace.Tracer, name string, kind trace.SpanKind) (context.Context, trace.Span) {
	if tr == nil {
		// The span of a ctx holding none is a shared no-op: no allocation.
		return ctx, trace.SpanFromContext(context.Background())
	}
	return tr.Start(ctx, name, trace.WithSpanKind(kind))
}
