package home

import (
	"os"
	"path/filepath"
	"testing"
)

func TestInitForceKeepsTheOldAuditLog(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "home")
	if _, err := Init(dir, false); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "audit"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "audit", "audit-000001.jsonl"), []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Init(dir, true); err != nil {
		t.Fatal(err)
	}
	kept, _ := filepath.Glob(filepath.Join(dir, "audit.replaced-*", "audit-000001.jsonl"))
	if len(kept) != 1 {
		t.Fatalf("the old audit log was not kept in the new home: %v", kept)
	}
	if _, err := os.Stat(filepath.Join(dir, "audit")); !os.IsNotExist(err) {
		t.Errorf("the new home has an audit dir from the old key: %v", err)
	}
}
