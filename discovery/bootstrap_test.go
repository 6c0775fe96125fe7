package discovery_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/parleynet/parley/discovery"
)

func TestParseAddrsNamesBadAddress(t *testing.T) {
	for _, bad := range []string{"not-a-multiaddr", "/ip4/1.2.3.4/tcp/1", "/ip4/999.0.0.1/tcp/1/p2p/12D3KooWFoo"} {
		_, err := discovery.ParseAddrs([]string{bad})
		var ae *discovery.AddrError
		if !errors.As(err, &ae) || ae.Addr != bad || !strings.Contains(err.Error(), bad) {
			t.Errorf("ParseBootstrap(%q) = %v, want an AddrError naming it", bad, err)
		}
	}
	good := "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWGzxzKZYveHXtpG6AsrUJBcWxHBFS2HsEoGTxrMLvKXtf"
	infos, err := discovery.ParseAddrs([]string{good, strings.Replace(good, "tcp/4001", "udp/4001/quic-v1", 1)})
	if err != nil || len(infos) != 1 || len(infos[0].Addrs) != 2 {
		t.Fatalf("ParseBootstrap(two addrs of one peer) = %v, %v; want one peer with two addrs", infos, err)
	}
}
