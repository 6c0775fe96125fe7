package home

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// oldLog gives the home in dir an audit log of one line.
func oldLog(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "audit"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "audit", "audit-000001.jsonl"), []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// kept returns the directory the replaced home's audit log was kept in,
// checking that it holds the log and a node.pub naming want.
func kept(t *testing.T, dir, want string) string {
	t.Helper()
	logs, _ := filepath.Glob(filepath.Join(dir, "audit.replaced-*", "audit-000001.jsonl"))
	if len(logs) != 1 {
		t.Fatalf("the old audit log was not kept in the new home: %v", logs)
	}
	k := filepath.Dir(logs[0])
	pub, err := os.ReadFile(filepath.Join(k, NodePubFile))
	if err != nil || strings.TrimSpace(string(pub)) != want {
		t.Fatalf("%s: %q, %v; want the old node's PeerID %s", NodePubFile, pub, err, want)
	}
	return k
}

func TestInitForceKeepsTheOldAuditLog(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "home")
	h, err := Init(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	oldLog(t, dir)
	h2, err := Init(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	first := kept(t, dir, h.PeerID().String())
	if _, err := os.Stat(filepath.Join(dir, "audit")); !os.IsNotExist(err) {
		t.Errorf("the new home has an audit dir from the old key: %v", err)
	}

	// A second replacement keeps the first one's log too.
	oldLog(t, dir)
	if _, err := Init(dir, true); err != nil {
		t.Fatal(err)
	}
	logs, _ := filepath.Glob(filepath.Join(dir, "audit.replaced-*", NodePubFile))
	if len(logs) != 2 {
		t.Fatalf("after two replacements: %v, want both logs kept", logs)
	}
	if _, err := os.Stat(first); err != nil {
		t.Fatalf("the first kept log is gone: %v", err)
	}
	var pubs []string
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		pubs = append(pubs, strings.TrimSpace(string(b)))
	}
	if !strings.Contains(strings.Join(pubs, " "), h2.PeerID().String()) {
		t.Fatalf("node.pub files %v do not name the second home's node %s", pubs, h2.PeerID())
	}
}

// TestInitOnAMountPoint makes the home a mount point, as a Docker volume or
// a Kubernetes PV is: the home directory can then be neither renamed nor
// reached by a rename from another file system.
func TestInitOnAMountPoint(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root; run the tests as root to cover homes on mount points")
	}
	parent := t.TempDir()
	dir := filepath.Join(parent, "home")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=16m,mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v); homes on mount points are not covered", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	// The mount point is not a rename away from its parent.
	if err := os.Rename(dir, dir+".moved"); err == nil || !errors.Is(err, syscall.EBUSY) {
		_ = os.Rename(dir+".moved", dir)
		t.Fatalf("renaming the mount point: %v, want EBUSY (is it really a mount point?)", err)
	}

	h, err := Init(dir, false)
	if err != nil {
		t.Fatalf("init on a mount point: %v", err)
	}
	oldLog(t, dir)
	if err := os.WriteFile(filepath.Join(dir, "stale"), nil, 0o600); err != nil {
		t.Fatal(err)
	}

	// A forced init that fails half-way leaves the old home on the mount.
	boom := errors.New("injected failure")
	for _, step := range []string{"aside", "swap"} {
		_, err := initHome(dir, true, func(s string) error {
			if s == step {
				return boom
			}
			return nil
		})
		if !errors.Is(err, boom) {
			t.Fatalf("%s: %v, want the injected failure", step, err)
		}
		h2, err := Open(dir)
		if err != nil || h2.PeerID() != h.PeerID() {
			t.Fatalf("after a failure at %s: %v; want the old home intact", step, err)
		}
		if got := entries(t, dir); len(got) != 4 { // audit, config.yaml, keys, stale
			t.Fatalf("after a failure at %s the home holds %v", step, got)
		}
	}

	h3, err := Init(dir, true)
	if err != nil {
		t.Fatalf("init --force on a mount point: %v", err)
	}
	if h3.PeerID() == h.PeerID() {
		t.Fatal("init --force kept the old node key")
	}
	kept(t, dir, h.PeerID().String())
	if _, err := os.Stat(filepath.Join(dir, "stale")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("init --force kept a file of the old home")
	}
	for _, e := range entries(t, dir) {
		if strings.HasPrefix(e, ".parley-") {
			t.Fatalf("init left its working directory %s", e)
		}
	}
	if got := entries(t, parent); len(got) != 1 {
		t.Fatalf("init left %v beside the mount point", got)
	}
}
