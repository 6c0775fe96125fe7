package admission

import (
	"fmt"
	"net/netip"
)

// Connection is asked when a remote address opens an inbound connection,
// before its handshake: the address's rate (ConnectionsPerIP). It is the
// only entry with no peer ID yet, so a refusal is recorded under the
// address.
func (l *Layer) Connection(ip netip.Addr) error {
	if l.conns.take(ip, l.now()) {
		return nil
	}
	return l.deny(refusal{entry: EntryConnect, rule: "limits.connections_per_ip", who: ip.String(),
		rationale: fmt.Sprintf("%s opened connections faster than %g/s (burst %d)", ip, l.lim.ConnectionsPerIP.PerSecond, l.lim.ConnectionsPerIP.Burst)})
}
