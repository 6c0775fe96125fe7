package api

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"os"
	"strconv"

	"github.com/parleynet/parley/audit"
)

// PathAudit is the audit log's tail: GET ?tail=N, the last N records,
// oldest first, as `parley audit tail` reads them (signatures unchecked;
// `parley audit verify` checks them).
const PathAudit = "/v1/audit"

// Bounds of GET /v1/audit's tail, and the records the dashboard shows.
const (
	DefaultAuditTail = 50
	MaxAuditTail     = 1000
	uiAuditTail      = 20
)

// WithAuditTail serves the audit log in dir on GET /v1/audit and on the
// dashboard. Without it GET /v1/audit is 501.
func WithAuditTail(dir string) Option { return func(s *Server) { s.auditDir = dir } }

func (s *Server) handleAudit(w http.ResponseWriter, r *http.Request) {
	n := DefaultAuditTail
	if v := r.URL.Query().Get("tail"); v != "" {
		i, err := strconv.Atoi(v)
		if err != nil || i < 1 || i > MaxAuditTail {
			writeError(w, CodeBadRequest, fmt.Sprintf("tail %q: want a number of records from 1 to %d", v, MaxAuditTail))
			return
		}
		n = i
	}
	if s.auditDir == "" {
		writeError(w, CodeNotImplemented, "this daemon keeps no audit log (it runs with --no-audit, or the program serving the API gave it none)")
		return
	}
	recs, err := s.auditTail(n)
	if err != nil {
		writeError(w, CodeInternal, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, recs)
}

// auditTail reads the last n records; a log not started yet has none.
func (s *Server) auditTail(n int) ([]audit.Record, error) {
	recs, err := audit.Tail(s.auditDir, n)
	switch {
	case errors.Is(err, audit.ErrNoLog):
		return []audit.Record{}, nil
	case err != nil:
		return nil, fmt.Errorf("audit log %s: %w", s.auditDir, err)
	case recs == nil:
		recs = []audit.Record{}
	}
	return recs, nil
}

// auditStamp fingerprints the log directory's files (names, sizes, times),
// so that the dashboard's stream reads the tail only when it grew.
func (s *Server) auditStamp() uint64 {
	entries, err := os.ReadDir(s.auditDir)
	if err != nil {
		return 0
	}
	h := fnv.New64a()
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			continue
		}
		fmt.Fprintf(h, "%s %d %d\n", e.Name(), fi.Size(), fi.ModTime().UnixNano())
	}
	return h.Sum64()
}
