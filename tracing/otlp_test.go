package tracing

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// receiver is a test OTLP collector: it decodes the real OTLP protobuf
// wire format and hands each export on.
type receiver struct {
	coltracepb.UnimplementedTraceServiceServer
	got chan *coltracepb.ExportTraceServiceRequest
}

func (r *receiver) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	r.got <- req
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	var msg coltracepb.ExportTraceServiceRequest
	if err != nil || req.URL.Path != "/v1/traces" || req.Header.Get("Content-Type") != "application/x-protobuf" || proto.Unmarshal(body, &msg) != nil {
		http.Error(w, "bad export", http.StatusBadRequest)
		return
	}
	r.got <- &msg
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func TestOTLPExport(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start func(t *testing.T, r *receiver) (endpoint string, env map[string]string)
	}{
		{"grpc from config", func(t *testing.T, r *receiver) (string, map[string]string) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := grpc.NewServer()
			coltracepb.RegisterTraceServiceServer(srv, r)
			go func() { _ = srv.Serve(ln) }()
			t.Cleanup(srv.Stop)
			return ln.Addr().String(), nil
		}},
		{"http from the environment", func(t *testing.T, r *receiver) (string, map[string]string) {
			srv := httptest.NewServer(r)
			t.Cleanup(srv.Close)
			return "", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": srv.URL, "OTEL_EXPORTER_OTLP_PROTOCOL": ProtocolHTTP}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &receiver{got: make(chan *coltracepb.ExportTraceServiceRequest, 16)}
			endpoint, env := tc.start(t, r)
			cfg := Config{OTLP: OTLPConfig{Endpoint: endpoint, Insecure: true}}
			if endpoint != "" {
				cfg.OTLP.Protocol = ProtocolGRPC
			}
			// The exporters read the real environment themselves.
			for k, v := range env {
				t.Setenv(k, v)
			}
			// Not enabled: the endpoint alone turns tracing on.
			tr, err := New(cfg, Options{Node: "12D3KooWtest"})
			if err != nil || tr == nil {
				t.Fatalf("New = %v, %v", tr, err)
			}
			ctx, span := tr.Tracer("test").Start(context.Background(), "negotiation.request")
			span.SetAttributes(AttrTask.String("task-9"))
			_, child := tr.Tracer("test").Start(ctx, "negotiation.call")
			child.End()
			span.End()
			fctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := tr.ForceFlush(fctx); err != nil {
				t.Fatal(err)
			}
			if err := tr.Close(fctx); err != nil {
				t.Fatal(err)
			}
			names := map[string]bool{}
			for len(names) < 2 {
				select {
				case req := <-r.got:
					for _, rs := range req.ResourceSpans {
						node := ""
						for _, a := range rs.Resource.GetAttributes() {
							if a.Key == string(AttrNode) {
								node = a.Value.GetStringValue()
							}
						}
						for _, ss := range rs.ScopeSpans {
							for _, s := range ss.Spans {
								if node != "12D3KooWtest" || len(s.TraceId) != 16 {
									t.Fatalf("span %s: node %q, trace id %x", s.Name, node, s.TraceId)
								}
								names[s.Name] = true
							}
						}
					}
				case <-fctx.Done():
					t.Fatalf("receiver got %v, want both spans", names)
				}
			}
		})
	}
}
