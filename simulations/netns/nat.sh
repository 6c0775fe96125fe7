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
# a random port per connection) and later made a cone like n1. Linux has no
# endpoint-independent filtering (a full cone) short of a static port
# forward, which would make the host simply reachable.
#
# Checks, one PASS or FAIL line each, with times:
#   (t) the topology by itself, with plain sockets (natprobe.py): private
#       hosts reach the relay; each NAT maps and filters as configured; the
#       relay and the other private hosts cannot open a connection to a
#       private host; a UDP hole punch works cone<->cone and fails
#       cone<->symmetric;
#   (1) p1 and p2 (static relay r) are reachable through r within 5 s of
#       their start: status says reachability private and lists a
#       /p2p-circuit address through r; so is p3 with no static relay, r
#       found among its peers;
#   (2) p1 finds p2's quote agent (examples/shell/quote.sh) and negotiates
#       with it: completed, won by p2's agent; across cone<->symmetric the
#       connection stays relayed by r;
#   (3) with n2 made a cone and p2 restarted, DCUtR makes p1<->p2 direct
#       (hole_punched, to n2's address), and again after a restart of p2
#       that remembers p1; what DCUtR did is reported per NAT pair;
#   (4) r's reservation limit (2): p3 is refused a third slot, keeps running
#       and says it has no relayed address; p1 and p2 keep theirs; with p2
#       gone, a restarted p3 gets the freed slot;
#   (5) a relayed and a direct negotiation's latency, medians of 3 timed
#       `parley request`s (reported, beside the p1<->r round trip).
#
# Usage: nat.sh PARLEY_BINARY
# Environment: PARLEY_NETNS_PREFIX names what it creates (default
# parley-nat-<pid>); it must be unique on the machine. PARLEY_NETNS_KEEP=1
# keeps the work directory (homes, logs). PARLEY_NAT_TOPOLOGY_ONLY=1 runs
# only (t). PARLEY_NAT_RELAY_LIMITS=default gives r go-libp2p's limits per
# relayed connection (2 min, 128 KiB: limited connections, which GossipSub
# does not use) instead of none. PARLEY_NAT_DHT_MODE sets the private
# nodes' --dht-mode (default: none given, so parley's own choice for a
# private node, a DHT client). PARLEY_NAT_TRANSPORT=tcp has the
# nodes reach r (and so punch holes) over TCP instead of QUIC.
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
# bg_probe OUT NODE ARGS…: probe in the background, output to OUT; BG is
# its PID. Started here, not by a backgrounded function, so that the job
# is the probe itself (ip netns exec execs it), which the trap can stop.
bg_probe() {
	local out=$1 n=$2; shift 2
	ip netns exec "$(ns "$n")" python3 "$HERE/natprobe.py" "$@" >"$out" 2>&1 &
	BG=$!
}

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
bg_probe "$WORK/echo-r.out" r echo 3478 3479
bg_probe "$WORK/echo-p1.out" p1 echo 6000
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
	bg_probe "$WORK/open-$h.out" "$h" open 5001 "$R_IP" 3478 1.5
	local pid=$BG
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
	bg_probe "$WORK/punch-$a-$b.out" "$a" punch 5002 "$R_IP" 3478 "$WORK/punch-$a" "$WORK/punch-$b" "$s"
	pa=$BG
	bg_probe "$WORK/punch-$b-$a.out" "$b" punch 5002 "$R_IP" 3478 "$WORK/punch-$b" "$WORK/punch-$a" "$s"
	pb=$BG
	wait "$pa" || rc=1
	wait "$pb" || rc=1
	echo "  $a: $(tr '\n' ' ' <"$WORK/punch-$a-$b.out")"
	echo "  $b: $(tr '\n' ' ' <"$WORK/punch-$b-$a.out")"
	return $rc
}
not() { ! "$@"; }
check "(t) a UDP hole punch p1 (${NAT[n1]}) <-> p3 (${NAT[n3]}) works" punch p1 p3 2
check "(t) a UDP hole punch p1 (${NAT[n1]}) <-> p2 (${NAT[n2]}) fails" not punch p1 p2 2

if [ -n "${PARLEY_NAT_TOPOLOGY_ONLY:-}" ]; then
	echo "nat: topology only, $(elapsed "$T0") s"
	[ "$FAILED" = 0 ] || { echo "nat: FAIL"; exit 1; }
	echo "nat: PASS"
	exit 0
fi

# --- parley daemons

NODES=(r p1 p2 p3)
declare -A DAEMON=()  # node -> PID of its running daemon
declare -A STARTED=() # node -> when its daemon was started (date +%s.%N)
declare -A PEER=()    # node -> PeerID
BID_WINDOW=300ms
REACHABLE_WITHIN=5 # s from a private node's start to its relayed address: the issue's target
RELAY_LIMITS=${PARLEY_NAT_RELAY_LIMITS:-unlimited}
DHT_MODE=(${PARLEY_NAT_DHT_MODE:+--dht-mode "$PARLEY_NAT_DHT_MODE"})
case ${PARLEY_NAT_TRANSPORT:-quic} in
quic) R_TRANSPORT=udp/ ;;
tcp) R_TRANSPORT=tcp/ ;;
*) echo "FAIL: PARLEY_NAT_TRANSPORT=$PARLEY_NAT_TRANSPORT: want quic or tcp"; exit 1 ;;
esac

# cli NODE CMD…: a parley command inside the node's namespace, where its
# daemon's API (on that namespace's loopback) is.
cli() { local n=$1; shift; in_ns "$n" "$BIN" "$@" --home "$WORK/$n"; }

# json EXPR: evaluate the Python expression EXPR on the JSON value on
# stdin (as j) and print the result; fails if EXPR raises. ms(D) is the Go
# duration string D in milliseconds.
json() {
	python3 -c '
import json, re, sys
def ms(d):
    u = {"h": 3.6e6, "m": 6e4, "s": 1e3, "ms": 1, "us": 1e-3, "µs": 1e-3, "ns": 1e-6}
    return sum(float(v) * u[k] for v, k in re.findall(r"([0-9.]+)(h|ms|m|s|us|µs|ns)", d))
j = json.load(sys.stdin)
r = eval(sys.argv[1])
print(r if isinstance(r, str) else json.dumps(r))' "$1"
}

# start NODE [RUN FLAGS…]: start the node's daemon and wait until it is
# ready (it printed its api: line).
start() {
	local n=$1; shift
	: >"$WORK/run-$n.out"
	STARTED[$n]=$(date +%s.%N)
	# Not through a function: ip netns exec execs the daemon, so $! is the
	# daemon's PID.
	ip netns exec "$(ns "$n")" "$BIN" run --home "$WORK/$n" --no-mdns "$@" >"$WORK/run-$n.out" 2>>"$WORK/run-$n.err" &
	DAEMON[$n]=$!
	await_api "$n" || return 1
	PEER[$n]=$(grep '^peer:' "$WORK/run-$n.out" | cut -d' ' -f2)
}


for n in "${NODES[@]}"; do "$BIN" init --home "$WORK/$n" >/dev/null; done
# r relays, for two reservations at most. By default its relayed
# connections have no time or data limit, as for a mesh's own relay, so
# that they carry gossip (calls for proposals) too; with
# PARLEY_NAT_RELAY_LIMITS=default they keep go-libp2p's (2 min, 128 KiB).
cat >>"$WORK/r/config.yaml" <<-END
	nat:
	  relay_limits:
	    reservations: 2
END
[ "$RELAY_LIMITS" = default ] || echo "    unlimited: true" >>"$WORK/r/config.yaml"
# p2 hosts the quote agent.
cat >>"$WORK/p2/config.yaml" <<-END
	  - name: quoter
	    capabilities: [quote]
	    exec: ["sh", "$HERE/../../examples/shell/quote.sh"]
END

start r --listen "/ip4/$R_IP/tcp/4001" --listen "/ip4/$R_IP/udp/4001/quic-v1" --relay-service --reachability public
R_ID=${PEER[r]}
R_BOOT=()
while read -r _ a; do R_BOOT+=(--bootstrap "$a"); done < <(grep "^listen: .*/$R_TRANSPORT" "$WORK/run-r.out")
# Every node is given r's address on one transport (QUIC, or TCP with
# PARLEY_NAT_TRANSPORT=tcp), so that each reaches r over it and learns its
# public address on it from r: DCUtR punches only where both ends know
# their address on a common transport (a node that reached r over TCP
# learns only its TCP one).
R_RELAY=(--relay "$(grep "^listen: .*/$R_TRANSPORT" "$WORK/run-r.out" | head -1 | cut -d' ' -f2)")
# The private nodes know they are behind NAT, so they reserve at once, and
# (as DHT clients, parley's default for a private node) keep out of others'
# DHT routing tables.
PRIVATE=(--reachability private "${DHT_MODE[@]}" "${R_BOOT[@]}")
echo "  r: $R_ID, reachability $(cli r status --json | json 'j.get("reachability")')," \
	"relay limits: reservations 2, $RELAY_LIMITS per connection; reached over ${PARLEY_NAT_TRANSPORT:-quic}"

# relayed NODE: its status says reachability private and lists a relayed
# address through r; prints the address.
relayed() {
	local st
	st=$(cli "$1" status --json) || return 1
	[ "$(json 'j.get("reachability")' <<<"$st")" = private ] || return 1
	json '[a for a in j.get("relay_addrs") or [] if "/p2p/'"$R_ID"'/p2p-circuit" in a][0]' <<<"$st" 2>/dev/null
}

# reachable NODE: wait until it is relayed, and say how long after its
# start it took; fails past REACHABLE_WITHIN s from the start.
reachable() {
	local n=$1 a end
	end=$(awk -v t="${STARTED[$n]}" -v w="$REACHABLE_WITHIN" 'BEGIN { printf "%.0f", (t + w) * 1000 }')
	while [ "$(($(date +%s%N) / 1000000))" -lt "$end" ]; do
		if a=$(relayed "$n"); then
			echo "  $n reachable at $a, $(elapsed "${STARTED[$n]}") s after its start"
			return 0
		fi
		sleep 0.1
	done
	echo "  $n's status $(elapsed "${STARTED[$n]}") s after its start:" \
		"$(cli "$n" status --json | json '{k: j.get(k) for k in ("reachability", "relay_addrs", "peers")}')"
	return 1
}

# finds FROM: FROM's `parley agents find` lists p2's quoter (which
# connects FROM to p2, through r while p2 is reachable only so).
finds() { cli "$1" agents find --capability quote --json 2>/dev/null | grep -q "\"peer\":\"${PEER[p2]}\""; }

# card_relayed FROM: the card FROM finds for p2's quoter lists p2's relayed
# address (the card is signed again once p2 holds its relay slot).
card_relayed() {
	cli "$1" agents find --capability quote --json 2>/dev/null |
		json "any(c['peer'] == '${PEER[p2]}' and any('/p2p-circuit' in a for a in c.get('addrs', [])) for c in j)" | grep -qx true
}

# request FROM: FROM negotiates a quote; its JSON outcome in
# $WORK/request.json and the wall time of `parley request` in ms in
# $WORK/request.ms.
request() {
	local t0 t1
	t0=$(date +%s%N)
	cli "$1" request --capability quote --input '{}' --bid-window "$BID_WINDOW" --timeout 20s --json \
		>"$WORK/request.json" 2>"$WORK/request.err" || true
	t1=$(date +%s%N)
	echo $(((t1 - t0) / 1000000)) >"$WORK/request.ms"
}

# quote_from_p2 FROM: a negotiation from FROM completes, won by p2's quoter.
quote_from_p2() {
	request "$1"
	local out
	out=$(json '"%s %s %s (work %s)" % (j["state"], j.get("winner_name"), j.get("winner_peer"), j.get("timings", {}).get("work"))' <"$WORK/request.json") || {
		echo "  no outcome: $(tr '\n' ' ' <"$WORK/request.err")"
		return 1
	}
	echo "  $1's request: $out, $(cat "$WORK/request.ms") ms"
	[ "$out" != "${out#"completed quoter ${PEER[p2]} "}" ]
}

# conn FROM TO: FROM's peers row for TO: "connection via hole_punched
# addrs", or "none".
conn() {
	cli "$1" peers --json | json '" ".join(str(x) for x in next(([r.get("connection"), r.get("via"), r.get("hole_punched", False), ",".join(r.get("addrs") or [])] for r in j if r["id"] == "'"$2"'"), ["none"]))'
}
is_conn() { [ "$(conn "$1" "$2" | cut -d' ' -f1)" = "$3" ]; }
relayed_by_r() { [ "$(conn "$1" "$2" | cut -d' ' -f1,2)" = "relayed $R_ID" ]; }
# punched: p1's connection to p2 is direct, made by DCUtR, to n2's
# public address.
punched() {
	local c
	c=$(conn p1 "${PEER[p2]}")
	[ "$(cut -d' ' -f1,3 <<<"$c")" = "direct True" ] && [[ $c == *"/ip4/${WAN[n2]}/"* ]]
}

# latency FROM N: N negotiations from FROM, each won by p2; prints the
# median wall time of `parley request` and the median of its work timing
# (award to result), in ms.
latency() {
	local ms=() work=()
	for _ in $(seq 1 "$2"); do
		quote_from_p2 "$1" >&2 || return 1
		ms+=("$(cat "$WORK/request.ms")")
		work+=("$(json '"%.1f" % ms(j["timings"]["work"])' <"$WORK/request.json")")
	done
	echo "$(printf '%s\n' "${ms[@]}" | sort -n | sed -n "$((($2 + 1) / 2))p")" \
		"$(printf '%s\n' "${work[@]}" | sort -n | sed -n "$((($2 + 1) / 2))p")"
}

# punch_report PAIR: say how p1 is connected to p2 and what DCUtR did.
punch_report() {
	local c
	c=$(conn p1 "${PEER[p2]}")
	case $c in
	"direct "*" True "*) echo "  hole punch $1: succeeded, p1 -> p2 direct at ${c##* }" ;;
	direct*) echo "  hole punch $1: none, yet p1 -> p2 is direct (not by DCUtR) at ${c##* }" ;;
	relayed*) echo "  hole punch $1: none, p1 -> p2 stays relayed by r" ;;
	*) echo "  hole punch $1: p1 is not connected to p2 ($c)" ;;
	esac
}

log "(1) p1 and p2 behind NAT become reachable through r (static relay)"
start p1 "${PRIVATE[@]}" "${R_RELAY[@]}"
start p2 "${PRIVATE[@]}" "${R_RELAY[@]}"
for n in p1 p2; do
	check "(1) $n is reachable through r within ${REACHABLE_WITHIN} s of its start" reachable "$n"
done

log "(2) p1 negotiates with p2's agent through r (n1 ${NAT[n1]}, n2 ${NAT[n2]})"
check "(2) p1 finds p2's quoter" wait_for 10 finds p1
check "(1) the quoter's card gives p2's relayed address" wait_for 10 card_relayed p1
check "(2) p1's request for a quote completes, won by p2's quoter" quote_from_p2 p1
check "(2) p1's connection to p2 is relayed by r" relayed_by_r p1 "${PEER[p2]}"
RELAYED_MS=""
# measure VAR: VAR=$(latency p1 3), for check (which runs it in this
# shell, so VAR is kept).
measure() { local v; v=$(latency p1 3) || return 1; printf -v "$1" '%s' "$v"; }
check "(5) three more negotiations p1 -> p2 over the relay complete" measure RELAYED_MS
# DCUtR began as the relayed connection opened; cone <-> symmetric it
# cannot succeed, and what it did is reported.
PAIR_A="${NAT[n1]} <-> ${NAT[n2]}"
REPORT_A=$(punch_report "$PAIR_A")
echo "$REPORT_A"
relayed_by_r p1 "${PEER[p2]}" || RELAYED_MS="" # not a relayed latency after all

log "(4) p3 asks r for a third relay slot (reservations: 2, held by p1 and p2)"
start p3 "${PRIVATE[@]}" "${R_RELAY[@]}"
# no_slot NODE: NODE is connected to r, its daemon runs and answers, and
# its status says private with no relayed address.
no_slot() {
	local st
	is_conn "$1" "$R_ID" direct || return 1
	kill -0 "${DAEMON[$1]}" || return 1
	st=$(cli "$1" status --json) || return 1
	echo "  $1's status: $(json '{k: j.get(k) for k in ("reachability", "relay_addrs")}' <<<"$st")"
	[ "$(json 'j.get("reachability")' <<<"$st")" = private ] &&
		[ "$(json 'len(j.get("relay_addrs") or [])' <<<"$st")" = 0 ]
}
# p1 and p2 had their slots within a second; p3 is given a few more.
wait_for 5 is_conn p3 "$R_ID" direct || true
sleep 3
check "(4) p3 is refused a slot: running, connected to r, private, no relayed address" no_slot p3
LOGGED=$(grep -i 'relay\|reserv\|slot' "$WORK/run-p3.err" | tail -3 | tr '\n' ' ' || true)
echo "  p3's log lines on relays: ${LOGGED:-none}"
check "(4) p1 and p2 keep their slots" eval 'relayed p1 >/dev/null && relayed p2 >/dev/null'
# The refusal was the limit's: with p2 gone, a restarted p3 gets the slot.
stop p2
stop p3
start p3 "${PRIVATE[@]}" "${R_RELAY[@]}"
check "(4) with p2 stopped, a restarted p3 gets the freed slot" reachable p3
stop p3
# A node with no static relay reserves on the relays among its peers.
start p3 "${PRIVATE[@]}"
check "(1) p3, with no static relay, finds r among its peers and is reachable within ${REACHABLE_WITHIN} s" reachable p3
stop p3

log "(3) n2 made a cone, p2 restarted (nothing remembered): p1 <-> p2 across ${NAT[n1]} <-> cone"
set_nat n2 cone
rm -f "$WORK/p2/peers.json"
start p2 "${PRIVATE[@]}" "${R_RELAY[@]}"
check "(3) the restarted p2 is reachable through r again" reachable p2
T_PUNCH=$(date +%s.%N)
check "(3) p1 finds p2's quoter again" wait_for 10 finds p1
PAIR_B="${NAT[n1]} <-> ${NAT[n2]}"
check "(3) DCUtR makes p1 <-> p2 ($PAIR_B) a direct connection" wait_for 10 punched
echo "  $(elapsed "$T_PUNCH") s after p1 looked for p2's quoter"
REPORT_B=$(punch_report "$PAIR_B")
echo "$REPORT_B"
check "(2) p1's request for a quote completes, won by p2's quoter" quote_from_p2 p1
DIRECT_MS=""
if punched; then
	check "(5) three more negotiations p1 -> p2 over the direct connection complete" measure DIRECT_MS
	punched || DIRECT_MS="" # not a direct latency after all
fi

# A restarted node redials the peers it remembers at once, p1 through r
# here: that connection is to be made direct as well.
log "(3) p2 restarted again, remembering p1"
stop p2
start p2 "${PRIVATE[@]}" "${R_RELAY[@]}"
T_PUNCH=$(date +%s.%N)
check "(3) after p2's restart, DCUtR makes p1 <-> p2 direct again" wait_for 10 punched
echo "  $(elapsed "$T_PUNCH") s after p2's start; p1 -> p2: $(conn p1 "${PEER[p2]}")"
REPORT_C=$(punch_report "$PAIR_B, p2 restarted")
echo "$REPORT_C"
RTT=$(probe p1 rtt "$R_IP" 3478 20 2>/dev/null || echo "?")
# ms NAME "WALL WORK": a latency, as measured, or why not.
ms() { if [ -n "$2" ]; then echo "$1 ${2% *} ms (work ${2#* } ms)"; else echo "$1 not measured"; fi; }
echo "  (5) negotiation latency, median of 3 'parley request' with a $BID_WINDOW bid window:" \
	"$(ms relayed "$RELAYED_MS"), $(ms direct "$DIRECT_MS"); p1 <-> r UDP round trip ${RTT} ms"
for n in r p1 p2; do stop "$n"; done

# --- summary

echo "nat: NAT types made: n1 ${NAT[n1]}, n2 symmetric then ${NAT[n2]}, n3 ${NAT[n3]}; ${#NSS[@]} namespaces, $(elapsed "$T0") s"
echo "nat: ${REPORT_A#  }"
echo "nat: ${REPORT_B#  }"
echo "nat: ${REPORT_C#  }"
echo "nat: latency: $(ms relayed "$RELAYED_MS"), $(ms direct "$DIRECT_MS")"
if [ "$FAILED" != 0 ]; then
	for n in r p1 p2 p3; do
		[ -f "$WORK/run-$n.err" ] || continue
		echo "--- node $n stderr (last 15 lines)"
		tail -15 "$WORK/run-$n.err"
	done
	echo "nat: FAIL"
	exit 1
fi
echo "nat: PASS"
