package node

import (
	"testing"
	"time"

	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
)

func TestRelayResources(t *testing.T) {
	def := relayv2.DefaultResources()
	for _, tc := range []struct {
		name   string
		limits RelayLimits
		check  func(r relayv2.Resources) bool
	}{
		{"zero keeps go-libp2p's defaults", RelayLimits{}, func(r relayv2.Resources) bool {
			return r.MaxReservations == def.MaxReservations && r.MaxCircuits == def.MaxCircuits &&
				r.MaxReservationsPerIP == def.MaxReservationsPerIP && *r.Limit == *def.Limit
		}},
		{"each limit", RelayLimits{Reservations: 2, Circuits: 3, PerIP: 1, Duration: time.Minute, Data: 1 << 10}, func(r relayv2.Resources) bool {
			return r.MaxReservations == 2 && r.MaxCircuits == 3 && r.MaxReservationsPerIP == 1 &&
				r.Limit.Duration == time.Minute && r.Limit.Data == 1<<10
		}},
		{"unlimited connections, bounded slots", RelayLimits{Reservations: 2, Unlimited: true}, func(r relayv2.Resources) bool {
			return r.Limit == nil && r.MaxReservations == 2
		}},
	} {
		if r := relayResources(tc.limits); !tc.check(r) {
			t.Errorf("%s: relayResources(%+v) = %+v (limit %+v)", tc.name, tc.limits, r, r.Limit)
		}
	}
}
