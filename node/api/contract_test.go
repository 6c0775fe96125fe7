package api

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
)

// The contract tests: every answer the API tests get from a server made by
// newTestServer is checked against openapi.yaml — its status is one the
// operation documents, its Content-Type one that status documents, its
// body (each event's data, for a stream) valid against the schema — and so
// is every request body the server took. The handlers and the document
// are both what users rely on; checking real traffic catches either one
// drifting from the other.
//
// OpenAPI 3.1's schemas are JSON Schema 2020-12, so a JSON Schema
// validator does the checking; what is OpenAPI's (operations, responses,
// media types) is the little code below, which finds the operation by the
// ServeMux pattern the request matched, the same as the document's path.

const contractURL = "mem://openapi.json"

// contract is openapi.yaml, parsed once.
type contract struct {
	doc map[string]any

	mu       sync.Mutex
	compiler *jsonschema.Compiler
	schemas  map[string]*jsonschema.Schema // by location
}

var (
	contractOnce sync.Once
	theContract  *contract
	contractErr  error
)

func loadContract(t *testing.T) *contract {
	t.Helper()
	contractOnce.Do(func() { theContract, contractErr = parseContract(openAPI) })
	if contractErr != nil {
		t.Fatalf("openapi.yaml: %v", contractErr)
	}
	return theContract
}

func parseContract(b []byte) (*contract, error) {
	var y any
	if err := yaml.Unmarshal(b, &y); err != nil {
		return nil, err
	}
	// Through JSON, so that the validator sees JSON's values only.
	j, err := json.Marshal(y)
	if err != nil {
		return nil, err
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
	if err != nil {
		return nil, err
	}
	m, ok := doc.(map[string]any)
	if !ok {
		return nil, errors.New("not a mapping")
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat() // date-times are date-times
	if err := c.AddResource(contractURL, doc); err != nil {
		return nil, err
	}
	return &contract{doc: m, compiler: c, schemas: map[string]*jsonschema.Schema{}}, nil
}

// schema compiles the schema at a JSON pointer of the document.
func (k *contract) schema(pointer string) (*jsonschema.Schema, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if s, ok := k.schemas[pointer]; ok {
		return s, nil
	}
	s, err := k.compiler.Compile(contractURL + "#" + pointer)
	if err != nil {
		return nil, err
	}
	k.schemas[pointer] = s
	return s, nil
}

func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// lookup follows a JSON pointer from the document's root, and the $ref of
// the object it ends on: the pointer it ended at and the object.
func (k *contract) lookup(pointer string) (string, map[string]any, bool) {
	var v any = k.doc
	for _, tok := range strings.Split(strings.TrimPrefix(pointer, "/"), "/") {
		m, ok := v.(map[string]any)
		if !ok {
			return "", nil, false
		}
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		if v, ok = m[tok]; !ok {
			return "", nil, false
		}
	}
	m, ok := v.(map[string]any)
	if ref, isRef := m["$ref"].(string); ok && isRef {
		return k.lookup(strings.TrimPrefix(ref, "#"))
	}
	return pointer, m, ok
}

// exchange is one request and its answer as the server saw them.
type exchange struct {
	method, pattern string // pattern is the ServeMux's, "" if none matched
	reqType         string
	reqBody         []byte
	status          int
	header          http.Header
	body            []byte
}

// check returns what in x the document does not allow.
func (k *contract) check(x exchange) error {
	if x.pattern == "" {
		// No route (or refused before routing): an Error, in JSON.
		return k.checkBody("/components/schemas/Error", "application/json", x.header.Get("Content-Type"), x.body)
	}
	_, path, _ := strings.Cut(x.pattern, " ")
	op := "/paths/" + escapePointer(path) + "/" + strings.ToLower(x.method)
	if _, _, ok := k.lookup(op); !ok {
		return fmt.Errorf("%s %s is not in the document", x.method, path)
	}
	if x.status < 300 && len(x.reqBody) > 0 {
		if x.reqType == "" {
			x.reqType = "application/json" // what the server reads a body as
		}
		if _, media, ok := k.lookup(op + "/requestBody/content/" + escapePointer(mediaType(x.reqType))); !ok || media["schema"] == nil {
			return fmt.Errorf("request body of %s: Content-Type %q is not documented", x.method, x.reqType)
		}
		if err := k.checkBody(op+"/requestBody/content/"+escapePointer(mediaType(x.reqType))+"/schema", "application/json", "application/json", x.reqBody); err != nil {
			return fmt.Errorf("request body: %w", err)
		}
	}
	resp, r, ok := k.lookup(op + "/responses/" + strconv.Itoa(x.status))
	if !ok {
		return fmt.Errorf("status %d is not documented", x.status)
	}
	if hs, ok := r["headers"].(map[string]any); ok {
		for name, h := range hs {
			if req, _ := h.(map[string]any)["required"].(bool); req && x.header.Get(name) == "" {
				return fmt.Errorf("no %s header", name)
			}
		}
	}
	content, _ := r["content"].(map[string]any)
	if len(content) == 0 {
		if len(x.body) > 0 {
			return fmt.Errorf("a body where the document has none: %.200s", x.body)
		}
		return nil
	}
	ct := mediaType(x.header.Get("Content-Type"))
	if _, ok := content[ct]; !ok {
		return fmt.Errorf("Content-Type %q is not documented (want one of %v)", x.header.Get("Content-Type"), keys(content))
	}
	schema := resp + "/content/" + escapePointer(ct) + "/schema"
	return k.checkBody(schema, ct, x.header.Get("Content-Type"), x.body)
}

// checkBody checks a body of media type want against the schema at
// pointer: JSON against it, a stream's events against its contentSchema.
func (k *contract) checkBody(pointer, want, contentType string, body []byte) error {
	if got := mediaType(contentType); got != want {
		return fmt.Errorf("Content-Type %q, want %s", contentType, want)
	}
	switch want {
	case "application/json":
		return k.validate(pointer, body)
	case "text/event-stream":
		events, err := parseEvents(body)
		if err != nil {
			return err
		}
		for _, ev := range events {
			if err := k.validate(pointer+"/contentSchema", ev.data); err != nil {
				return fmt.Errorf("event %q: %w", ev.name, err)
			}
			var typed struct{ Type string }
			if ev.name != "" && (json.Unmarshal(ev.data, &typed) != nil || typed.Type != ev.name) {
				return fmt.Errorf("event %q carries data of type %q", ev.name, typed.Type)
			}
		}
	}
	return nil
}

func (k *contract) validate(pointer string, body []byte) error {
	s, err := k.schema(pointer)
	if err != nil {
		return fmt.Errorf("schema %s: %w", pointer, err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("not JSON: %w: %.200s", err, body)
	}
	if err := s.Validate(v); err != nil {
		return fmt.Errorf("%w\nbody: %.2000s", err, body)
	}
	return nil
}

type sseEvent struct {
	name string
	data []byte
}

// parseEvents reads the whole events of a stream; one cut off at its end
// (the client went away) is not one.
func parseEvents(body []byte) ([]sseEvent, error) {
	var out []sseEvent
	var cur sseEvent
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, maxEventSize)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur.data != nil {
				out = append(out, cur)
			}
			cur = sseEvent{}
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "event: "):
			cur.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			if cur.data != nil {
				cur.data = append(cur.data, '\n')
			}
			cur.data = append(cur.data, strings.TrimPrefix(line, "data: ")...)
		default:
			return nil, fmt.Errorf("not an event stream line: %q", line)
		}
	}
	return out, sc.Err()
}

func mediaType(contentType string) string {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return contentType
	}
	return mt
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// checked serves s, checking every exchange against the document and
// failing t on what it does not allow.
func checked(t *testing.T, s *Server) http.Handler {
	k := loadContract(t)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, pattern := s.mux.Handler(r)
		x := exchange{method: r.Method, pattern: pattern, reqType: r.Header.Get("Content-Type")}
		if r.Body != nil {
			// Read ahead, at most one byte over the largest limit, so
			// that the server still sees a body over it.
			b, err := io.ReadAll(io.LimitReader(r.Body, s.maxBody+1))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			x.reqBody = b
			r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(b), r.Body))
		}
		tw := &teeWriter{ResponseWriter: w}
		s.ServeHTTP(tw, r)
		x.status, x.header, x.body = tw.status, w.Header(), tw.body.Bytes()
		if x.status == 0 {
			x.status = http.StatusOK
		}
		if err := k.check(x); err != nil {
			t.Errorf("contract: %s %s → %d: %v", r.Method, r.URL, x.status, err)
		}
	})
}

// teeWriter passes an answer on and keeps a copy, streams included.
type teeWriter struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (w *teeWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *teeWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.body.Len() < maxEventSize {
		w.body.Write(b)
	}
	return w.ResponseWriter.Write(b)
}

func (w *teeWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *teeWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
