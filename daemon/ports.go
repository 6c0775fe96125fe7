package daemon

import (
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/parleynet/parley/node"
)

// Why the daemon checks its listen ports itself: go-libp2p listens on TCP
// with SO_REUSEPORT (it dials from its listen port too, which helps hole
// punching), and with that a second process that asks for a port the first
// one holds gets it as well. Nodes bootstrapping to the first then reach
// either, and fail the handshake with the wrong one. A socket bound
// without SO_REUSEPORT is refused a port that any other socket holds, so
// binding each fixed port once, plainly, before the node starts, tells a
// free port from a held one. QUIC (quicreuse) binds its UDP sockets
// without SO_REUSEPORT, but a node that fails to listen on one of several
// addresses still starts on the others, so those are checked too, and
// after the start every fixed address is checked to be listening.
//
// A port taken by another process between the check and the node's own
// listen is not caught; that needs the node to listen without reuseport.

// checkListen refuses a listen address with a fixed port that another
// process holds.
func checkListen(addrs []ma.Multiaddr) error {
	for _, a := range addrs {
		network, hostport, ok := socketOf(a)
		if !ok {
			continue
		}
		var c io.Closer
		var err error
		if network == "tcp4" || network == "tcp6" {
			c, err = net.Listen(network, hostport)
		} else {
			c, err = net.ListenPacket(network, hostport)
		}
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("%w: listen address %s: another process holds %s port %s (is another parley daemon running? give this one another port)",
				ErrAddrInUse, a, network[:3], portOf(hostport))
		}
		if err != nil {
			return fmt.Errorf("listen address %s: %w", a, err)
		}
		_ = c.Close()
	}
	return nil
}

// checkListening refuses a node that did not come up on every fixed
// listen address.
func checkListening(n *node.Node, addrs []ma.Multiaddr) error {
	have := map[string]bool{}
	for _, a := range n.Host().Network().ListenAddresses() {
		have[a.String()] = true
	}
	for _, a := range addrs {
		if _, _, fixed := socketOf(a); fixed && !have[a.String()] {
			return fmt.Errorf("%w: the node could not listen on %s", ErrAddrInUse, a)
		}
	}
	return nil
}

// socketOf returns the network and host:port of an IP listen address with
// a fixed TCP or UDP port; ok is false for anything else (port 0, DNS
// names, relay addresses).
func socketOf(a ma.Multiaddr) (network, hostport string, ok bool) {
	ip, family := "", ""
	if v, err := a.ValueForProtocol(ma.P_IP4); err == nil {
		ip, family = v, "4"
	} else if v, err := a.ValueForProtocol(ma.P_IP6); err == nil {
		ip, family = v, "6"
	} else {
		return "", "", false
	}
	proto, port := "", ""
	if v, err := a.ValueForProtocol(ma.P_TCP); err == nil {
		proto, port = "tcp", v
	} else if v, err := a.ValueForProtocol(ma.P_UDP); err == nil {
		proto, port = "udp", v
	} else {
		return "", "", false
	}
	if port == "0" {
		return "", "", false
	}
	return proto + family, net.JoinHostPort(ip, port), true
}

func portOf(hostport string) string {
	_, p, _ := net.SplitHostPort(hostport)
	return p
}

// tcpOnly keeps the TCP addresses: all a private network can listen on.
func tcpOnly(addrs []ma.Multiaddr) []ma.Multiaddr {
	var out []ma.Multiaddr
	for _, a := range addrs {
		if _, err := a.ValueForProtocol(ma.P_TCP); err == nil {
			out = append(out, a)
		}
	}
	return out
}

func nonTCP(addrs []ma.Multiaddr) []ma.Multiaddr {
	var out []ma.Multiaddr
	for _, a := range addrs {
		if _, err := a.ValueForProtocol(ma.P_TCP); err != nil {
			out = append(out, a)
		}
	}
	return out
}
