#!/bin/sh
# An exec agent that asks before it works: its first execute run asks the
# requester which size, and parley runs it again with the answer.
#   bid phase     -> {"bid":{"price":N,"eta":"1s","rationale":"…"}}
#   execute phase -> {"ask":{"note":"…","schema":{…}}} while it needs input,
#                    then {"result":…} (or {"error":"why"})
# Each answer comes back in the next execute run's request:
# {"answers":[{"note":"which size?","schema":{…},"answer":"M"}]}.
request=$(cat)
case "$request" in
*'"phase":"bid"'*)
	echo '{"bid":{"price":2,"eta":"1s","rationale":"made to measure"}}'
	;;
*'"phase":"execute"'*'"answers":'*)
	size=$(printf '%s' "$request" | sed -n 's/.*"answer":"\([^"]*\)".*/\1/p')
	printf '{"result":{"size":"%s"}}\n' "$size"
	;;
*'"phase":"execute"'*)
	echo '{"ask":{"note":"which size?","schema":{"enum":["S","M","L"]}}}'
	;;
*)
	echo "unknown phase" >&2
	exit 2
	;;
esac
