#!/bin/sh
# An exec agent that uses its workflow's shared context. In the execute
# phase the request carries "context" (the keys its step may read, key ->
# JSON value) and "context_writes" (the keys it may write; a trailing *
# is a prefix); a "context" object in the reply is written back, signed as
# the agent, before the result goes to the requester.
#   execute phase -> {"result":…, "context":{"stock.level":7}}
request=$(cat)
case "$request" in
*'"phase":"bid"'*)
	echo '{"bid":{"price":1,"eta":"10ms","rationale":"stock counted from the shelf"}}'
	;;
*'"phase":"execute"'*)
	# Plain sh has no JSON parser: take the flat objects as they come.
	ctx=$(printf '%s' "$request" | sed -n 's/.*"context":\({[^}]*}\).*/\1/p')
	writes=$(printf '%s' "$request" | sed -n 's/.*"context_writes":\(\[[^]]*\]\).*/\1/p')
	printf '{"result":{"saw":%s,"may_write":%s},"context":{"stock.level":7}}\n' "${ctx:-null}" "${writes:-null}"
	;;
*)
	echo "unknown phase" >&2
	exit 2
	;;
esac
