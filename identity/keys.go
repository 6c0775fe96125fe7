package identity

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/parleynet/parley/internal/fsync"
)

// ErrKeyPermissions is returned by ReadKeyFile for a key file that group or
// others may access.
var ErrKeyPermissions = errors.New("key file is readable by group or others")

// ErrKeyCorrupt is returned by ReadKeyFile for a key file whose contents are
// not a valid ed25519 private key.
var ErrKeyCorrupt = errors.New("key file is corrupt")

// maxKeyFileSize bounds how much of a key file is read. A marshalled ed25519
// key is 68 bytes; anything much larger is not a key file.
const maxKeyFileSize = 4 << 10

// GenerateKey returns a new ed25519 private key.
func GenerateKey() (crypto.PrivKey, error) {
	priv, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("identity: generate ed25519 key: %w", err)
	}
	return priv, nil
}

// WriteKeyFile writes key to path atomically: it writes a temporary file in
// the same directory, syncs it, sets mode 0600, renames it over path and
// syncs the directory. Missing parent directories are created with mode
// 0700. The contents are crypto.MarshalPrivateKey bytes.
func WriteKeyFile(path string, key crypto.PrivKey) error {
	if key == nil {
		return fmt.Errorf("identity: write key file %s: nil key", path)
	}
	data, err := crypto.MarshalPrivateKey(key)
	if err != nil {
		return fmt.Errorf("identity: write key file %s: marshal key: %w", path, err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("identity: write key file %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("identity: write key file %s: %w", path, err)
	}
	tmpName := tmp.Name()
	renamed := false
	defer func() {
		if !renamed {
			_ = tmp.Close()
			_ = os.Remove(tmpName)
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("identity: write key file %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("identity: write key file %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("identity: write key file %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("identity: write key file %s: %w", path, err)
	}
	if err := os.Rename(tmpName, path); err != nil {
		return fmt.Errorf("identity: write key file %s: %w", path, err)
	}
	renamed = true
	if err := fsync.Dir(dir); err != nil {
		return fmt.Errorf("identity: write key file %s: sync directory: %w", path, err)
	}
	return nil
}

// ReadKeyFile reads an ed25519 private key written by WriteKeyFile.
//
// Like ssh, it refuses a file that group or others may access (any of the
// mode bits 0o077 set), before reading its contents, with an error wrapping
// ErrKeyPermissions. Contents that are not a valid ed25519 key give an error
// wrapping ErrKeyCorrupt; a missing file gives an error wrapping
// fs.ErrNotExist. Every error names path.
func ReadKeyFile(path string) (crypto.PrivKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("identity: read key file: %w", err)
	}
	defer f.Close()

	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("identity: read key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("identity: key file %s: not a regular file: %w", path, ErrKeyCorrupt)
	}
	// Windows has no group/other permission bits worth checking.
	if perm := fi.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return nil, fmt.Errorf("identity: key file %s has permissions %#o: %w; it must be private to its owner: run chmod 600 %s",
			path, perm, ErrKeyPermissions, path)
	}

	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("identity: read key file %s: %w", path, err)
	}
	if len(data) > maxKeyFileSize {
		return nil, fmt.Errorf("identity: key file %s: larger than %d bytes: %w", path, maxKeyFileSize, ErrKeyCorrupt)
	}
	key, err := crypto.UnmarshalPrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("identity: key file %s: %w: %v", path, ErrKeyCorrupt, err)
	}
	if err := checkEd25519PrivKey(key); err != nil {
		return nil, fmt.Errorf("identity: key file %s: %w: %v", path, ErrKeyCorrupt, err)
	}
	return key, nil
}

// checkEd25519PrivKey reports whether key is an ed25519 key whose stored
// public half matches its seed, which catches corruption in either half.
func checkEd25519PrivKey(key crypto.PrivKey) error {
	if key.Type() != crypto.Ed25519 {
		return fmt.Errorf("key type is %s, want Ed25519", key.Type())
	}
	raw, err := key.Raw()
	if err != nil {
		return err
	}
	if len(raw) != ed25519.PrivateKeySize {
		return fmt.Errorf("ed25519 key is %d bytes, want %d", len(raw), ed25519.PrivateKeySize)
	}
	want := ed25519.NewKeyFromSeed(raw[:ed25519.SeedSize])
	if subtle.ConstantTimeCompare(want, raw) != 1 {
		return errors.New("ed25519 public key does not match its seed")
	}
	return nil
}
