package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parleynet/parley/audit"
	"github.com/parleynet/parley/daemon/home"
	"github.com/parleynet/parley/identity"
)

// auditHome makes a home with a node key and an audit log of n records;
// closing the log adds a checkpoint record.
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
	writeAuditLog(t, filepath.Join(dir, home.AuditDir), key, n, audit.Options{})
	return dir
}

// writeAuditLog writes n records to the log in dir with key, and closes it.
func writeAuditLog(t *testing.T, dir string, key crypto.PrivKey, n int, opts audit.Options) {
	t.Helper()
	l, err := audit.Open(dir, key, opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if _, err := l.Append(audit.Record{Kind: audit.KindAward, Task: "t1", Agent: "a1", Rationale: "best price\n\x1b[31mred"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
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
	if err != nil || !strings.HasPrefix(out, "audit log intact: 4 records in 1 file (first ") ||
		!strings.Contains(out, "\ncheckpoint: 4 records, signed ") || !strings.Contains(out, "(checkpoint.json); the log reaches it") ||
		!strings.Contains(out, "\nkey: this home's node key (12D3") {
		t.Fatalf("verify: %q, %v", out, err)
	}

	// A torn tail is a note, not a failure.
	file := filepath.Join(dir, home.AuditDir, "audit-000001.jsonl")
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString(`{"seq":5,"ti`)
	_ = f.Close()
	out, err = runAudit(t, dir, "verify")
	if err != nil || !strings.Contains(out, "4 records") || !strings.Contains(out, "note: the log ends in an unfinished commit group (0 complete records and a record cut short)") {
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
	if err := os.RemoveAll(filepath.Join(noLog, home.AuditDir)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, home, want string
	}{
		{"no home", t.TempDir(), "needs the node key"},
		{"no audit dir", noLog, "no audit log in " + filepath.Join(noLog, home.AuditDir)},
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
	// Record 6 is the checkpoint closing the log wrote.
	if len(ls) != 3 || !strings.HasPrefix(ls[0], "TIME") || !strings.Contains(ls[1], " 5 ") || !strings.Contains(ls[2], " 6 ") || !strings.Contains(ls[2], " checkpoint ") {
		t.Fatalf("tail -n 2:\n%s", out)
	}
	if strings.Contains(out, "\x1b") || !strings.Contains(ls[1], "best price  [31mred") {
		t.Fatalf("tail printed control characters or lost the rationale:\n%q", out)
	}

	out, err = runAudit(t, dir, "tail", "--json")
	if err != nil {
		t.Fatal(err)
	}
	ls = strings.Split(strings.TrimSpace(out), "\n")
	if len(ls) != 6 {
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

func TestAuditVerifyTruncated(t *testing.T) {
	dir := auditHome(t, 5)
	file := filepath.Join(dir, home.AuditDir, "audit-000001.jsonl")
	b, _ := os.ReadFile(file)
	ls := bytes.SplitAfter(b, []byte("\n"))
	if err := os.WriteFile(file, bytes.Join(ls[:4], nil), 0o600); err != nil { // records 5 and 6 cut off
		t.Fatal(err)
	}
	_, err := runAudit(t, dir, "verify")
	if err == nil || !strings.Contains(err.Error(), "audit log: audit-000001.jsonl (seq 5): records missing at the end") ||
		!strings.Contains(err.Error(), "records 5-6 were cut off") || !errors.Is(err, audit.ErrTruncated) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("verify of a truncated log: %v", err)
	}
}

// TestAuditVerifyDir checks a log directory other than the home's, as
// 'init --force' keeps one: with its node.pub, --pubkey or the home's key.
func TestAuditVerifyDir(t *testing.T) {
	h := auditHome(t, 1) // the home: its own key and log
	oldKey, err := identity.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	oldID, _ := peer.IDFromPrivateKey(oldKey)
	otherKey, _ := identity.GenerateKey()
	otherID, _ := peer.IDFromPrivateKey(otherKey)
	kept := filepath.Join(h, "audit.replaced-1767225600")
	writeAuditLog(t, kept, oldKey, 4, audit.Options{})
	noPub := filepath.Join(h, "audit.copy")
	writeAuditLog(t, noPub, oldKey, 2, audit.Options{})
	writePub := func(s string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(kept, nodePubFile), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	for _, tc := range []struct {
		name    string
		nodePub string // written to kept/node.pub first; "" removes it
		args    []string
		out     string // what a success prints
		err     string // what a failure says, in one line
	}{
		{"node.pub", oldID.String() + "\n", []string{"--dir", kept}, "key: node " + oldID.String() + " from " + filepath.Join(kept, nodePubFile), ""},
		{"--pubkey", "", []string{"--dir", noPub, "--pubkey", oldID.String()}, "key: --pubkey " + oldID.String(), ""},
		{"--pubkey wins over node.pub", otherID.String(), []string{"--dir", kept, "--pubkey", oldID.String()}, "audit log intact: 5 records", ""},
		{"no node.pub: the home's key", "", []string{"--dir", noPub}, "",
			"audit log in " + noPub + " is not signed by this home's node key (12D3"},
		{"node.pub of another node", otherID.String(), []string{"--dir", kept}, "",
			"is not signed by node " + otherID.String() + " from " + filepath.Join(kept, nodePubFile) + ": audit-000001.jsonl:"},
		{"node.pub not a PeerID", "hello", []string{"--dir", kept}, "", filepath.Join(kept, nodePubFile) + ": not a PeerID"},
		{"--pubkey not a PeerID", "", []string{"--dir", noPub, "--pubkey", "nope"}, "", `--pubkey "nope": not a PeerID`},
		{"--pubkey without a key inside", "", []string{"--dir", noPub, "--pubkey", "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"}, "",
			"the PeerID does not embed its public key"},
		{"--pubkey of another node", "", []string{"--dir", noPub, "--pubkey", otherID.String()}, "", "is not signed by --pubkey " + otherID.String()},
		{"missing dir", "", []string{"--dir", filepath.Join(h, "nope")}, "", "--dir " + filepath.Join(h, "nope") + ": no such directory"},
		{"dir without a log", "", []string{"--dir", t.TempDir(), "--pubkey", oldID.String()}, "", "no audit log in "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_ = os.Remove(filepath.Join(kept, nodePubFile))
			if tc.nodePub != "" {
				writePub(tc.nodePub)
			}
			out, err := runAudit(t, h, append([]string{"verify"}, tc.args...)...)
			if tc.err == "" {
				if err != nil || !strings.Contains(out, tc.out) || !strings.HasPrefix(out, "audit log intact: ") {
					t.Fatalf("verify %v: %q, %v; want …%s", tc.args, out, err, tc.out)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("verify %v: %v; want one line with …%s", tc.args, err, tc.err)
			}
		})
	}
}

func TestAuditPrune(t *testing.T) {
	h := t.TempDir()
	key, _ := identity.GenerateKey()
	if err := identity.WriteKeyFile(filepath.Join(h, home.KeysDir, home.NodeKey), key); err != nil {
		t.Fatal(err)
	}
	writeAuditLog(t, filepath.Join(h, home.AuditDir), key, 60, audit.Options{MaxFileSize: 2048})

	for _, tc := range []struct {
		args []string
		err  string
	}{
		{nil, "say what to keep"},
		{[]string{"--keep-files", "-2"}, "--keep-files -2"},
		{[]string{"--before", "yesterday"}, `--before "yesterday": want a date`},
		{[]string{"--keep-files", "1", "--dir", filepath.Join(h, "nope")}, "no such directory"},
	} {
		if _, err := runAudit(t, h, append([]string{"prune"}, tc.args...)...); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("prune %v: %v, want …%s", tc.args, err, tc.err)
		}
	}

	out, err := runAudit(t, h, "prune", "--keep-files", "2")
	if err != nil || !strings.HasPrefix(out, "pruned ") || !strings.Contains(out, "audit log intact: ") || !strings.Contains(out, "\npruned: records 1-") {
		t.Fatalf("prune --keep-files 2: %q, %v", out, err)
	}
	out, err = runAudit(t, h, "verify")
	if err != nil || !strings.Contains(out, "in 2 files") || !strings.Contains(out, "\npruned: records 1-") || !strings.Contains(out, "through anchor.json") {
		t.Fatalf("verify after prune: %q, %v", out, err)
	}
	out, err = runAudit(t, h, "prune", "--before", "2000-01-01")
	if err != nil || !strings.HasPrefix(out, "nothing to prune") {
		t.Fatalf("prune --before 2000-01-01: %q, %v", out, err)
	}
	// A log that does not verify is left alone.
	matches, _ := filepath.Glob(filepath.Join(h, home.AuditDir, "audit-*.jsonl"))
	file := matches[0]
	b, _ := os.ReadFile(file)
	_ = os.WriteFile(file, bytes.Replace(b, []byte("best"), []byte("beat"), 1), 0o600)
	if _, err := runAudit(t, h, "prune", "--keep-files", "1"); err == nil || !strings.HasPrefix(err.Error(), "nothing was pruned: audit log: audit-") {
		t.Fatalf("prune of a tampered log: %v", err)
	}
}
