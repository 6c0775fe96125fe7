#!/bin/sh
# An exec agent that haggles: it bids 3, accepts a counter-offer of at
# least 2.5 and answers a lower one with 2.5. parley runs it once per phase
# with a JSON request on stdin and reads one JSON reply from stdout.
#   bid phase     -> {"bid":{"price":N,"eta":"1s","rationale":"…"}} or {"refuse":"why"}
#   counter phase -> {"bid":{…}} (the counter's terms: accept; others: revise) or {"refuse":"why"} (the bid stands)
#   execute phase -> {"result":…} or {"error":"why"}
# The counter phase's request holds {"counter":{"price":N,"eta":"…","terms":"…","round":R,"bid":{your last bid}}}.
request=$(cat)
case "$request" in
*'"phase":"bid"'*)
	echo '{"bid":{"price":3,"eta":"500ms","rationale":"list price"}}'
	;;
*'"phase":"counter"'*)
	price=$(printf '%s' "$request" | sed -n 's/.*"counter":{"price":\([0-9.e+-]*\).*/\1/p')
	if awk -v p="$price" 'BEGIN { exit !(p >= 2.5) }'; then
		printf '{"bid":{"price":%s,"eta":"500ms","rationale":"deal"}}\n' "$price"
	else
		echo '{"bid":{"price":2.5,"eta":"500ms","rationale":"2.5 is my floor"}}'
	fi
	;;
*'"phase":"execute"'*)
	price=$(printf '%s' "$request" | sed -n 's/.*"bid":{"price":\([0-9.e+-]*\).*/\1/p')
	printf '{"result":{"sold_at":%s}}\n' "$price"
	;;
*)
	echo "unknown phase" >&2
	exit 2
	;;
esac
