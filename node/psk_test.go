package node_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/node"
	"github.com/parleynet/parley/node/nodetest"
)

func writePSK(t *testing.T) (string, pnet.PSK) {
	t.Helper()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	path := filepath.Join(t.TempDir(), "swarm.key")
	if err := os.WriteFile(path, []byte("/key/swarm/psk/1.0.0/\n/base16/\n"+hex.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	psk, err := node.LoadPSK(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, psk
}

func pskNode(t *testing.T, psk pnet.PSK) *node.Node {
	t.Helper()
	agent, _ := nodetest.NewAgent("agent")
	cfg := node.DefaultConfig()
	cfg.NodeKey = nodetest.Key(t)
	cfg.Agents = []*identity.Agent{agent}
	cfg.ListenAddrs = []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/0"), ma.StringCast("/ip4/127.0.0.1/udp/0/quic-v1")}
	cfg.PSK = psk
	n, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

func TestPrivateNetworksDoNotMix(t *testing.T) {
	_, pskA := writePSK(t)
	_, pskB := writePSK(t)
	a1, a2, b := pskNode(t, pskA), pskNode(t, pskA), pskNode(t, pskB)
	for _, addr := range a1.Addrs() {
		if _, err := addr.ValueForProtocol(ma.P_QUIC_V1); err == nil {
			t.Errorf("private node listens on QUIC (%s), which cannot carry a PSK", addr)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info := func(n *node.Node) peer.AddrInfo {
		ai, _ := peer.AddrInfosFromP2pAddrs(n.Addrs()...)
		return ai[0]
	}
	if err := a2.Host().Connect(ctx, info(a1)); err != nil {
		t.Fatalf("same PSK: %v", err)
	}
	short, cancelShort := context.WithTimeout(context.Background(), time.Second)
	defer cancelShort()
	if err := b.Host().Connect(short, info(a1)); err == nil {
		t.Fatal("a node with another PSK connected")
	}
}

func TestLoadPSKRejectsBadFiles(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"no header": "abcdef\n",
		"short key": "/key/swarm/psk/1.0.0/\n/base16/\nabcdef\n",
		"not hex":   "/key/swarm/psk/1.0.0/\n/base16/\n" + strings.Repeat("zz", 32) + "\n",
	} {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
		_ = os.WriteFile(path, []byte(content), 0o600)
		_, err := node.LoadPSK(path)
		if !errors.Is(err, node.ErrBadPSK) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: LoadPSK = %v, want ErrBadPSK naming the file", name, err)
		}
	}
}
