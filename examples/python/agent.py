#!/usr/bin/env python3
"""A parley agent in Python, standard library only.

It registers with the local daemon's API, listens on its event stream for
calls for proposals and awards, bids, reports progress and posts results.

    python3 examples/python/agent.py --home ~/.parley --name pyquoter --capability quote

Stop it with Ctrl-C; the tasks it holds are then failed over by the
requester to the next best bid.
"""

import argparse
import json
import os
import sys
import urllib.request


def api(home):
    with open(os.path.join(home, "api")) as f:
        url = f.read().strip()
    with open(os.path.join(home, "api.token")) as f:
        token = f.read().strip()
    return url, token


def post(url, token, path, body):
    req = urllib.request.Request(
        url + path,
        data=json.dumps(body).encode(),
        headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)


def events(url, token, name):
    """Yields (event type, data) from the agent's Server-Sent Events stream."""
    req = urllib.request.Request(
        url + "/v1/external/events?agent=" + urllib.request.quote(name),
        headers={"Authorization": "Bearer " + token, "Accept": "text/event-stream"},
    )
    with urllib.request.urlopen(req) as resp:
        kind, data = None, []
        for raw in resp:
            line = raw.decode().rstrip("\n")
            if line.startswith(":"):
                continue  # comment or ping
            if line.startswith("event: "):
                kind = line[len("event: "):]
            elif line.startswith("data: "):
                data.append(line[len("data: "):])
            elif line == "" and data:
                yield kind, json.loads("\n".join(data))
                kind, data = None, []


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", default=os.environ.get("PARLEY_HOME", os.path.expanduser("~/.parley")))
    ap.add_argument("--name", default="pyquoter")
    ap.add_argument("--capability", default="quote")
    ap.add_argument("--price", type=float, default=2.0)
    args = ap.parse_args()

    url, token = api(args.home)
    me = post(url, token, "/v1/external/agents", {"name": args.name, "capabilities": [args.capability]})
    print("registered", me["name"], me["id"], flush=True)

    for kind, ev in events(url, token, args.name):
        task = ev["task"]
        if kind == "call":
            post(url, token, "/v1/external/bid", {
                "agent": args.name, "task": task, "price": args.price, "eta": "200ms",
                "rationale": "python can",
            })
            print("bid on", task, flush=True)
        elif kind == "award":
            post(url, token, "/v1/external/progress", {"agent": args.name, "task": task, "fraction": 0.5, "note": "working"})
            result = {"quote": 7, "by": "python", "input": ev.get("input")}
            post(url, token, "/v1/external/result", {"agent": args.name, "task": task, "result": result})
            print("done", task, flush=True)
        elif kind == "cancel":
            print("canceled", task, flush=True)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
