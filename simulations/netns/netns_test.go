// Package netns tests parley across separate network hosts: real daemons,
// each in its own network namespace, joined by a bridge (run.sh says what
// it checks) or behind NAT routers (nat.sh). It needs root and iproute2
// (and for nat.sh nftables and python3) and skips, saying why, where they
// are missing.
package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// skipExit is the scripts' exit status when they cannot run here.
const skipExit = 77

// TestSeparateHosts runs run.sh: daemons on one bridge, found by mDNS, by
// bootstrap chains and from peers.json.
func TestSeparateHosts(t *testing.T) {
	runScript(t, "run.sh", 4*time.Minute)
}

// TestNAT runs nat.sh: daemons behind NAT routers, reachable through a
// relay, negotiating across it and punching holes where the NATs allow. It
// needs nftables (nft) and python3 as well.
func TestNAT(t *testing.T) {
	runScript(t, "nat.sh", 3*time.Minute)
}

// runScript builds parley and runs script with it, as root, failing the
// test if the script fails (its FAIL lines say which check) or does not
// finish within timeout (it takes well under a minute when it passes), and
// skipping it where the script exits with skipExit.
func runScript(t *testing.T, script string, timeout time.Duration) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts daemons in network namespaces")
	}
	canMakeNamespaces(t)
	bin := filepath.Join(t.TempDir(), "parley")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/parley").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	prefix := fmt.Sprintf("parley-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
	t.Cleanup(func() {
		// The script removes what it made even on failure; a namespace
		// left behind (the script itself killed) is removed here and is a
		// failure.
		for _, ns := range namespaces(t, prefix) {
			t.Errorf("%s left namespace %s behind", script, ns)
			_ = exec.Command("ip", "netns", "del", ns).Run()
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", script, bin)
	cmd.Env = append(os.Environ(), "PARLEY_NETNS_PREFIX="+prefix, "TMPDIR="+t.TempDir())
	// On timeout the script gets SIGTERM, so its trap stops its daemons
	// and removes its namespaces, and then a while to do it.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	t.Logf("%s (%s):\n%s", script, time.Since(start).Round(time.Second), out.String())
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.ExitCode() == skipExit:
		t.Skipf("%s skipped: %s", script, strings.TrimSpace(out.String()))
	case ctx.Err() != nil:
		t.Fatalf("%s did not finish within %s", script, timeout)
	default:
		t.Fatalf("%s: %v (its FAIL lines say which check)", script, err)
	}
}

// canMakeNamespaces skips the test unless this process is root and can
// list, make and remove a network namespace.
func canMakeNamespaces(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to make network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2 (ip)")
	}
	if out, err := exec.Command("ip", "netns", "list").CombinedOutput(); err != nil {
		t.Skipf("'ip netns list' fails here: %v %s", err, bytes.TrimSpace(out))
	}
	probe := fmt.Sprintf("parley-probe-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", probe).CombinedOutput(); err != nil {
		t.Skipf("cannot make a network namespace here: %v %s", err, bytes.TrimSpace(out))
	}
	if out, err := exec.Command("ip", "netns", "del", probe).CombinedOutput(); err != nil {
		t.Fatalf("made namespace %s but cannot remove it: %v %s", probe, err, bytes.TrimSpace(out))
	}
}

// namespaces lists the network namespaces whose names start with prefix.
func namespaces(t *testing.T, prefix string) []string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Errorf("ip netns list: %v", err)
		return nil
	}
	var found []string
	for _, line := range strings.Split(string(out), "\n") {
		// Lines are "name" or "name (id: 3)".
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], prefix+"-") {
			found = append(found, f[0])
		}
	}
	return found
}
