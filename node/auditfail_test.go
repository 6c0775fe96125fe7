package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/parleynet/parley/audit"
	"github.com/parleynet/parley/node"
	"github.com/parleynet/parley/node/nodetest"
)

// fullDisk mounts a tiny tmpfs for an audit log, so that writing to it
// fails for real (ENOSPC) once it is full. It needs root.
func fullDisk(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs that fills up")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=64k"); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	return filepath.Join(dir, "audit")
}

// A broken audit log is a node state with a policy: stop taking audited
// steps (the default), or go on unaudited. On main one fsync error broke
// the log for good and the validator silently dropped every intent.
func TestBrokenAuditLog(t *testing.T) {
	for _, mode := range []string{node.AuditStop, node.AuditContinue} {
		t.Run(mode, func(t *testing.T) {
			dir := fullDisk(t)
			var alog *audit.Log
			m := nodetest.NewMesh(t, 1, nodetest.WithConfig(func(_ int, c *node.Config) {
				var err error
				if alog, err = audit.Open(dir, c.NodeKey, audit.Options{}); err != nil {
					t.Fatal(err)
				}
				c.AuditLog, c.AuditFailure = alog, mode
				c.PublishWait = time.Millisecond // alone on the topic: do not wait for peers
			}))
			t.Cleanup(func() { _ = alog.Close() })
			n := m.Nodes[0]
			req := node.PublishRequest{Capability: "news", Payload: json.RawMessage(`{"pad":"0123456789012345678901234567890123456789"}`)}
			ctx := context.Background()
			for i := 0; i < 10_000 && alog.Err() == nil; i++ {
				_, _ = n.Publish(ctx, req)
			}
			if alog.Err() == nil || !errors.Is(alog.Err(), audit.ErrBroken) {
				t.Fatalf("the log never broke on a full disk: %v", alog.Err())
			}
			_, err := n.Publish(ctx, req)
			switch mode {
			case node.AuditStop:
				if !errors.Is(err, audit.ErrBroken) {
					t.Fatalf("publish with a broken log: %v, want refused with audit.ErrBroken", err)
				}
			case node.AuditContinue:
				if err != nil {
					t.Fatalf("publish with a broken log, audit_failure continue: %v", err)
				}
			}
		})
	}
}
