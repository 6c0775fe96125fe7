# What run.sh and nat.sh share: sourced by them, after `set -euo pipefail`.
# It sets the cleanup trap, so source it before making anything. Scripts
# list each namespace in NSS before they make it and set WORK to their
# work directory; on success, failure or interrupt the trap stops every job
# of the script still running (by PID) and anything left inside those
# namespaces, then removes them and WORK (PARLEY_NETNS_KEEP=1 keeps WORK).

# shellcheck shell=bash disable=SC2034 # FAILED is read by the scripts
NSS=()    # namespaces made, for cleanup
FAILED=0  # set to 1 by a failed check
WORK=""

log() { printf '%s %s\n' "$(date +%T)" "$*"; }

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	# Only this shell's own background jobs still running: never a PID
	# that has exited (and might have been reused).
	local p live
	live=$(jobs -pr)
	for p in $live; do kill -TERM "$p" 2>/dev/null || true; done
	for p in $live; do
		for _ in $(seq 1 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	local ns
	for ns in "${NSS[@]}"; do
		# Anything still inside a namespace of ours was started by this
		# script (a daemon whose job ended first, say): stop it by PID
		# before the namespace goes, which would not stop it.
		for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
		ip netns del "$ns" 2>/dev/null || true
	done
	if [ -n "$WORK" ]; then
		if [ -n "${PARLEY_NETNS_KEEP:-}" ]; then echo "netns: kept $WORK"; else rm -rf "$WORK"; fi
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

skip() { echo "SKIP: $*"; exit 77; }

# need_netns: skip unless this is root and can list network namespaces.
need_netns() {
	[ "$(id -u)" = 0 ] || skip "needs root to make network namespaces"
	command -v ip >/dev/null || skip "needs iproute2 (ip)"
	ip netns list >/dev/null 2>&1 || skip "'ip netns list' fails here"
}

elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

# wait_for SECONDS CMD…: run CMD every 0.5 s until it succeeds.
wait_for() {
	local s=$1; shift
	for _ in $(seq 1 $((s * 2))); do "$@" && return 0; sleep 0.5; done
	return 1
}

check() { # check NAME CMD…
	local name=$1 t0; shift
	t0=$(date +%s.%N)
	if "$@"; then
		echo "PASS: $name ($(elapsed "$t0") s)"
	else
		echo "FAIL: $name ($(elapsed "$t0") s)"
		FAILED=1
	fi
}

# await_api NODE: wait (10 s at most) until the daemon started in the
# background as DAEMON[NODE] has printed its api: line to
# $WORK/run-NODE.out; else show its log and fail.
await_api() {
	local n=$1
	for _ in $(seq 1 100); do
		grep -q '^api:' "$WORK/run-$n.out" 2>/dev/null && return 0
		kill -0 "${DAEMON[$n]}" 2>/dev/null || break
		sleep 0.1
	done
	echo "node $n did not start:"; tail -20 "$WORK/run-$n.err"; return 1
}

# stop NODE: SIGTERM, as an operator would, and wait for a clean exit.
stop() {
	local n=$1 pid=${DAEMON[$1]}
	kill -TERM "$pid"
	if ! wait "$pid"; then
		echo "FAIL: node $n did not exit cleanly after SIGTERM"
		FAILED=1
	fi
	unset "DAEMON[$n]"
}
