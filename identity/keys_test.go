package identity

import (
	"crypto/rand"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
)

func TestKeyFileRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	path := filepath.Join(dir, "agent.key")
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteKeyFile(path, key); err != nil {
		t.Fatal(err)
	}
	got, err := ReadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equals(key) {
		t.Fatal("read key differs from written key")
	}
	if runtime.GOOS == "windows" {
		return
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("key file mode = %#o, want 0600", perm)
	}
	di, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := di.Mode().Perm(); perm&0o077 != 0 {
		t.Errorf("created directory mode = %#o, want no group/other bits", perm)
	}

	// Overwrite with another key: still atomic, no temp files left.
	key2, _ := GenerateKey()
	if err := WriteKeyFile(path, key2); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "agent.key" {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("directory holds %v, want only agent.key", names)
	}
	if got, err := ReadKeyFile(path); err != nil || !got.Equals(key2) {
		t.Fatalf("after overwrite: %v", err)
	}
}

func TestReadKeyFilePermissions(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no unix permissions")
	}
	path := filepath.Join(t.TempDir(), "agent.key")
	key, _ := GenerateKey()
	if err := WriteKeyFile(path, key); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o601, 0o660} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		_, err := ReadKeyFile(path)
		if !errors.Is(err, ErrKeyPermissions) {
			t.Fatalf("mode %#o: error = %v, want ErrKeyPermissions", mode, err)
		}
		msg := err.Error()
		if !strings.Contains(msg, path) || !strings.Contains(msg, "chmod 600") {
			t.Errorf("mode %#o: error %q should name the path and say chmod 600", mode, msg)
		}
	}
	if err := os.Chmod(path, 0o400); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadKeyFile(path); err != nil {
		t.Fatalf("mode 0400: %v", err)
	}
}

func TestReadKeyFileBad(t *testing.T) {
	key, _ := GenerateKey()
	good, err := crypto.MarshalPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	secp, _, _ := crypto.GenerateSecp256k1Key(rand.Reader)
	secpBytes, _ := crypto.MarshalPrivateKey(secp)
	flipped := append([]byte(nil), good...)
	flipped[len(flipped)-1] ^= 1 // public half no longer matches the seed
	seedFlipped := append([]byte(nil), good...)
	seedFlipped[len(seedFlipped)-40] ^= 1

	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"garbage", []byte("this is not a key\n")},
		{"truncated", good[:len(good)-5]},
		{"one byte short", good[:len(good)-1]},
		{"trailing byte", append(append([]byte(nil), good...), 0)},
		{"secp256k1", secpBytes},
		{"public half flipped", flipped},
		{"seed flipped", seedFlipped},
		{"huge", make([]byte, 1<<20)},
	}
	dir := t.TempDir()
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.name+".key")
			if err := os.WriteFile(path, tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := ReadKeyFile(path)
			if !errors.Is(err, ErrKeyCorrupt) {
				t.Fatalf("case %d: error = %v, want ErrKeyCorrupt", i, err)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the path", err)
			}
		})
	}

	t.Run("missing", func(t *testing.T) {
		path := filepath.Join(dir, "missing.key")
		_, err := ReadKeyFile(path)
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("error = %v, want fs.ErrNotExist", err)
		}
		if !strings.Contains(err.Error(), path) {
			t.Errorf("error %q does not name the path", err)
		}
	})
	t.Run("directory", func(t *testing.T) {
		path := filepath.Join(dir, "subdir")
		if err := os.Mkdir(path, 0o700); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadKeyFile(path); !errors.Is(err, ErrKeyCorrupt) {
			t.Fatalf("error = %v, want ErrKeyCorrupt", err)
		}
	})
}

func TestWriteKeyFileErrors(t *testing.T) {
	if err := WriteKeyFile(filepath.Join(t.TempDir(), "k"), nil); err == nil {
		t.Fatal("nil key: no error")
	}
	// Parent is a file: cannot create the directory. No temp file is left.
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	key, _ := GenerateKey()
	if err := WriteKeyFile(filepath.Join(file, "agent.key"), key); err == nil {
		t.Fatal("parent is a file: no error")
	}
	// Target is a directory: rename fails, the temp file is removed.
	target := filepath.Join(dir, "target")
	if err := os.MkdirAll(filepath.Join(target, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := WriteKeyFile(target, key); err == nil {
		t.Fatal("target is a non-empty directory: no error")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("directory holds %d entries, want 2 (no temp file left)", len(entries))
	}
}
