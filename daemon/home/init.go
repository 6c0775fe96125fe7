package home

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/internal/fsync"
)

// Init creates a home in dir: a node key, the key of the default agent and
// a commented config.yaml, and returns it opened.
//
// An already initialised home (one with a config.yaml or keys/) is refused
// with ErrExists unless force is set, in which case it is replaced. The new
// home is built in a temporary directory beside dir and renamed into place,
// so a failed Init leaves dir as it was. An existing directory that holds no
// home (say, an empty one) is filled in place, keys first, config.yaml last.
func Init(dir string, force bool) (*Home, error) {
	return initHome(dir, force, nil)
}

// initHome is Init with a hook called after each step, which tests use to
// inject failures. step names are "keys", "config" and "swap".
func initHome(dir string, force bool, hook func(step string) error) (h *Home, err error) {
	if hook == nil {
		hook = func(string) error { return nil }
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("init home %s: %w", dir, err)
	}
	exists, inited := false, false
	switch st, err := os.Stat(abs); {
	case err == nil && !st.IsDir():
		return nil, fmt.Errorf("init home %s: not a directory", dir)
	case err == nil:
		exists = true
		if inited, err = initialised(abs); err != nil {
			return nil, fmt.Errorf("init home %s: %w", dir, err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("init home %s: %w", dir, err)
	}
	if inited && !force {
		return nil, fmt.Errorf("%w: %s (use --force to replace it and its keys)", ErrExists, dir)
	}

	parent := filepath.Dir(abs)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return nil, fmt.Errorf("init home %s: %w", dir, err)
	}
	// Build in a sibling so that the final rename stays on one file system.
	tmp, err := os.MkdirTemp(parent, filepath.Base(abs)+".tmp-")
	if err != nil {
		return nil, fmt.Errorf("init home %s: %w", dir, err)
	}
	defer func() {
		if rerr := os.RemoveAll(tmp); rerr != nil && err == nil {
			log.Warnw("could not remove temporary home", "dir", tmp, "err", rerr)
		}
	}()
	if err := build(tmp, hook); err != nil {
		return nil, fmt.Errorf("init home %s: %w", dir, err)
	}

	switch {
	case !exists:
		if err := os.Rename(tmp, abs); err != nil {
			return nil, fmt.Errorf("init home %s: %w", dir, err)
		}
	case !inited:
		if err := fill(abs, tmp); err != nil {
			return nil, fmt.Errorf("init home %s: %w", dir, err)
		}
	default:
		if err := swap(abs, tmp, hook); err != nil {
			return nil, fmt.Errorf("init home %s: %w", dir, err)
		}
	}
	if err := fsync.Dir(parent); err != nil {
		return nil, fmt.Errorf("init home %s: %w", dir, err)
	}
	return Open(abs)
}

// build writes a complete new home into the empty directory dir.
func build(dir string, hook func(string) error) error {
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	nk, err := identity.GenerateKey()
	if err != nil {
		return err
	}
	if err := identity.WriteKeyFile(nodeKeyPath(dir), nk); err != nil {
		return err
	}
	ak, err := identity.GenerateKey()
	if err != nil {
		return err
	}
	if err := identity.WriteKeyFile(agentKeyPath(dir, DefaultAgent), ak); err != nil {
		return err
	}
	if err := hook("keys"); err != nil {
		return err
	}
	if err := writeFileAtomic(configPath(dir), []byte(defaultConfigYAML), 0o600); err != nil {
		return err
	}
	return hook("config")
}

// fill moves a new home built in tmp into dir, an existing directory that
// holds no home. config.yaml goes last: until it is there, Open sees no
// home, and on failure the keys are taken out again.
func fill(dir, tmp string) error {
	keys := filepath.Join(dir, KeysDir)
	if err := os.Rename(filepath.Join(tmp, KeysDir), keys); err != nil {
		return err
	}
	if err := os.Rename(configPath(tmp), configPath(dir)); err != nil {
		if rerr := os.RemoveAll(keys); rerr != nil {
			return errors.Join(err, fmt.Errorf("remove partial keys: %w", rerr))
		}
		return err
	}
	return os.Chmod(dir, 0o700)
}

// swap replaces the home in dir with the one built in tmp: the old home is
// renamed aside, the new one renamed in, and the old one removed. If the
// new one cannot be put in place the old one is restored.
func swap(dir, tmp string, hook func(string) error) error {
	var suffix [6]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		return err
	}
	old := dir + ".old-" + hex.EncodeToString(suffix[:])
	if err := os.Rename(dir, old); err != nil {
		return fmt.Errorf("move old home aside: %w", err)
	}
	err := hook("swap")
	if err == nil {
		err = os.Rename(tmp, dir)
	}
	if err != nil {
		if rerr := os.Rename(old, dir); rerr != nil {
			return errors.Join(err, fmt.Errorf("restore old home from %s: %w", old, rerr))
		}
		return err
	}
	keepAudit(old, dir)
	if err := os.RemoveAll(old); err != nil {
		log.Warnw("could not remove the replaced home; remove it by hand, it holds old keys", "dir", old, "err", err)
	}
	return nil
}

// keepAudit moves the replaced home's audit log into the new home as
// audit.replaced-<unix time>: a new node key cannot continue the old
// chain, but the record must not vanish with the old keys.
func keepAudit(old, dir string) {
	src := filepath.Join(old, "audit")
	if _, err := os.Stat(src); err != nil {
		return
	}
	dst := filepath.Join(dir, fmt.Sprintf("audit.replaced-%d", time.Now().Unix()))
	if err := os.Rename(src, dst); err != nil {
		log.Warnw("could not keep the replaced home's audit log", "from", src, "err", err)
		return
	}
	log.Warnw("kept the replaced home's audit log; it was signed by the old node key", "dir", dst)
}

// writeFileAtomic writes data to path through a synced temporary file in
// the same directory, renamed into place.
func writeFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	return fsync.Dir(dir)
}
