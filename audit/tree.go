package audit

import (
	"encoding/hex"
	"fmt"
	"math/bits"

	"golang.org/x/mod/sumdb/tlog"
)

// frontier is the right edge of an RFC 6962 Merkle tree over the log's
// lines: the roots of the perfect subtrees that its size decomposes into,
// largest (leftmost) first. It is all a writer or verifier needs to go on
// hashing leaves and compute the tree head at any later size, in
// O(log size) memory, so neither keeps every leaf.
type frontier struct {
	n int64       // leaves pushed
	h []tlog.Hash // one per set bit of n, from the highest bit down
}

// push adds the leaf hash of the next line.
func (f *frontier) push(leaf tlog.Hash) {
	f.h = append(f.h, leaf)
	// Each trailing 1 bit of the old size is a subtree of the same height
	// as the one just completed: merge them.
	for n := f.n; n&1 == 1; n >>= 1 {
		k := len(f.h)
		f.h[k-2] = tlog.NodeHash(f.h[k-2], f.h[k-1])
		f.h = f.h[:k-1]
	}
	f.n++
}

// pushLine adds the line (without its newline) of the next record.
func (f *frontier) pushLine(line []byte) { f.push(tlog.RecordHash(line)) }

// root is the tree head at the current size: tlog.TreeHash of the same
// leaves, and SHA-256 of nothing for the empty tree.
func (f *frontier) root() tlog.Hash {
	if len(f.h) == 0 {
		return emptyRoot
	}
	r := f.h[len(f.h)-1]
	for i := len(f.h) - 2; i >= 0; i-- {
		r = tlog.NodeHash(f.h[i], r)
	}
	return r
}

func (f *frontier) clone() frontier {
	return frontier{n: f.n, h: append([]tlog.Hash(nil), f.h...)}
}

// hexes is the frontier as stored in a sidecar or an anchor.
func (f *frontier) hexes() []string {
	out := make([]string, len(f.h))
	for i, h := range f.h {
		out[i] = hex.EncodeToString(h[:])
	}
	return out
}

// frontierFrom rebuilds the frontier of a tree of n leaves from its stored
// form. It checks the shape (one hash per set bit of n), not the hashes:
// those are proven only when the root they give matches a signed tree head.
func frontierFrom(n int64, hs []string) (frontier, error) {
	if n < 0 {
		return frontier{}, fmt.Errorf("tree size %d is negative", n)
	}
	if want := bits.OnesCount64(uint64(n)); len(hs) != want {
		return frontier{}, fmt.Errorf("frontier of a tree of %d records has %d hashes, want %d", n, len(hs), want)
	}
	f := frontier{n: n, h: make([]tlog.Hash, len(hs))}
	for i, s := range hs {
		h, err := parseHexHash(s)
		if err != nil {
			return frontier{}, fmt.Errorf("frontier hash %d: %w", i, err)
		}
		f.h[i] = h
	}
	return f, nil
}

// emptyRoot is the RFC 6962 hash of the empty tree, SHA-256 of nothing,
// as tlog.TreeHash(0, …) gives it.
var emptyRoot = tlog.Hash{
	0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14,
	0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
	0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c,
	0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
}

func parseHexHash(s string) (tlog.Hash, error) {
	var h tlog.Hash
	if !isHexHash(s) {
		return h, fmt.Errorf("%q is not a lowercase hex SHA-256", s)
	}
	_, err := hex.Decode(h[:], []byte(s))
	return h, err
}

func hexHash(h tlog.Hash) string { return hex.EncodeToString(h[:]) }
