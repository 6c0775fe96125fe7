#!/bin/sh
# An exec agent in plain shell: parley runs it once per phase with a JSON
# request on stdin and reads one JSON reply from stdout.
#   bid phase     -> {"bid":{"price":N,"eta":"1s","rationale":"…"}} or {"refuse":"why"}
#   execute phase -> {"result":…} or {"error":"why"}
# Wire it up in <home>/config.yaml:
#   agents:
#     - name: default
#     - name: quoter
#       capabilities: [quote]
#       exec: ["sh", "/path/to/examples/shell/quote.sh"]
request=$(cat)
case "$request" in
*'"phase":"bid"'*)
	echo '{"bid":{"price":3,"eta":"500ms","rationale":"a shell script quotes fast"}}'
	;;
*'"phase":"execute"'*)
	# The full input reaches only the winner; echo its size back.
	size=$(printf '%s' "$request" | wc -c | tr -d ' ')
	printf '{"result":{"quote":42,"currency":"EUR","request_bytes":%s}}\n' "$size"
	;;
*)
	echo "unknown phase" >&2
	exit 2
	;;
esac
