#!/usr/bin/env bash
# Separate-hosts test: real `parley run` daemons in their own network
# namespaces, joined by a bridge, checking (a) mDNS alone forms the mesh,
# (b) a bootstrap chain with mDNS off still reaches everyone, (c) the mesh
# survives a kill -9, (d) the killed node rejoins from its remembered peers.
# Usage: run.sh PARLEY_BINARY. Needs root and iproute2; cleans up
# everything it made, even on failure. Only addresses inside the
# namespaces it creates (10.77.0.0/24) are used.
set -euo pipefail

BIN=${1:?usage: run.sh PARLEY_BINARY}
N=4
TAG="pn$$"
WORK=$(mktemp -d)
PIDS=()
ALL=() # every process started, for cleanup
FAILED=0

cleanup() {
	for p in "${ALL[@]:-}"; do
		[ -n "$p" ] && kill -9 "$p" 2>/dev/null || true
	done
	for i in $(seq 1 $N); do ip netns del "$TAG-$i" 2>/dev/null || true; done
	ip netns del "$TAG-sw" 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT

if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null; then
	echo "SKIP: needs root and iproute2 (ip netns)"; exit 0
fi
if ! ip netns add "$TAG-sw" 2>/dev/null; then
	echo "SKIP: cannot create network namespaces here"; exit 0
fi

nsx() { local i=$1; shift; ip netns exec "$TAG-$i" "$@"; }
ipof() { echo "10.77.0.$((10 + $1))"; }

# The switch: a bridge in its own namespace; each node gets a veth to it.
ip -n "$TAG-sw" link add br0 type bridge
ip -n "$TAG-sw" link set br0 up
for i in $(seq 1 $N); do
	ip netns add "$TAG-$i"
	ip link add "v$TAG$i" type veth peer name eth0 netns "$TAG-$i"
	ip link set "v$TAG$i" netns "$TAG-sw"
	ip -n "$TAG-sw" link set "v$TAG$i" master br0 up
	ip -n "$TAG-$i" link set lo up
	ip -n "$TAG-$i" addr add "$(ipof "$i")/24" dev eth0
	ip -n "$TAG-$i" link set eth0 multicast on up
done

start() { # start NODE [run flags…]: a daemon in the node's namespace
	local i=$1; shift
	# Not through nsx: a backgrounded function is a subshell, and $! would
	# be its PID, not the daemon's.
	ip netns exec "$TAG-$i" "$BIN" run --home "$WORK/h$i" --listen "/ip4/$(ipof "$i")/tcp/4001" "$@" \
		>"$WORK/run$i.out" 2>"$WORK/run$i.err" &
	PIDS[$i]=$!
	ALL+=("$!")
	for _ in $(seq 1 100); do
		grep -q '^api:' "$WORK/run$i.out" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "node $i did not start:"; cat "$WORK/run$i.err"; return 1
}
stop_all() {
	for p in "${PIDS[@]:-}"; do
		[ -n "$p" ] && kill "$p" 2>/dev/null || true
	done
	for p in "${PIDS[@]:-}"; do
		[ -n "$p" ] || continue
		for _ in $(seq 1 60); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$p" 2>/dev/null || true
	done
	PIDS=(); SUBS=()
}
addr() { grep '^listen:' "$WORK/run$1.out" | head -1 | cut -d' ' -f2; }
SUBS=()
subscribe() { # subscribe NODE CAP
	ip netns exec "$TAG-$1" "$BIN" subscribe --home "$WORK/h$1" --capability "$2" --json >"$WORK/sub$1-$2.out" 2>/dev/null &
	SUBS[$1]=$!
	PIDS+=("$!")
	ALL+=("$!")
}
# deliver FROM CAP NODES…: publish from FROM until every NODE's subscriber
# has the intent, for up to 25 s.
deliver() {
	local from=$1 cap=$2; shift 2
	local mark="m$RANDOM$RANDOM"
	for _ in $(seq 1 25); do
		nsx "$from" "$BIN" publish --home "$WORK/h$from" --capability "$cap" --payload "{\"mark\":\"$mark\"}" >/dev/null 2>&1 || true
		local ok=1
		for j in "$@"; do grep -q "$mark" "$WORK/sub$j-$cap.out" 2>/dev/null || ok=0; done
		[ $ok = 1 ] && return 0
		sleep 1
	done
	return 1
}
check() { # check NAME COMMAND…
	local name=$1; shift
	if "$@"; then echo "PASS: $name"; else echo "FAIL: $name"; FAILED=1; fi
}

for i in $(seq 1 $N); do "$BIN" init --home "$WORK/h$i" >/dev/null; done

# (a) mDNS alone: no bootstrap flags.
for i in $(seq 1 $N); do start "$i"; done
for i in $(seq 1 $N); do subscribe "$i" a; done
check "(a) mDNS alone forms the mesh; an intent from node 1 reaches all" deliver 1 a 2 3 4
stop_all

# (b) mDNS off, a bootstrap chain 1 <- 2 <- 3 <- 4.
for i in $(seq 1 $N); do rm -f "$WORK/h$i/peers.json"; done
start 1 --no-mdns
for i in $(seq 2 $N); do start "$i" --no-mdns --bootstrap "$(addr $((i - 1)))"; done
for i in $(seq 1 $N); do subscribe "$i" b; done
check "(b) mDNS off, bootstrap chain: node 4 reaches node 1" deliver 4 b 1
check "(b) mDNS off, bootstrap chain: node 1 reaches all" deliver 1 b 2 3 4

# (c) kill -9 node 3; the others still exchange intents.
kill -9 "${PIDS[3]}"; kill "${SUBS[3]}" 2>/dev/null || true
wait "${PIDS[3]}" 2>/dev/null || true
for i in 1 2 4; do subscribe "$i" c; done
check "(c) after kill -9 of node 3, nodes 1, 2, 4 still exchange intents" deliver 1 c 2 4

# (d) node 3 restarts with no flags and rejoins from peers.json.
start 3 --no-mdns
subscribe 3 d; for i in 1 2 4; do subscribe "$i" d; done
check "(d) node 3, restarted with no flags, rejoins from its remembered peers" deliver 1 d 3
stop_all

if [ $FAILED = 0 ]; then echo "netns: all checks passed"; else echo "netns: some checks failed"; exit 1; fi
