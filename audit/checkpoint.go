package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/parleynet/parley/internal/fsync"
)

// File names besides the numbered audit files.
const (
	// SidecarFile holds the latest signed checkpoint (tree head).
	SidecarFile = "checkpoint.json"
	// AnchorFile holds what Prune keeps of the records it removed.
	AnchorFile = "anchor.json"

	// checkpointStatement heads the bytes a checkpoint's signature covers.
	checkpointStatement = "parley audit checkpoint v1\n"
	// maxSmallFile bounds what is read of the sidecar or the anchor: a
	// frontier has at most 64 hashes, so a few KiB is plenty.
	maxSmallFile = 64 << 10
)

// Checkpoint is a signed tree head: the node key's statement that the log's
// first Size records have the RFC 6962 Merkle tree hash Root.
type Checkpoint struct {
	// Size is the number of records covered: seqs 1 … Size.
	Size uint64
	// Root is the tree hash of those records' lines.
	Root tlog.Hash
	// Time is when the checkpoint was made.
	Time time.Time
	// Sidecar is true for the checkpoint of SidecarFile, false for a
	// checkpoint record in the log.
	Sidecar bool
}

// sidecar is SidecarFile: a signed tree head plus unsigned hints that let
// Open resume without rereading the log. Verify ignores the hints.
type sidecar struct {
	Size uint64 `json:"size"`
	Root string `json:"root"` // lowercase hex tree hash of records 1 … Size
	Last string `json:"last"` // lowercase hex SHA-256 of record Size's line; "" for Size 0
	Time string `json:"time"` // RFC 3339, UTC; signed as written
	Sig  []byte `json:"sig"`  // over statement()

	File     int      `json:"file"`     // hint: the file holding record Size
	Offset   int64    `json:"offset"`   // hint: where record Size's line starts in File
	Frontier []string `json:"frontier"` // hint: the tree's frontier at Size
}

// statement is what a sidecar's signature covers.
func (s *sidecar) statement() []byte {
	var b bytes.Buffer
	b.WriteString(checkpointStatement)
	fmt.Fprintf(&b, "size %d\nroot %s\nlast %s\ntime %s\n", s.Size, s.Root, s.Last, s.Time)
	return b.Bytes()
}

func (s *sidecar) checkpoint() Checkpoint {
	root, _ := parseHexHash(s.Root) // checked by readSidecar
	t, _ := time.Parse(time.RFC3339Nano, s.Time)
	return Checkpoint{Size: s.Size, Root: root, Time: t, Sidecar: true}
}

func (s *sidecar) verify(pub crypto.PubKey) bool {
	ok, err := pub.Verify(s.statement(), s.Sig)
	return err == nil && ok
}

// newSidecar signs a tree head over the first size records, the last of
// which has line hash last and starts at offset in file index.
func newSidecar(key crypto.PrivKey, tree *frontier, last string, index int, offset int64, now time.Time) (*sidecar, error) {
	s := &sidecar{
		Size:     uint64(tree.n),
		Root:     hexHash(tree.root()),
		Last:     last,
		Time:     now.UTC().Format(time.RFC3339Nano),
		File:     index,
		Offset:   offset,
		Frontier: tree.hexes(),
	}
	sig, err := key.Sign(s.statement())
	if err != nil {
		return nil, fmt.Errorf("sign checkpoint: %w", err)
	}
	s.Sig = sig
	return s, nil
}

// readSidecar reads dir's sidecar; nil, nil when there is none. It checks
// the form, not the signature.
func readSidecar(dir string) (*sidecar, error) {
	var s sidecar
	ok, err := readSmallJSON(dir, SidecarFile, &s)
	if !ok || err != nil {
		return nil, err
	}
	_, rerr := parseHexHash(s.Root)
	_, terr := time.Parse(time.RFC3339Nano, s.Time)
	switch {
	case rerr != nil:
		return nil, fmt.Errorf("%s: root: %w", SidecarFile, rerr)
	case s.Size == 0 && s.Last != "", s.Size > 0 && !isHexHash(s.Last):
		return nil, fmt.Errorf("%s: last %q: want a lowercase hex SHA-256 (empty for size 0)", SidecarFile, s.Last)
	case terr != nil:
		return nil, fmt.Errorf("%s: time: %w", SidecarFile, terr)
	case len(s.Sig) == 0:
		return nil, fmt.Errorf("%s: no signature", SidecarFile)
	}
	return &s, nil
}

// anchor is AnchorFile: the state of the chain and the tree at the end of
// the records Prune removed. It is not signed: a root computed through it
// matching a signed checkpoint proves it.
type anchor struct {
	FirstFile int      `json:"first_file"` // number of the first file kept
	Size      uint64   `json:"size"`       // records removed: seqs 1 … Size
	Last      string   `json:"last"`       // lowercase hex SHA-256 of record Size's line
	LastTime  string   `json:"last_time"`  // time of record Size, as in its line
	Frontier  []string `json:"frontier"`   // the tree's frontier at Size
}

func (a *anchor) tree() (frontier, error) {
	return frontierFrom(int64(a.Size), a.Frontier)
}

// readAnchor reads dir's anchor; nil, nil when there is none.
func readAnchor(dir string) (*anchor, error) {
	var a anchor
	ok, err := readSmallJSON(dir, AnchorFile, &a)
	if !ok || err != nil {
		return nil, err
	}
	_, terr := time.Parse(time.RFC3339Nano, a.LastTime)
	switch {
	case a.FirstFile < 2:
		return nil, fmt.Errorf("%s: first_file %d: want 2 or more", AnchorFile, a.FirstFile)
	case a.Size == 0:
		return nil, fmt.Errorf("%s: size 0: an anchor stands for at least one removed record", AnchorFile)
	case !isHexHash(a.Last):
		return nil, fmt.Errorf("%s: last %q: want a lowercase hex SHA-256", AnchorFile, a.Last)
	case terr != nil:
		return nil, fmt.Errorf("%s: last_time: %w", AnchorFile, terr)
	}
	if _, err := a.tree(); err != nil {
		return nil, fmt.Errorf("%s: %w", AnchorFile, err)
	}
	return &a, nil
}

// readSmallJSON decodes dir/name into v, strictly: one object, no unknown
// fields. It reports false for a file that does not exist.
func readSmallJSON(dir, name string, v any) (bool, error) {
	f, err := os.Open(filepath.Join(dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSmallFile+1))
	if err != nil {
		return false, fmt.Errorf("read %s: %w", name, err)
	}
	if len(b) > maxSmallFile {
		return false, fmt.Errorf("%s: longer than %d bytes", name, maxSmallFile)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return false, fmt.Errorf("%s: %w", name, err)
	}
	if dec.More() {
		return false, fmt.Errorf("%s: data after the JSON object", name)
	}
	return true, nil
}

// writeFileAtomic replaces dir/name with data durably: a synced temporary
// file renamed into place, then the directory synced, so a crash leaves
// the old file or the new one, never a mix.
func writeFileAtomic(dir, name string, data []byte) (err error) {
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(0o600); err != nil {
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
	if err := os.Rename(f.Name(), filepath.Join(dir, name)); err != nil {
		return err
	}
	return fsync.Dir(dir)
}

// writeJSONFile is writeFileAtomic of v as one JSON line.
func writeJSONFile(dir, name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return writeFileAtomic(dir, name, append(b, '\n'))
}

// checkpointDetail is the Detail of a checkpoint record.
type checkpointDetail struct {
	Size uint64 `json:"size"`
	Root string `json:"root"`
}

// checkpointMid is the middle of a checkpoint record's line (see
// prepared): its time, kind and detail.
func checkpointMid(dst []byte, t time.Time, size uint64, root tlog.Hash) []byte {
	dst = append(dst, `"time":"`...)
	dst = t.UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `","kind":"`+KindCheckpoint+`","detail":{"size":`...)
	dst = strconv.AppendUint(dst, size, 10)
	dst = append(dst, `,"root":"`...)
	dst = append(dst, hexHash(root)...)
	return append(dst, `"}`...)
}

// parseCheckpointDetail reads a checkpoint record's detail strictly.
func parseCheckpointDetail(d json.RawMessage) (checkpointDetail, tlog.Hash, error) {
	var c checkpointDetail
	dec := json.NewDecoder(bytes.NewReader(d))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, tlog.Hash{}, fmt.Errorf("checkpoint detail: %w", err)
	}
	root, err := parseHexHash(c.Root)
	if err != nil {
		return c, tlog.Hash{}, fmt.Errorf("checkpoint detail: root: %w", err)
	}
	return c, root, nil
}
