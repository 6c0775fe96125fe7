#!/usr/bin/env bash
# NAT test: real `parley run` daemons on private LANs, each behind its own
# NAT router, reach each other through a public relay.
#
#   "internet" bridge, 11.0.0.0/24 (public-looking: manet.IsPublicAddr)
#     r   11.0.0.1    relay and bootstrap node (relay_service, reservations: 2)
#     n1  11.0.0.11   NAT router for 192.168.1.0/24: p1 192.168.1.10
#     n2  11.0.0.12   NAT router for 192.168.2.0/24: p2 192.168.2.10
#     n3  11.0.0.13   NAT router for 192.168.3.0/24: p3 192.168.3.10
#
# The routers masquerade their LAN with nftables and drop every unsolicited
# packet from the internet side. n1 and n3 are port-restricted cones
# (endpoint-independent mapping: the source port is kept whatever the
# destination; address-and-port-dependent filtering: only replies from where
# a packet went get in); n2 is first symmetric (endpoint-dependent mapping:
# a random port per destination) and later turned into a cone like n1.
#
# Checks, one PASS or FAIL line each, with times:
#   (t) the topology by itself, with plain sockets (natprobe.py): private
#       hosts reach the relay; each NAT maps and filters as configured; the
#       relay and the other private hosts cannot open a connection to a
#       private host; a UDP hole punch works cone<->cone and fails
#       cone<->symmetric;
#   (1) p1 and p2 become reachable through the relay: status says
#       reachability private and lists a /p2p-circuit address;
#   (2) p1 negotiates a quote from p2's exec agent (examples/shell/quote.sh)
#       over the relay (n2 symmetric: no hole punch is possible);
#   (3) with n2 made a cone, p2 restarted, DCUtR upgrades p1<->p2 to a direct
#       connection (reported per NAT pair; required only cone<->cone);
#   (4) the relay's reservation limit: p3 asks for a third slot, is refused,
#       keeps running and says it has no relay address;
#   (5) a relayed negotiation's latency and a direct one's, by timing
#       `parley request` (reported).
#
# Usage: nat.sh PARLEY_BINARY
# Environment: PARLEY_NETNS_PREFIX names what it creates (default
# parley-nat-<pid>); it must be unique on the machine. PARLEY_NETNS_KEEP=1
# keeps the work directory. PARLEY_NAT_TOPOLOGY_ONLY=1 runs only (t).
#
# Needs root, iproute2, nftables (nft) and python3; where it cannot make
# namespaces or the tools are missing it prints "SKIP: <why>" and exits 77.
# Every veth is made inside namespaces of its own, ip_forward is set inside
# the router namespaces only, and the addresses exist only inside them, so
# nothing outside is addressed or changed. The trap (lib.sh) stops every
# process it started and removes every namespace and file it made.
set -euo pipefail

BIN=${1:?usage: nat.sh PARLEY_BINARY}
P=${PARLEY_NETNS_PREFIX:-parley-nat-$$}
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
need_netns
command -v nft >/dev/null || skip "needs nftables (nft) for the NAT routers: apt-get install nftables"
command -v python3 >/dev/null || skip "needs python3 for the socket probes"
[ -x "$BIN" ] || { echo "FAIL: $BIN is not an executable"; exit 1; }

INET=11.0.0
R_IP=$INET.1
ROUTERS=(n1 n2 n3)
HOSTS=(p1 p2 p3)
declare -A WAN=([n1]=$INET.11 [n2]=$INET.12 [n3]=$INET.13)
declare -A LAN=([n1]=192.168.1 [n2]=192.168.2 [n3]=192.168.3)
declare -A ROUTER=([p1]=n1 [p2]=n2 [p3]=n3)
declare -A IP=([r]=$R_IP [p1]=192.168.1.10 [p2]=192.168.2.10 [p3]=192.168.3.10)
declare -A NAT=() # router -> cone or symmetric, as set_nat made it

WORK=$(mktemp -d "${TMPDIR:-/tmp}/$P.XXXXXX")
ns() { echo "$P-$1"; }
in_ns() { local n=$1; shift; ip netns exec "$(ns "$n")" "$@"; }
probe() { local n=$1; shift; in_ns "$n" python3 "$HERE/natprobe.py" "$@"; }

# --- topology

T0=$(date +%s.%N)
SW=$(ns sw)
NSS+=("$SW") # listed first, so an interrupt right after the add still removes it
ip netns add "$SW" 2>/dev/null || skip "cannot make a network namespace ('ip netns add' failed)"
ip -n "$SW" link add br0 type bridge 2>/dev/null || skip "cannot make a bridge (no bridge support?)"
ip -n "$SW" link set br0 up

# mkns NAME: a namespace with loopback up.
mkns() { NSS+=("$(ns "$1")"); ip netns add "$(ns "$1")"; ip -n "$(ns "$1")" link set lo up; }

# on_internet NODE ADDR: NODE's eth0 on the bridge, at ADDR/24.
on_internet() {
	ip -n "$SW" link add "v-$1" type veth peer name eth0 netns "$(ns "$1")"
	ip -n "$SW" link set "v-$1" master br0 up
	ip -n "$(ns "$1")" addr add "$2/24" dev eth0
	ip -n "$(ns "$1")" link set eth0 up
}

mkns r
on_internet r "$R_IP"
for n in "${ROUTERS[@]}"; do
	mkns "$n"
	on_internet "$n" "${WAN[$n]}"
	in_ns "$n" sysctl -qw net.ipv4.ip_forward=1
done
for h in "${HOSTS[@]}"; do
	n=${ROUTER[$h]}
	mkns "$h"
	ip -n "$(ns "$n")" link add lan0 type veth peer name eth0 netns "$(ns "$h")"
	ip -n "$(ns "$n")" addr add "${LAN[$n]}.1/24" dev lan0
	ip -n "$(ns "$n")" link set lan0 up
	ip -n "$(ns "$h")" addr add "${IP[$h]}/24" dev eth0
	ip -n "$(ns "$h")" link set eth0 up
	ip -n "$(ns "$h")" route add default via "${LAN[$n]}.1"
done

# set_nat ROUTER cone|symmetric: (re)load the router's ruleset. Both kinds
# masquerade the LAN onto the router's public address and let in only what
# conntrack knows as a reply (address-and-port-dependent filtering); they
# differ in the mapping: a cone keeps the source port for every
# destination, symmetric picks a random port for each connection.
set_nat() {
	local n=$1 kind=$2 flags=""
	[ "$kind" = symmetric ] && flags=fully-random
	in_ns "$n" nft -f - <<-EOF
		table ip nat
		delete table ip nat
		table ip filter
		delete table ip filter
		table ip nat {
			chain postrouting {
				type nat hook postrouting priority srcnat; policy accept;
				oifname "eth0" ip saddr ${LAN[$n]}.0/24 snat to ${WAN[$n]} $flags
			}
		}
		table ip filter {
			chain forward {
				type filter hook forward priority filter; policy drop;
				ct state established,related accept
				iifname "lan0" oifname "eth0" accept
			}
			chain input {
				type filter hook input priority filter; policy drop;
				iifname "lo" accept
				iifname "lan0" accept
				ct state established,related accept
			}
		}
	EOF
	NAT[$n]=$kind
}
set_nat n1 cone
set_nat n2 symmetric
set_nat n3 cone
log "topology: bridge, relay r, NAT routers n1 (${NAT[n1]}), n2 (${NAT[n2]}), n3 (${NAT[n3]}), hosts p1, p2, p3: ${#NSS[@]} namespaces in $(elapsed "$T0") s"

# --- (t) the NAT behaviour, with plain sockets

log "(t) the topology with plain sockets"
probe r echo 3478 3479 >"$WORK/echo-r.out" 2>&1 &
probe p1 echo 6000 >"$WORK/echo-p1.out" 2>&1 &
wait_for 5 grep -q ready "$WORK/echo-r.out" || { echo "FAIL: the probe echo did not start"; cat "$WORK/echo-r.out"; exit 1; }
wait_for 5 grep -q ready "$WORK/echo-p1.out" || { echo "FAIL: the probe echo did not start"; cat "$WORK/echo-p1.out"; exit 1; }

# mapping HOST PROTO: from one source port to two ports of r, r's view of
# the source both times, e.g. "11.0.0.11:5000 11.0.0.11:5000".
mapping() {
	local a b
	a=$(probe "$1" "$2" "$R_IP" 3478 5000) || return 1
	b=$(probe "$1" "$2" "$R_IP" 3479 5000) || return 1
	echo "$a $b"
}
# maps_as HOST: its router maps as set_nat made it (TCP and UDP).
maps_as() {
	local h=$1 n=${ROUTER[$1]} proto m a b ok=0
	for proto in tcp udp; do
		m=$(mapping "$h" "$proto") || { echo "  $h: no $proto answer from r: $m"; return 1; }
		read -r a b <<<"$m"
		echo "  $n (${NAT[$n]}): $proto ${IP[$h]}:5000 -> r:3478 seen as $a, -> r:3479 seen as $b"
		case ${NAT[$n]} in
		cone) [ "$a" = "${WAN[$n]}:5000" ] && [ "$b" = "$a" ] || ok=1 ;;
		symmetric) [ "${a%:*}" = "${WAN[$n]}" ] && [ "$a" != "$b" ] || ok=1 ;;
		esac
	done
	return $ok
}
for h in "${HOSTS[@]}"; do
	check "(t) $h reaches the relay; ${ROUTER[$h]} maps as a ${NAT[${ROUTER[$h]}]} NAT" maps_as "$h"
done

# filters HOST: after HOST sends a datagram to r:3478 from port 5001, r's
# answer from 3478 gets in and a datagram from r's port 3480 does not.
filters() {
	local h=$1 n=${ROUTER[$1]}
	probe "$h" open 5001 "$R_IP" 3478 1.5 >"$WORK/open-$h.out" &
	local pid=$!
	wait_for 3 grep -q ready "$WORK/open-$h.out"
	sleep 0.2
	probe r send 3480 "${WAN[$n]}" 5001
	wait "$pid"
	echo "  $h heard: $(grep from "$WORK/open-$h.out" | tr '\n' ' ')"
	grep -q "from $R_IP:3478" "$WORK/open-$h.out" && ! grep -q "from $R_IP:3480" "$WORK/open-$h.out"
}
check "(t) n1 lets in only replies from where p1 sent (port-restricted)" filters p1

# refused FROM HOST PORT: FROM cannot connect to HOST's public address
# (its router's) on PORT, where HOST listens.
refused() {
	local out
	if out=$(probe "$1" tcp "$2" "$3"); then echo "  $1 -> $2:$3 connected: $out"; return 1; fi
	echo "  $1 -> $2:$3: $out"
}
check "(t) the relay cannot open a connection to p1 (at n1's address)" refused r "${WAN[n1]}" 6000
check "(t) p2 cannot open a connection to p1 (at n1's address)" refused p2 "${WAN[n1]}" 6000
check "(t) p2 cannot open a connection to p1 (at its private address)" refused p2 "${IP[p1]}" 6000

# punch A B SECONDS: a UDP hole punch between A and B, both from port
# 5002, each told the other's public address as r saw it.
punch() {
	local a=$1 b=$2 s=$3 pa pb rc=0
	rm -f "$WORK/punch-$a" "$WORK/punch-$b"
	probe "$a" punch 5002 "$R_IP" 3478 "$WORK/punch-$a" "$WORK/punch-$b" "$s" >"$WORK/punch-$a-$b.out" &
	pa=$!
	probe "$b" punch 5002 "$R_IP" 3478 "$WORK/punch-$b" "$WORK/punch-$a" "$s" >"$WORK/punch-$b-$a.out" &
	pb=$!
	wait "$pa" || rc=1
	wait "$pb" || rc=1
	echo "  $a: $(tr '\n' ' ' <"$WORK/punch-$a-$b.out")"
	echo "  $b: $(tr '\n' ' ' <"$WORK/punch-$b-$a.out")"
	return $rc
}
not() { ! "$@"; }
check "(t) a UDP hole punch p1 (${NAT[n1]}) <-> p3 (${NAT[n3]}) works" punch p1 p3 2
check "(t) a UDP hole punch p1 (${NAT[n1]}) <-> p2 (${NAT[n2]}) fails" not punch p1 p2 2

# --- summary

echo "nat: NAT types: n1 ${NAT[n1]}, n2 ${NAT[n2]}, n3 ${NAT[n3]}; ${#NSS[@]} namespaces, $(elapsed "$T0") s"
if [ "$FAILED" != 0 ]; then
	echo "nat: FAIL"
	exit 1
fi
echo "nat: PASS"
