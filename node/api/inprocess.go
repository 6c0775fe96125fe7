package api

import (
	"context"
	"io"
	"net/http"
	"sync"
)

// Clients inside the daemon (the MCP endpoint's tools) call the API the
// way the CLI does, through the Client, so that their calls pass the same
// routes, token checks, admission and audit; but over no socket: the
// in-process transport hands each request to the server's ServeHTTP and
// streams the answer back through a pipe.

// InProcessClient returns a client of s that serves its requests on s
// itself, in this process, and authenticates them with token like any
// other request: a wrong token is a 401, an agent token a 403 outside
// its agent's calls.
func (s *Server) InProcessClient(token string) *Client {
	return &Client{base: "http://in-process", token: token, hc: &http.Client{Transport: inProcess{s}}}
}

// WithMCP serves the MCP endpoint (PathMCP) with the handler mount
// returns. mount is given clientFor, which makes an in-process client
// (InProcessClient) for the token of a request to the endpoint, so the
// endpoint's tools act with its caller's own token. Without it the
// endpoint answers 501.
func WithMCP(mount func(clientFor func(token string) *Client) http.Handler) Option {
	return func(s *Server) { s.mcpMount = mount }
}

// PathMCP is the MCP endpoint: stateless Streamable HTTP, POST only.
const PathMCP = "/mcp"

func (s *Server) handleMCP(w http.ResponseWriter, r *http.Request) {
	if s.mcp == nil {
		writeError(w, CodeNotImplemented, "this server does not serve MCP")
		return
	}
	s.mcp.ServeHTTP(w, r)
}

// inProcess is an http.RoundTripper that serves requests on a handler.
type inProcess struct{ h http.Handler }

func (t inProcess) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancel(req.Context())
	r := req.Clone(ctx)
	r.RemoteAddr = "in-process"
	r.RequestURI = r.URL.RequestURI()
	if r.Body == nil {
		r.Body = http.NoBody
	}
	pr, pw := io.Pipe()
	w := &pipeWriter{header: http.Header{}, pw: pw, ready: make(chan struct{})}
	go func() { // ends with the handler; closing the body cancels its request
		defer func() {
			w.writeHeader(http.StatusOK)
			_ = pw.Close()
		}()
		t.h.ServeHTTP(w, r)
	}()
	select {
	case <-w.ready:
	case <-req.Context().Done():
		cancel()
		_ = pr.Close()
		return nil, req.Context().Err()
	}
	return &http.Response{
		Status:        http.StatusText(w.status),
		StatusCode:    w.status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        w.sent,
		Body:          &pipeBody{PipeReader: pr, cancel: cancel},
		ContentLength: -1,
		Request:       req,
	}, nil
}

// pipeWriter is the handler's ResponseWriter: its header is sent when the
// status is, and its body goes through the pipe as it is written.
type pipeWriter struct {
	header http.Header
	pw     *io.PipeWriter
	once   sync.Once
	ready  chan struct{} // closed once status and sent are set
	status int
	sent   http.Header
}

func (w *pipeWriter) Header() http.Header { return w.header }

func (w *pipeWriter) WriteHeader(status int) { w.writeHeader(status) }

func (w *pipeWriter) writeHeader(status int) {
	w.once.Do(func() {
		w.status, w.sent = status, w.header.Clone()
		close(w.ready)
	})
}

func (w *pipeWriter) Write(b []byte) (int, error) {
	w.writeHeader(http.StatusOK)
	return w.pw.Write(b)
}

// Flush does nothing: a pipe hands each write to the reader as it is made.
func (w *pipeWriter) Flush() {}

// pipeBody is the answer's body; closing it ends the handler's request.
type pipeBody struct {
	*io.PipeReader
	cancel context.CancelFunc
}

func (b *pipeBody) Close() error {
	b.cancel()
	return b.PipeReader.Close()
}
