package tracing

import (
	"context"
	"encoding/hex"
	"errors"

	"go.opentelemetry.io/otel/trace"
)

// TraceparentLen is the length of a version-00 W3C traceparent.
const TraceparentLen = 55

// ErrBadTraceparent is returned by ParseTraceparent.
var ErrBadTraceparent = errors.New("invalid traceparent")

// ParseTraceparent parses a W3C traceparent strictly: exactly version 00,
// 55 bytes, lower-case hex, non-zero IDs, flags 00 or 01. A remote trace
// context is untrusted input; anything else is refused, and the span
// context it returns is marked remote. Its sampled flag is only a hint:
// this node's sampler decides what it records.
func ParseTraceparent(s string) (trace.SpanContext, error) {
	if len(s) != TraceparentLen || s[0] != '0' || s[1] != '0' || s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return trace.SpanContext{}, ErrBadTraceparent
	}
	var tid trace.TraceID
	var sid trace.SpanID
	var flags [1]byte
	if !lowerHex(s[3:35]) || !lowerHex(s[36:52]) || !lowerHex(s[53:55]) {
		return trace.SpanContext{}, ErrBadTraceparent
	}
	if _, err := hex.Decode(tid[:], []byte(s[3:35])); err != nil {
		return trace.SpanContext{}, ErrBadTraceparent
	}
	if _, err := hex.Decode(sid[:], []byte(s[36:52])); err != nil {
		return trace.SpanContext{}, ErrBadTraceparent
	}
	if _, err := hex.Decode(flags[:], []byte(s[53:55])); err != nil || flags[0] > 1 {
		return trace.SpanContext{}, ErrBadTraceparent
	}
	if !tid.IsValid() || !sid.IsValid() {
		return trace.SpanContext{}, ErrBadTraceparent
	}
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.TraceFlags(flags[0]), Remote: true}), nil
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Traceparent formats sc as a W3C traceparent, or "" if sc is not valid
// (no span, or tracing off).
func Traceparent(sc trace.SpanContext) string {
	if !sc.IsValid() {
		return ""
	}
	var b [TraceparentLen]byte
	b[0], b[1], b[2] = '0', '0', '-'
	tid, sid := sc.TraceID(), sc.SpanID()
	hex.Encode(b[3:35], tid[:])
	b[35] = '-'
	hex.Encode(b[36:52], sid[:])
	b[52] = '-'
	hex.Encode(b[53:55], []byte{byte(sc.TraceFlags() & trace.FlagsSampled)})
	return string(b[:])
}

// Inject returns the traceparent of ctx's span, or "".
func Inject(ctx context.Context) string {
	return Traceparent(trace.SpanContextFromContext(ctx))
}

// Extract returns ctx with the remote span context of traceparent tp as
// its parent, or ctx unchanged when tp is empty or invalid (a bad trace
// context costs the sender its trace, never the message). When tracing is
// off (tr nil) nothing is parsed.
func Extract(ctx context.Context, tr trace.Tracer, tp string) context.Context {
	if tr == nil || tp == "" {
		return ctx
	}
	sc, err := ParseTraceparent(tp)
	if err != nil {
		return ctx
	}
	return trace.ContextWithRemoteSpanContext(ctx, sc)
}
