package api

import (
	"context"
	"net"
	"net/http"
	"sync"
)

// drain makes the API server's Shutdown prompt. net/http's Shutdown waits
// up to five seconds for a connection that has not sent its first request
// before it counts it idle, and clients open such connections all the time
// (a transport's spare dial that lost its race to a pooled one, a browser's
// preconnect), so one of them held a daemon's stop for seconds. Shutdown
// closes those: nothing has been asked on them, so nothing is lost.
type drain struct {
	mu       sync.Mutex
	draining bool
	fresh    map[net.Conn]struct{}
}

// connState is the server's ConnState hook: it keeps the connections that
// have read nothing yet, and closes any accepted once draining began.
func (d *drain) connState(c net.Conn, st http.ConnState) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if st != http.StateNew {
		delete(d.fresh, c)
		return
	}
	if d.draining {
		_ = c.Close()
		return
	}
	if d.fresh == nil {
		d.fresh = make(map[net.Conn]struct{})
	}
	d.fresh[c] = struct{}{}
}

// shutdown closes the fresh connections, then shuts srv down within ctx.
func (d *drain) shutdown(ctx context.Context, srv *http.Server) error {
	d.mu.Lock()
	d.draining = true
	for c := range d.fresh {
		_ = c.Close()
	}
	d.fresh = nil
	d.mu.Unlock()
	return srv.Shutdown(ctx)
}
