// Package otlpsink is a local OTLP/HTTP trace receiver for tests and
// benchmarks: it reads each export and answers success, so tracing can be
// measured exporting for real without a collector.
package otlpsink

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// Sink is a running receiver.
type Sink struct {
	// URL is the endpoint to give an OTLP/HTTP exporter.
	URL     string
	exports atomic.Int64
}

// Exports is how many export requests arrived.
func (s *Sink) Exports() int64 { return s.exports.Load() }

// Start starts a receiver that tb stops when it ends.
func Start(tb testing.TB) *Sink {
	s := &Sink{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		s.exports.Add(1)
		// An empty body is an empty ExportTraceServiceResponse: success.
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	tb.Cleanup(srv.Close)
	s.URL = srv.URL + "/v1/traces"
	return s
}
