package api

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/parleynet/parley/audit"
	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/node"
	"github.com/parleynet/parley/workflow"
)

// The dashboard: a page the daemon serves at /ui, embedded in the binary
// (no build step, nothing fetched from elsewhere, so it works offline),
// which shows the node live over one event stream.
//
// A browser cannot send a bearer token, and a token in a URL ends up in
// logs and shell history, so the page is opened with a login link instead:
// the operator token asks for a one-time code (POST /v1/ui/login-links,
// what `parley ui` does), the browser exchanges it at /ui/login for a
// session cookie (HttpOnly, SameSite=Strict) and is sent on to /ui. The
// code dies when used or after a minute; the session after uiSessionTTL.
// A session may only read what the page shows (uiRoute): it cannot post,
// so it needs no CSRF protection.

// Paths of the dashboard.
const (
	PathUI           = "/ui"                  // the page
	PathUIScript     = "/ui/app.js"           // its script
	PathUIStyle      = "/ui/app.css"          // its style sheet
	PathUILogin      = "/ui/login"            // GET ?code=: the code for a session cookie, then to /ui
	PathUILoginLinks = "/v1/ui/login-links"   // POST (operator token): a one-time login link
	PathUIEvents     = "/v1/ui/events"        // GET: the dashboard's event stream
	uiCookie         = "parley_ui"            // the session cookie's name
	uiCodeTTL        = 60 * time.Second       // how long a login code is good for
	uiSessionTTL     = 12 * time.Hour         // how long a session is good for
	uiMaxCodes       = 16                     // outstanding codes kept; the oldest go first
	uiMaxSessions    = 32                     // sessions kept; the oldest go first
	uiTick           = 250 * time.Millisecond // how often the stream looks for changes
	uiStatusEvery    = 2 * time.Second        // how often it looks at the status (health checks)
	uiBatch          = 200                    // tasks per event
)

//go:embed ui
var uiFiles embed.FS

// uiAuth holds the outstanding login codes and the sessions, each by its
// SHA-256 (like agent tokens, so that lookups leak nothing through
// timing), with its expiry. Both tables are bounded.
type uiAuth struct {
	mu       sync.Mutex
	codes    map[string]time.Time
	sessions map[string]time.Time
}

// issue adds a fresh secret to *table, keeping at most max, and returns it.
func (u *uiAuth) issue(table *map[string]time.Time, max int, ttl time.Duration) (string, time.Time, error) {
	secret, err := NewToken()
	if err != nil {
		return "", time.Time{}, fmt.Errorf("dashboard secret: %w", err)
	}
	now := time.Now()
	u.mu.Lock()
	defer u.mu.Unlock()
	if *table == nil {
		*table = map[string]time.Time{}
	}
	t := *table
	for h, exp := range t {
		if !now.Before(exp) {
			delete(t, h)
		}
	}
	for len(t) >= max { // the one expiring first was issued first
		oldest := ""
		for h, exp := range t {
			if oldest == "" || exp.Before(t[oldest]) {
				oldest = h
			}
		}
		delete(t, oldest)
	}
	exp := now.Add(ttl)
	t[tokenHash(secret)] = exp
	return secret, exp, nil
}

// redeem reports whether code is outstanding, and uses it up.
func (u *uiAuth) redeem(code string) bool {
	h := tokenHash(code)
	u.mu.Lock()
	defer u.mu.Unlock()
	exp, ok := u.codes[h]
	delete(u.codes, h)
	return ok && time.Now().Before(exp)
}

// session reports whether id is a live session.
func (u *uiAuth) session(id string) bool {
	h := tokenHash(id)
	u.mu.Lock()
	defer u.mu.Unlock()
	exp, ok := u.sessions[h]
	if ok && !time.Now().Before(exp) {
		delete(u.sessions, h)
		return false
	}
	return ok
}

// uiRoute reports whether a dashboard session may call the route pattern:
// the page, and the reads it makes.
func uiRoute(pattern string) bool {
	switch pattern {
	case "GET " + PathUI, "GET " + PathUIScript, "GET " + PathUIStyle, "GET " + PathUIEvents,
		"GET " + PathStatus, "GET " + PathNode, "GET " + PathPeers, "GET " + PathStats,
		"GET " + PathTasks, "GET " + PathTask, "GET " + PathAgents, "GET " + PathApprovals, "GET " + PathAudit,
		"GET " + PathWorkflows, "GET " + PathWorkflow:
		return true
	}
	return false
}

// UILoginLink answers POST /v1/ui/login-links.
type UILoginLink struct {
	URL     string    `json:"url"` // open it in a browser, once
	Expires time.Time `json:"expires"`
}

func (s *Server) handleUILoginLink(w http.ResponseWriter, r *http.Request) {
	code, exp, err := s.ui.issue(&s.ui.codes, uiMaxCodes, uiCodeTTL)
	if err != nil {
		writeError(w, CodeInternal, err.Error())
		return
	}
	// The host the CLI reached the daemon at is the one the browser can.
	u := "http://" + r.Host + PathUILogin + "?code=" + code
	writeJSON(w, http.StatusCreated, UILoginLink{URL: u, Expires: exp.UTC()})
}

// handleUILogin trades a login code for a session cookie. It is public
// (the browser has no token); a bad code is 401 like a bad token.
func (s *Server) handleUILogin(w http.ResponseWriter, r *http.Request) {
	code := r.URL.Query().Get("code")
	if code == "" || !s.ui.redeem(code) {
		s.refuse(w, r, CodeUnauthorized, "this login link is unknown, used or expired: run `parley ui` for a new one")
		return
	}
	id, exp, err := s.ui.issue(&s.ui.sessions, uiMaxSessions, uiSessionTTL)
	if err != nil {
		writeError(w, CodeInternal, err.Error())
		return
	}
	http.SetCookie(w, &http.Cookie{Name: uiCookie, Value: id, Path: "/", Expires: exp,
		HttpOnly: true, SameSite: http.SameSiteStrictMode})
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, PathUI, http.StatusSeeOther)
}

// handleUIAsset serves one embedded file.
func handleUIAsset(name, contentType string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b, err := uiFiles.ReadFile("ui/" + name)
		if err != nil {
			writeError(w, CodeInternal, err.Error())
			return
		}
		h := w.Header()
		h.Set("Content-Type", contentType)
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
		h.Set("X-Frame-Options", "DENY")
		_, _ = w.Write(b)
	}
}

// UIEvent is one event of the dashboard's stream; Type says which field
// it carries, and the event is named after it. A list left out is empty.
type UIEvent struct {
	Type string `json:"type"` // tasks, peers, topics, status, stats, approvals, workflows, audit
	// Tasks are the tasks new or changed since the last tasks event, Gone
	// those forgotten (the node keeps the newest KeepTasks). The first
	// events after connecting carry them all, uiBatch at a time; the first
	// of those has Full, saying to forget what was known before (after a
	// reconnect).
	Tasks     []UITask        `json:"tasks,omitempty"`
	Gone      []string        `json:"gone,omitempty"`
	Full      bool            `json:"full,omitempty"`
	Peers     []node.PeerInfo `json:"peers,omitempty"`
	Topics    []UITopic       `json:"topics,omitempty"`
	Status    *Status         `json:"status,omitempty"`
	Stats     *node.Stats     `json:"stats,omitempty"`
	Approvals []node.Approval `json:"approvals,omitempty"`
	// Workflows are the node's workflows, newest first (WithWorkflows).
	Workflows []workflow.Summary `json:"workflows,omitempty"`
	Audit     []audit.Record     `json:"audit,omitempty"` // the last records of the audit log, oldest first
}

// UITask is a task as the dashboard lists it; the page gets the rest
// (history, bids) from GET /v1/tasks/{id}.
type UITask struct {
	Task       string               `json:"task"`
	Role       negotiation.Role     `json:"role"`
	Capability string               `json:"capability"`
	State      negotiation.State    `json:"state"`
	AgentName  string               `json:"agent_name,omitempty"`
	PeerName   string               `json:"peer_name,omitempty"`
	Started    time.Time            `json:"started"`
	Updated    time.Time            `json:"updated"`
	Bids       int                  `json:"bids"`
	Timings    *negotiation.Timings `json:"timings,omitempty"` // a requester's, once it ended
}

// UITopic is a capability's topic and how many peers this node sees on it.
type UITopic struct {
	Capability string `json:"capability"`
	Peers      int    `json:"peers"`
}

func uiTask(t negotiation.TaskInfo) UITask {
	u := UITask{Task: t.Task, Role: t.Role, Capability: t.Capability, State: t.State, AgentName: t.AgentName,
		PeerName: t.PeerName, Started: t.Updated, Updated: t.Updated}
	if len(t.History) > 0 {
		u.Started = t.History[0].At
	}
	if o := t.Outcome; o != nil {
		u.Bids = len(o.Bids)
		tm := o.Timings
		u.Timings = &tm
	}
	return u
}

// uiWatch is what one stream has sent, to send only what changed.
type uiWatch struct {
	tasks      map[string]time.Time // by ID, its Updated as sent
	sent       map[string][]byte    // the last event of each other type, as sent
	statusNext time.Time
	auditStamp uint64 // of the audit log's files when last read
}

// changes returns the events that bring the stream's client up to date.
func (s *Server) uiChanges(wt *uiWatch) []UIEvent {
	var out []UIEvent
	full := wt.tasks == nil
	tasks := s.n.Tasks()
	caps := map[string]bool{}
	var changed []UITask
	seen := make(map[string]time.Time, len(tasks))
	for _, t := range tasks {
		caps[t.Capability] = true
		seen[t.Task] = t.Updated
		if at, ok := wt.tasks[t.Task]; !ok || !at.Equal(t.Updated) {
			changed = append(changed, uiTask(t))
		}
	}
	var gone []string
	for id := range wt.tasks {
		if _, ok := seen[id]; !ok {
			gone = append(gone, id)
		}
	}
	wt.tasks = seen
	for len(changed) > 0 || len(gone) > 0 || full {
		n := min(len(changed), uiBatch)
		out = append(out, UIEvent{Type: "tasks", Tasks: changed[:n], Gone: gone, Full: full})
		changed, gone, full = changed[n:], nil, false
	}
	diff := func(ev UIEvent) {
		b, err := json.Marshal(ev)
		if err != nil || bytes.Equal(wt.sent[ev.Type], b) {
			return
		}
		wt.sent[ev.Type] = b
		out = append(out, ev)
	}
	diff(UIEvent{Type: "peers", Peers: s.n.Peers()})
	diff(UIEvent{Type: "stats", Stats: ptr(s.n.Stats())})
	diff(UIEvent{Type: "approvals", Approvals: s.n.Approvals()})
	if s.workflows != nil {
		if wfs, err := s.workflows.List(); err == nil {
			diff(UIEvent{Type: "workflows", Workflows: wfs})
		}
	}
	if now := time.Now(); !now.Before(wt.statusNext) {
		wt.statusNext = now.Add(uiStatusEvery)
		st := s.Status()
		st.UptimeSeconds = 0 // the page counts it from Started
		for _, a := range st.Agents {
			for _, c := range a.Capabilities {
				caps[c] = true
			}
		}
		diff(UIEvent{Type: "status", Status: &st})
		if s.auditDir != "" {
			if stamp := s.auditStamp(); stamp != wt.auditStamp {
				wt.auditStamp = stamp
				if recs, err := s.auditTail(uiAuditTail); err == nil {
					diff(UIEvent{Type: "audit", Audit: recs})
				} else {
					log.Debugw("dashboard: audit tail", "err", err)
				}
			}
		}
	}
	topics := []UITopic{}
	for _, c := range slices.Sorted(mapKeys(caps)) {
		topics = append(topics, UITopic{Capability: c, Peers: len(s.n.TopicPeers(c))})
	}
	diff(UIEvent{Type: "topics", Topics: topics})
	return out
}

func ptr[T any](v T) *T { return &v }

func mapKeys(m map[string]bool) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// handleUIEvents streams the dashboard's events: everything once, then
// what changes, looked for every uiTick. The handler's goroutine does it
// all, so nothing outlives the request.
func (s *Server) handleUIEvents(w http.ResponseWriter, r *http.Request) {
	if !s.started(w) {
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	send := startEvents(w)
	if !send(": dashboard events, every %s\n\n", uiTick) {
		return
	}
	wt := &uiWatch{sent: map[string][]byte{}}
	tick := time.NewTicker(uiTick)
	defer tick.Stop()
	ping := time.NewTicker(s.ping)
	defer ping.Stop()
	for {
		for _, ev := range s.uiChanges(wt) {
			b, err := json.Marshal(ev)
			if err != nil {
				log.Warnw("marshal dashboard event", "type", ev.Type, "err", err)
				continue
			}
			if !send("event: %s\ndata: %s\n\n", ev.Type, b) {
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-s.closing:
			return
		case <-ping.C:
			if !send(": ping\n\n") {
				return
			}
		case <-tick.C:
		}
	}
}

// UILoginLink asks the daemon for a one-time login link to its
// dashboard, as `parley ui` does.
func (c *Client) UILoginLink(ctx context.Context) (*UILoginLink, error) {
	var l UILoginLink
	if err := c.do(ctx, http.MethodPost, PathUILoginLinks, nil, http.StatusCreated, &l); err != nil {
		return nil, err
	}
	return &l, nil
}
