package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parleynet/parley/audit"
	"github.com/parleynet/parley/daemon/home"
	"github.com/parleynet/parley/identity"
)

// auditHome makes a home with a node key and an audit log of n records.
func auditHome(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	key, err := identity.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := identity.WriteKeyFile(filepath.Join(dir, home.KeysDir, home.NodeKey), key); err != nil {
		t.Fatal(err)
	}
	l, err := audit.Open(filepath.Join(dir, auditDirName), key, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := 0; i < n; i++ {
		if _, err := l.Append(audit.Record{Kind: audit.KindAward, Task: "t1", Agent: "a1", Rationale: "best price\n\x1b[31mred"}); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// runAudit runs `parley audit args…` for the home dir in process.
func runAudit(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	c := &cli{home: dir, out: &out}
	cmd := c.auditCmd()
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.Execute()
	return out.String(), err
}

func TestAuditVerify(t *testing.T) {
	dir := auditHome(t, 3)
	out, err := runAudit(t, dir, "verify")
	if err != nil || !strings.HasPrefix(out, "audit log intact: 3 records in 1 file (first ") {
		t.Fatalf("verify: %q, %v", out, err)
	}

	// A torn tail is a note, not a failure.
	file := filepath.Join(dir, auditDirName, "audit-000001.jsonl")
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString(`{"seq":4,"ti`)
	_ = f.Close()
	out, err = runAudit(t, dir, "verify")
	if err != nil || !strings.Contains(out, "3 records") || !strings.Contains(out, "note: the log ends in a record cut short") {
		t.Fatalf("verify with a torn tail: %q, %v", out, err)
	}

	// An edited record is named, in one line.
	b, _ := os.ReadFile(file)
	if err := os.WriteFile(file, bytes.Replace(b, []byte(`"seq":2,`), []byte(`"seq":2, `), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = runAudit(t, dir, "verify")
	if err == nil || !strings.HasPrefix(err.Error(), "audit log: audit-000001.jsonl:2 (seq 2): malformed audit record") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("verify of an edited log: %v", err)
	}
}

func TestAuditVerifyErrors(t *testing.T) {
	noLog := auditHome(t, 0)
	if err := os.RemoveAll(filepath.Join(noLog, auditDirName)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, home, want string
	}{
		{"no home", t.TempDir(), "needs the node key"},
		{"no audit dir", noLog, "no audit log in " + filepath.Join(noLog, auditDirName)},
	} {
		if _, err := runAudit(t, tc.home, "verify"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want …%s", tc.name, err, tc.want)
		}
	}
}

func TestAuditTail(t *testing.T) {
	dir := auditHome(t, 5)
	out, err := runAudit(t, dir, "tail", "-n", "2")
	if err != nil {
		t.Fatal(err)
	}
	ls := strings.Split(strings.TrimSpace(out), "\n")
	if len(ls) != 3 || !strings.HasPrefix(ls[0], "TIME") || !strings.Contains(ls[1], " 4 ") || !strings.Contains(ls[2], " 5 ") {
		t.Fatalf("tail -n 2:\n%s", out)
	}
	if strings.Contains(out, "\x1b") || !strings.Contains(ls[2], "best price  [31mred") {
		t.Fatalf("tail printed control characters or lost the rationale:\n%q", out)
	}

	out, err = runAudit(t, dir, "tail", "--json")
	if err != nil {
		t.Fatal(err)
	}
	ls = strings.Split(strings.TrimSpace(out), "\n")
	if len(ls) != 5 {
		t.Fatalf("tail --json: %d lines", len(ls))
	}
	var r audit.Record
	if err := json.Unmarshal([]byte(ls[4]), &r); err != nil || r.Seq != 5 || r.Kind != audit.KindAward {
		t.Fatalf("tail --json last line %s: %v", ls[4], err)
	}

	if _, err := runAudit(t, dir, "tail", "-n", "0"); err == nil {
		t.Fatal("tail -n 0 accepted")
	}
}
