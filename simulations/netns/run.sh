#!/usr/bin/env bash
# Separate-hosts test: real `parley run` daemons, each in its own network
# namespace, joined by a Linux bridge. It checks
#   (a) with no bootstrap flags, mDNS alone forms the mesh and an intent
#       published on node a reaches every node;
#   (b) with mDNS off, a bootstrap chain a <- b <- c <- d (b bootstraps a,
#       c bootstraps b, d bootstraps c) carries intents from d to a and from
#       a to d;
#   (c) after kill -9 of node c (in the mDNS mesh), the others still
#       exchange intents;
#   (d) node c, restarted with no bootstrap flag and mDNS off, rejoins from
#       the peers it remembered in <home>/peers.json and receives intents.
#
# Usage: run.sh PARLEY_BINARY
# Environment: PARLEY_NETNS_PREFIX names what it creates (default
# parley-<pid>); it must be unique on the machine. PARLEY_NETNS_KEEP=1
# keeps the work directory (homes, logs, subscriber output) for a look.
#
# Needs root and iproute2. Where it cannot make network namespaces it
# prints "SKIP: <why>" and exits 77. It makes one namespace for the bridge
# and one per node; veths are created directly inside them, and addresses
# (10.77.0.0/24) exist only inside them, so nothing outside is addressed or
# changed. A trap stops every process it started (its own running jobs,
# by PID), then removes every namespace and file it made, on success,
# failure or interrupt. Prints one PASS or FAIL line per check and
# exits non-zero if any failed.
set -euo pipefail

BIN=${1:?usage: run.sh PARLEY_BINARY}
P=${PARLEY_NETNS_PREFIX:-parley-$$}
NODES=(a b c d)
SUBNET=10.77.0
DELIVER_WITHIN=20 # seconds: a delivery check publishes once a second for this long

declare -A IP=([a]=$SUBNET.11 [b]=$SUBNET.12 [c]=$SUBNET.13 [d]=$SUBNET.14)
declare -A DAEMON=() # node -> PID of its running daemon
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
need_netns
[ -x "$BIN" ] || { echo "FAIL: $BIN is not an executable"; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/$P.XXXXXX")

SW=$P-sw
NSS+=("$SW") # listed first, so an interrupt right after the add still removes it
ip netns add "$SW" 2>/dev/null || skip "cannot make a network namespace ('ip netns add' failed)"
ip -n "$SW" link add br0 type bridge mcast_snooping 0 2>/dev/null || skip "cannot make a bridge (no bridge support?)"
ip -n "$SW" link set br0 up
ns() { echo "$P-$1"; }
for n in "${NODES[@]}"; do
	NSS+=("$(ns "$n")")
	ip netns add "$(ns "$n")"
	# Both ends are made inside namespaces of ours: eth0 on the node, v-<n>
	# on the bridge.
	ip -n "$SW" link add "v-$n" type veth peer name eth0 netns "$(ns "$n")"
	ip -n "$SW" link set "v-$n" master br0 multicast on up
	ip -n "$(ns "$n")" link set lo up
	ip -n "$(ns "$n")" addr add "${IP[$n]}/24" dev eth0
	ip -n "$(ns "$n")" link set eth0 multicast on up
done

# cli NODE CMD…: run a parley command inside the node's namespace, where
# its daemon's API (on that namespace's loopback) is.
cli() { local n=$1; shift; ip netns exec "$(ns "$n")" "$BIN" "$@" --home "$WORK/$n"; }

# start NODE [RUN FLAGS…]: start the node's daemon and wait until it is
# ready (it printed its api: line).
start() {
	local n=$1; shift
	# Emptied here, not by the background job's redirection, so the wait
	# below never reads a previous run's lines.
	: >"$WORK/run-$n.out"
	# ip netns exec execs the daemon, so $! is the daemon's PID.
	ip netns exec "$(ns "$n")" "$BIN" run --home "$WORK/$n" --listen "/ip4/${IP[$n]}/tcp/4001" "$@" \
		>"$WORK/run-$n.out" 2>>"$WORK/run-$n.err" &
	DAEMON[$n]=$!
	await_api "$n"
}


# listen NODE: the node's /ip4/…/p2p/… address, for --bootstrap.
listen() { grep '^listen: /ip4/' "$WORK/run-$1.out" | head -1 | cut -d' ' -f2; }

# subscribe CAP NODE…: a `parley subscribe --json` on each node, its
# output in $WORK/sub-CAP-NODE.
subscribe() {
	local cap=$1 n; shift
	for n in "$@"; do
		ip netns exec "$(ns "$n")" "$BIN" subscribe --home "$WORK/$n" --capability "$cap" --json \
			>"$WORK/sub-$cap-$n" 2>>"$WORK/sub-$cap-$n.err" &
	done
}

# deliver FROM CAP NODE…: publish a fresh intent on CAP from FROM once a
# second until every NODE's subscriber printed it, for at most
# DELIVER_WITHIN s; prints how long it took.
deliver() {
	local from=$1 cap=$2; shift 2
	local mark="m$RANDOM$RANDOM" t0 n ok
	t0=$(date +%s.%N)
	local end=$(($(date +%s) + DELIVER_WITHIN)) i=0
	while [ "$(date +%s)" -lt "$end" ]; do
		i=$((i + 1))
		cli "$from" publish --capability "$cap" --payload "{\"mark\":\"$mark\",\"try\":$i}" >/dev/null 2>>"$WORK/publish.err" || true
		for _ in 1 2 3 4 5; do
			sleep 0.2
			ok=1
			for n in "$@"; do grep -q "\"$mark\"" "$WORK/sub-$cap-$n" 2>/dev/null || ok=0; done
			if [ "$ok" = 1 ]; then
				echo "  $from -> $* on $cap: $(elapsed "$t0") s, $i publish(es)"
				return 0
			fi
		done
	done
	for n in "$@"; do
		grep -q "\"$mark\"" "$WORK/sub-$cap-$n" 2>/dev/null && continue
		echo "  node $n never received $from's intent; its subscriber said: $(tr '\n' ' ' <"$WORK/sub-$cap-$n.err")"
	done
	return 1
}

# peers NODE: "<peer> <source>" per connected peer.
peers() {
	cli "$1" peers --json | grep -o '"id":"[^"]*"\|"source":"[^"]*"' | cut -d'"' -f4 | paste - - || true
}

# sources NODE: the sources of its peers, e.g. "mdns mdns inbound".
sources() { peers "$1" | awk '{print $2}' | sort | tr '\n' ' '; }

has_peers() { [ "$(peers "$1" | wc -l)" -ge "$2" ]; }
# found_by NODE SOURCE: NODE has a peer it found by SOURCE.
found_by() { peers "$1" | awk -v s="$2" '$2 == s { found = 1 } END { exit !found }'; }
# remembers_all NODE: its peers.json names every peer it is connected to.
remembers_all() {
	local p ids
	ids=$(peers "$1" | awk '{print $1}')
	[ -n "$ids" ] && [ -s "$WORK/$1/peers.json" ] || return 1
	for p in $ids; do grep -q "\"$p\"" "$WORK/$1/peers.json" || return 1; done
}

for n in "${NODES[@]}"; do "$BIN" init --home "$WORK/$n" >/dev/null; done
T0=$(date +%s)

log "(a) four nodes, no bootstrap flags, mDNS on (the default)"
for n in "${NODES[@]}"; do start "$n"; done
subscribe a "${NODES[@]}"
check "(a) mDNS alone forms the mesh: every node is connected to the 3 others" \
	wait_for 10 eval 'has_peers a 3 && has_peers b 3 && has_peers c 3 && has_peers d 3'
check "(a) an intent published on a reaches a, b, c and d" deliver a a a b c d
for n in "${NODES[@]}"; do echo "  $n's peers found by: $(sources "$n")"; done

log "(c) kill -9 of node c"
# c remembers its peers within a second of meeting them; wait until its
# file names them all, so (d) tests what a killed node kept.
check "(c) node c's peers.json names every peer it is connected to" wait_for 10 remembers_all c
kill -KILL "${DAEMON[c]}"
wait "${DAEMON[c]}" 2>/dev/null || true
unset "DAEMON[c]"
subscribe c a b d
check "(c) after kill -9 of c, an intent from a reaches b and d" deliver a c b d
check "(c) after kill -9 of c, an intent from d reaches a and b" deliver d c a b

log "(d) node c restarts with no bootstrap flag and mDNS off"
start c --no-mdns
subscribe d "${NODES[@]}"
check "(d) restarted c reconnects to a remembered peer" wait_for 15 found_by c remembered
echo "  c's peers found by: $(sources c)"
check "(d) an intent from a reaches the restarted c (and b, d)" deliver a d b c d
check "(d) an intent from the restarted c reaches a, b and d" deliver c d a b d
for n in "${NODES[@]}"; do stop "$n"; done

log "(b) mDNS off, bootstrap chain a <- b <- c <- d, nothing remembered"
for n in "${NODES[@]}"; do rm -f "$WORK/$n/peers.json"; done
start a --no-mdns
start b --no-mdns --bootstrap "$(listen a)"
start c --no-mdns --bootstrap "$(listen b)"
start d --no-mdns --bootstrap "$(listen c)"
subscribe b "${NODES[@]}"
check "(b) chain: an intent from d reaches a (and b, c)" deliver d b a b c
check "(b) chain: an intent from a reaches d (and b, c)" deliver a b b c d
# Beyond the chain's links, the DHT's lookups may have connected more
# pairs; what each end sees is reported, not required.
for n in a d; do echo "  $n's peers found by: $(sources "$n")"; done
for n in "${NODES[@]}"; do stop "$n"; done

echo "netns: ${#NODES[@]} namespaces, $(($(date +%s) - T0)) s"
if [ "$FAILED" != 0 ]; then
	for n in "${NODES[@]}"; do
		echo "--- node $n stderr (last 15 lines)"
		tail -15 "$WORK/run-$n.err" 2>/dev/null || true
	done
	echo "netns: FAIL"
	exit 1
fi
echo "netns: PASS"
