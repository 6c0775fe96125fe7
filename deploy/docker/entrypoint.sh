#!/bin/sh
# The parley image's entrypoint: it makes the node's home on the first start
# (parley init, when the home has no node key), then runs the daemon. It is
# plain POSIX sh and needs nothing from the image, so it runs outside a
# container too.
#
# Environment:
#   PARLEY_HOME        the node's home (the image: /var/lib/parley, a volume)
#   PARLEY_LISTEN      listen multiaddrs, space-separated (default: TCP and
#                      QUIC on 0.0.0.0 port 4001; empty: config.yaml's)
#   PARLEY_BOOTSTRAP   bootstrap multiaddrs, space-separated, each ending in
#                      /p2p/<PeerID>
#   PARLEY_CONFIG      a config.yaml to install into the home at every start
#                      (agents, limits; see 'parley init')
#   PARLEY_PEER_FILE   write this node's PeerID to this file before starting,
#                      for nodes that bootstrap to it
#   PARLEY_BOOTSTRAP_PEER_FILE, PARLEY_BOOTSTRAP_ADDR
#                      bootstrap to the node whose PEER_FILE this is (on a
#                      shared volume), at this address without its /p2p/
#                      part, e.g. /dns4/bootstrap/tcp/4001; waits up to
#                      PARLEY_BOOTSTRAP_WAIT seconds (default 60) for the file
#   PARLEY_BIN         the parley binary (default: parley on $PATH)
#
# Arguments are more flags for 'parley run' (say --no-mdns). A first argument
# that is not a flag is a command to run instead, such as 'parley status'.
set -eu
set -f # multiaddrs are split at spaces, never globbed
umask 077

if [ "$#" -gt 0 ] && [ "${1#-}" = "$1" ]; then
	exec "$@"
fi

fail() {
	echo "parley-entrypoint: $*" >&2
	exit 1
}

parley=${PARLEY_BIN:-parley}
home=${PARLEY_HOME:-}
[ -n "$home" ] || fail "PARLEY_HOME is not set: it names the node's home"

if [ ! -e "$home/keys/node.key" ]; then
	# init prints the new PeerID and AgentID: to the log, since stdout is
	# for the lines of 'parley run'.
	"$parley" init --home "$home" >&2
fi

if [ -n "${PARLEY_CONFIG:-}" ]; then
	if [ ! -f "$PARLEY_CONFIG" ] || [ ! -r "$PARLEY_CONFIG" ]; then
		fail "PARLEY_CONFIG $PARLEY_CONFIG is not a readable file"
	fi
	cp "$PARLEY_CONFIG" "$home/.config.yaml.new"
	mv "$home/.config.yaml.new" "$home/config.yaml"
fi

if [ -n "${PARLEY_PEER_FILE:-}" ]; then
	peer=$("$parley" id --home "$home" | sed -n 's/^peer: //p')
	[ -n "$peer" ] || fail "parley id --home $home printed no PeerID"
	printf '%s\n' "$peer" >"$PARLEY_PEER_FILE.new"
	chmod 0644 "$PARLEY_PEER_FILE.new"
	mv "$PARLEY_PEER_FILE.new" "$PARLEY_PEER_FILE"
fi

if [ -n "${PARLEY_BOOTSTRAP_PEER_FILE:-}" ]; then
	[ -n "${PARLEY_BOOTSTRAP_ADDR:-}" ] || fail "PARLEY_BOOTSTRAP_PEER_FILE needs PARLEY_BOOTSTRAP_ADDR, the address to dial that node at (e.g. /dns4/bootstrap/tcp/4001)"
	wait=${PARLEY_BOOTSTRAP_WAIT:-60}
	until [ -s "$PARLEY_BOOTSTRAP_PEER_FILE" ]; do
		[ "$wait" -gt 0 ] || fail "no PeerID in $PARLEY_BOOTSTRAP_PEER_FILE after ${PARLEY_BOOTSTRAP_WAIT:-60} s; the node to bootstrap to writes it (its PARLEY_PEER_FILE) on a volume shared with this one"
		sleep 1
		wait=$((wait - 1))
	done
	bootstrap_peer=$(sed -n 1p "$PARLEY_BOOTSTRAP_PEER_FILE")
	set -- "$@" --bootstrap "${PARLEY_BOOTSTRAP_ADDR%/}/p2p/$bootstrap_peer"
fi
for addr in ${PARLEY_BOOTSTRAP:-}; do
	set -- "$@" --bootstrap "$addr"
done
for addr in ${PARLEY_LISTEN-/ip4/0.0.0.0/tcp/4001 /ip4/0.0.0.0/udp/4001/quic-v1}; do
	set -- "$@" --listen "$addr"
done

exec "$parley" run --home "$home" "$@"
