package home

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/internal/fsync"
)

// Names of Init's working directories inside a home. A home directory may
// be a mount point (a Docker volume, a Kubernetes PV): it can be neither
// renamed nor reached by a rename from outside its file system, so Init
// works inside it.
const (
	stagePrefix = ".parley-init-" // the new home, built before it is moved in
	oldPrefix   = ".parley-old-"  // the replaced home, until it is removed
)

// NodePubFile is the file, in a kept audit log's directory, that holds the
// PeerID of the node key that signed that log.
const NodePubFile = "node.pub"

// Init creates a home in dir: a node key, the key of the default agent and
// a commented config.yaml, and returns it opened.
//
// An already initialised home (one with a config.yaml or keys/) is refused
// with ErrExists unless force is set, in which case it is replaced: its
// files are removed, except its audit log, which is kept as
// audit.replaced-<unix time> with the old node's PeerID in node.pub. An
// existing directory that holds no home (say, an empty one) is filled in
// place.
//
// Init builds the new home in a directory inside dir and moves it in with
// renames that never cross a file system, so dir may be a mount point. It
// moves config.yaml last (until it is there, Open sees no home). A failed
// Init leaves dir as it was: the old home intact, or nothing at all.
func Init(dir string, force bool) (*Home, error) {
	return initHome(dir, force, nil)
}

// initHome is Init with a hook called after each step, which tests use to
// inject failures. The steps are "keys" and "config" (the new home is
// built), "aside" (a replaced home's files are moved aside) and "swap"
// (the new keys are in place, config.yaml is next).
func initHome(dir string, force bool, hook func(step string) error) (h *Home, err error) {
	if hook == nil {
		hook = func(string) error { return nil }
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("init home %s: %w", dir, err)
	}
	fail := func(err error) (*Home, error) { return nil, fmt.Errorf("init home %s: %w", dir, err) }
	exists, inited := false, false
	switch st, err := os.Stat(abs); {
	case err == nil && !st.IsDir():
		return fail(errors.New("not a directory"))
	case err == nil:
		exists = true
		if inited, err = initialised(abs); err != nil {
			return fail(err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return fail(err)
	}
	if inited && !force {
		return nil, fmt.Errorf("%w: %s (use --force to replace it and its keys)", ErrExists, dir)
	}

	if !exists {
		var created string
		if created, err = mkdirAll(abs); err != nil {
			return fail(err)
		}
		defer func() {
			if err != nil && created != "" {
				_ = os.RemoveAll(created)
			}
		}()
	}
	removeStale(abs)
	stage, err := os.MkdirTemp(abs, stagePrefix)
	if err != nil {
		return fail(err)
	}
	defer func() {
		if rerr := os.RemoveAll(stage); rerr != nil && err == nil {
			log.Warnw("could not remove the staging directory of init", "dir", stage, "err", rerr)
		}
	}()
	if err := build(stage, hook); err != nil {
		return fail(err)
	}
	if inited {
		err = replace(abs, stage, hook)
	} else {
		err = install(abs, stage, hook)
	}
	if err != nil {
		return fail(err)
	}
	if err := os.Chmod(abs, 0o700); err != nil {
		return fail(err)
	}
	if err := fsync.Dir(abs); err != nil {
		return fail(err)
	}
	return Open(abs)
}

// mkdirAll creates dir and any missing parents with mode 0700 and returns
// the topmost directory it created.
func mkdirAll(dir string) (created string, err error) {
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		created = d
		if filepath.Dir(d) == d {
			break
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	if err := fsync.Dir(filepath.Dir(created)); err != nil {
		_ = os.RemoveAll(created)
		return "", err
	}
	return created, nil
}

// removeStale removes the staging directories of Inits that died: they
// hold only keys that were never used.
func removeStale(dir string) {
	stale, _ := filepath.Glob(filepath.Join(dir, stagePrefix+"*"))
	for _, s := range stale {
		if err := os.RemoveAll(s); err != nil {
			log.Warnw("could not remove the staging directory of an earlier init", "dir", s, "err", err)
		}
	}
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

// install moves the new home built in stage into dir, which holds no home:
// keys first, config.yaml last. On failure the keys are taken out again.
func install(dir, stage string, hook func(string) error) error {
	keys := filepath.Join(dir, KeysDir)
	if err := os.Rename(filepath.Join(stage, KeysDir), keys); err != nil {
		return err
	}
	err := hook("swap")
	if err == nil {
		err = os.Rename(configPath(stage), configPath(dir))
	}
	if err != nil {
		if rerr := os.RemoveAll(keys); rerr != nil {
			return errors.Join(err, fmt.Errorf("remove partial keys: %w", rerr))
		}
		return err
	}
	return nil
}

// replace replaces the home in dir with the one built in stage: the old
// home's files are moved aside into a directory inside dir (config.yaml
// first), the new home is installed, the old audit logs are kept and the
// rest of the old home is removed. If the new home cannot be put in place
// the old one is moved back.
func replace(dir, stage string, hook func(string) error) error {
	oldPeer, perr := oldPeerID(dir)
	aside, err := os.MkdirTemp(dir, oldPrefix)
	if err != nil {
		return err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		_ = os.Remove(aside)
		return err
	}
	var names []string
	for _, e := range entries {
		if n := e.Name(); !strings.HasPrefix(n, stagePrefix) && !strings.HasPrefix(n, oldPrefix) {
			names = append(names, n)
		}
	}
	// config.yaml goes first: from then on no half-replaced home opens.
	slices.SortStableFunc(names, func(a, b string) int {
		switch {
		case a == ConfigFile:
			return -1
		case b == ConfigFile:
			return 1
		}
		return 0
	})
	var moved []string
	restore := func(cause error) error {
		var errs []error
		for i := len(moved) - 1; i >= 0; i-- {
			if err := os.Rename(filepath.Join(aside, moved[i]), filepath.Join(dir, moved[i])); err != nil {
				errs = append(errs, err)
			}
		}
		if len(errs) > 0 {
			return errors.Join(cause, fmt.Errorf("restore the old home from %s: %w", aside, errors.Join(errs...)))
		}
		_ = os.Remove(aside)
		return cause
	}
	for _, n := range names {
		if err := os.Rename(filepath.Join(dir, n), filepath.Join(aside, n)); err != nil {
			return restore(fmt.Errorf("move old home aside: %w", err))
		}
		moved = append(moved, n)
	}
	if err := hook("aside"); err != nil {
		return restore(err)
	}
	if err := install(dir, stage, hook); err != nil {
		return restore(err)
	}
	if perr != nil {
		log.Warnw("could not read the replaced home's node key; its kept audit log gets no node.pub", "err", perr)
	}
	keepAudit(aside, dir, oldPeer)
	if err := os.RemoveAll(aside); err != nil {
		log.Warnw("could not remove the replaced home; remove it by hand, it holds old keys", "dir", aside, "err", err)
	}
	return nil
}

// oldPeerID reads the PeerID of the home's node key in dir.
func oldPeerID(dir string) (peer.ID, error) {
	k, err := identity.ReadKeyFile(nodeKeyPath(dir))
	if err != nil {
		return "", err
	}
	return peer.IDFromPrivateKey(k)
}

// keepAudit moves the replaced home's audit log into the new home as
// audit.replaced-<unix time>, with node.pub naming the old node: a new
// node key cannot continue the old chain, but the record must not vanish
// with the old keys, and it can only be verified against the old key.
// Logs kept by earlier replacements are kept too.
func keepAudit(old, dir string, oldPeer peer.ID) {
	earlier, _ := filepath.Glob(filepath.Join(old, "audit.replaced-*"))
	for _, e := range earlier {
		if err := os.Rename(e, filepath.Join(dir, filepath.Base(e))); err != nil {
			log.Warnw("could not keep an earlier replaced audit log", "from", e, "err", err)
		}
	}
	src := filepath.Join(old, AuditDir)
	if _, err := os.Stat(src); err != nil {
		return
	}
	dst := filepath.Join(dir, fmt.Sprintf("audit.replaced-%d", time.Now().Unix()))
	for i := 1; ; i++ { // two replacements within a second
		if _, err := os.Lstat(dst); errors.Is(err, fs.ErrNotExist) {
			break
		}
		dst = filepath.Join(dir, fmt.Sprintf("audit.replaced-%d.%d", time.Now().Unix(), i))
	}
	if err := os.Rename(src, dst); err != nil {
		log.Warnw("could not keep the replaced home's audit log", "from", src, "err", err)
		return
	}
	if oldPeer != "" {
		if err := writeFileAtomic(filepath.Join(dst, NodePubFile), []byte(oldPeer.String()+"\n"), 0o600); err != nil {
			log.Warnw("could not record the replaced node's PeerID beside its audit log", "dir", dst, "err", err)
		}
	}
	log.Warnw("kept the replaced home's audit log; it was signed by the old node key", "dir", dst, "node", oldPeer)
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
