package discovery

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/parleynet/parley/internal/fsync"
)

// MaxRemembered bounds the peers kept in a peers file, and
// maxRememberedAddrs the addresses kept per peer.
const (
	MaxRemembered      = 64
	maxRememberedAddrs = 8
)

// peersFile is the JSON of <home>/peers.json.
type peersFile struct {
	Version int              `json:"version"`
	Peers   []rememberedPeer `json:"peers"`
}

type rememberedPeer struct {
	ID       peer.ID   `json:"id"`
	Addrs    []string  `json:"addrs"`
	LastSeen time.Time `json:"last_seen"`
}

// LoadPeers reads remembered peers from path. A missing file is no peers.
// A corrupt file is moved aside (to path.corrupt-<unix time>) and reported
// in the error, and no peers are returned: it is never fatal.
func LoadPeers(path string) ([]peer.AddrInfo, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read remembered peers %s: %w", path, err)
	}
	peers, perr := parsePeers(data)
	if perr != nil {
		aside := fmt.Sprintf("%s.corrupt-%d", path, time.Now().Unix())
		if err := os.Rename(path, aside); err != nil {
			return nil, fmt.Errorf("remembered peers %s is corrupt (%v) and could not be moved aside: %w", path, perr, err)
		}
		return nil, fmt.Errorf("remembered peers %s is corrupt (%v); moved it to %s", path, perr, aside)
	}
	return peers, nil
}

func parsePeers(data []byte) ([]peer.AddrInfo, error) {
	var f peersFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, err
	}
	if f.Version != 1 {
		return nil, fmt.Errorf("version %d, want 1", f.Version)
	}
	var out []peer.AddrInfo
	for i, p := range f.Peers {
		if i == MaxRemembered {
			break
		}
		if err := p.ID.Validate(); err != nil {
			return nil, fmt.Errorf("peer %d: %w", i, err)
		}
		ai := peer.AddrInfo{ID: p.ID}
		for _, a := range p.Addrs {
			if m, err := ma.NewMultiaddr(a); err == nil && len(ai.Addrs) < maxRememberedAddrs {
				ai.Addrs = append(ai.Addrs, m)
			}
		}
		if len(ai.Addrs) > 0 {
			out = append(out, ai)
		}
	}
	return out, nil
}

// SavePeers writes peers to path atomically (temp file, fsync, rename),
// most recent first, at most MaxRemembered of them.
func SavePeers(path string, peers []peer.AddrInfo) error {
	f := peersFile{Version: 1}
	now := time.Now().UTC()
	for _, p := range peers {
		if len(f.Peers) == MaxRemembered {
			break
		}
		rp := rememberedPeer{ID: p.ID, LastSeen: now}
		for _, a := range p.Addrs {
			if len(rp.Addrs) < maxRememberedAddrs {
				rp.Addrs = append(rp.Addrs, a.String())
			}
		}
		if len(rp.Addrs) > 0 {
			f.Peers = append(f.Peers, rp)
		}
	}
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("save remembered peers: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("save remembered peers: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("save remembered peers: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save remembered peers: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save remembered peers: %w", err)
	}
	return fsync.Dir(filepath.Dir(path))
}

// parsePeersFile reads path without moving it aside when corrupt.
func parsePeersFile(path string) ([]peer.AddrInfo, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parsePeers(data)
}
