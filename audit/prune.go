package audit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/parleynet/parley/internal/fsync"
)

// PruneOptions say which old files Prune may remove. A file is kept if
// either option keeps it; at least one must be set.
type PruneOptions struct {
	// KeepFiles, if positive, keeps the newest KeepFiles files.
	KeepFiles int
	// Before, if set, keeps every file whose last record is at or after
	// it: only files entirely older are removed.
	Before time.Time
}

// PruneReport says what Prune did.
type PruneReport struct {
	// Files is the number of files removed, leftovers of an interrupted
	// earlier Prune included.
	Files int
	// Records is the number of records removed by this Prune.
	Records uint64
	// FirstFile is the number of the first file kept.
	FirstFile int
	// Pruned is the number of records removed by every Prune so far: the
	// kept log starts at seq Pruned+1.
	Pruned uint64
	// Verified is the report of the verification Prune did first, before
	// removing anything.
	Verified Report
}

// ErrNoCheckpoint is returned by Prune for a log without SidecarFile: with
// nothing signed to prove them against, the records kept after a cut could
// not be verified. Opening the log with this package writes one.
var ErrNoCheckpoint = errors.New("audit log has no checkpoint")

// Prune removes the oldest files of the log in dir, as opts allow, and
// keeps in AnchorFile what Verify needs to prove the records kept against
// the latest signed checkpoint: the seq, line hash and Merkle tree
// frontier at the cut.
//
// Prune first verifies the whole log with pub and removes nothing from a
// log that fails. It never removes the last file, nor a file with records
// beyond SidecarFile's checkpoint (their proof would rest on the anchor
// alone). It writes the anchor durably before removing anything, and
// removes files oldest first, so that a crash at any point leaves a log
// that verifies; files left below the anchor's cut are reported by Verify
// as stale and removed by the next Prune.
//
// Prune may run while a Log appends to dir; two Prunes of one dir exclude
// each other (ErrLocked). Verify run at the same time may fail on a file
// that vanished; run it again.
func Prune(dir string, pub crypto.PubKey, opts PruneOptions) (PruneReport, error) {
	switch {
	case pub == nil:
		return PruneReport{}, fmt.Errorf("audit: prune %s: nil public key", dir)
	case opts.KeepFiles < 0:
		return PruneReport{}, fmt.Errorf("audit: prune %s: KeepFiles is %d; want 0 (unset) or more", dir, opts.KeepFiles)
	case opts.KeepFiles == 0 && opts.Before.IsZero():
		return PruneReport{}, fmt.Errorf("audit: prune %s: say which files to keep: KeepFiles, Before or both", dir)
	}
	if _, err := logFiles(dir); err != nil {
		return PruneReport{}, err
	}
	lock, err := lockDir(dir, pruneLock)
	if err != nil {
		return PruneReport{}, fmt.Errorf("audit: prune %s: %w", dir, err)
	}
	defer lock.Close()

	var ends []fileEnd
	v, err := verifyLog(dir, pub, func(e fileEnd) { ends = append(ends, e) })
	if err != nil {
		return PruneReport{}, fmt.Errorf("audit: prune %s: the log does not verify, so nothing was removed: %w", dir, err)
	}
	rep := PruneReport{Verified: v.rep, FirstFile: ends[0].index, Pruned: v.rep.Pruned}
	if v.sc == nil {
		return rep, fmt.Errorf("audit: prune %s: %w: open it with this version of parley once (it writes %s), then prune", dir, ErrNoCheckpoint, SidecarFile)
	}

	cut := -1 // position in ends of the last file to remove
	for i, e := range ends[:len(ends)-1] {
		keep := (opts.KeepFiles > 0 && i >= len(ends)-opts.KeepFiles) ||
			(!opts.Before.IsZero() && !e.lastTime.Before(opts.Before)) ||
			e.seq > v.sc.Size || e.seq == 0
		if keep {
			break
		}
		cut = i
	}
	first := ends[0].index
	if cut >= 0 {
		e := ends[cut]
		a := anchor{
			FirstFile: e.index + 1,
			Size:      e.seq,
			Last:      e.prev,
			LastTime:  e.lastTime.UTC().Format(time.RFC3339Nano),
			Frontier:  e.tree.hexes(),
		}
		if err := writeJSONFile(dir, AnchorFile, a); err != nil {
			return rep, fmt.Errorf("audit: prune %s: write %s: %w", dir, AnchorFile, err)
		}
		first = a.FirstFile
		rep.Records = e.seq - v.rep.Pruned
		rep.FirstFile, rep.Pruned = first, e.seq
	}

	// Oldest first, so that an interruption leaves a contiguous log.
	all, err := listFiles(dir)
	if err != nil {
		return rep, fmt.Errorf("audit: prune %s: %w", dir, err)
	}
	for _, idx := range all {
		if idx >= first {
			break
		}
		if err := os.Remove(filepath.Join(dir, fileName(idx))); err != nil {
			return rep, fmt.Errorf("audit: prune %s: remove %s: %w", dir, fileName(idx), err)
		}
		rep.Files++
	}
	if rep.Files > 0 {
		if err := fsync.Dir(dir); err != nil {
			return rep, fmt.Errorf("audit: prune %s: sync directory: %w", dir, err)
		}
	}
	return rep, nil
}
