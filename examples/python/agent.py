#!/usr/bin/env python3
"""A parley agent in Python, standard library only.

The operator registers the agent with the daemon once, which gives it a
token good only for this agent's own /v1/external/* calls (not for
approvals, not for other agents):

    parley agents register --name pyquoter --capability quote --token-file pyquoter.token
    python3 examples/python/agent.py --home ~/.parley --token-file pyquoter.token

The program then listens on its event stream for calls for proposals and
awards, bids, reports progress and posts results. It never needs the
operator token in <home>/api.token. When the daemon restarts, it
reconnects (the registration and the token survive the restart).

Stop it with Ctrl-C; the tasks it holds are then failed over by the
requester to the next best bid.
"""

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request


class Revoked(Exception):
    """The daemon no longer accepts the token (deregistered or re-registered)."""


def api_url(args):
    if args.api:
        return args.api.rstrip("/")
    with open(os.path.join(args.home, "api")) as f:
        return f.read().strip()


def read_token(args):
    token = os.environ.get("PARLEY_AGENT_TOKEN", "")
    if args.token_file:
        with open(args.token_file) as f:
            token = f.read().strip()
    if not token:
        sys.exit("agent.py: no token: give --token-file (from 'parley agents register ... --token-file FILE') or set PARLEY_AGENT_TOKEN")
    return token


def post(url, token, path, body):
    req = urllib.request.Request(
        url + path,
        data=json.dumps(body).encode(),
        headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as e:
        if e.code == 401:
            raise Revoked(error_message(e))
        # A 409 (the call closed, the task moved on) is the daemon's answer,
        # not a reason to stop.
        print("daemon refused", path, e.code, error_message(e), file=sys.stderr, flush=True)
        return None


def error_message(e):
    try:
        return json.load(e).get("error", str(e))
    except (ValueError, AttributeError):
        return str(e)


def events(url, token, name):
    """Yields (event type, data) from the agent's Server-Sent Events stream."""
    req = urllib.request.Request(
        url + "/v1/external/events?agent=" + urllib.request.quote(name),
        headers={"Authorization": "Bearer " + token, "Accept": "text/event-stream"},
    )
    try:
        resp = urllib.request.urlopen(req)
    except urllib.error.HTTPError as e:
        if e.code in (401, 403, 404):
            raise Revoked(error_message(e))
        raise
    with resp:
        print("connected", name, flush=True)
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


def serve(url, token, args):
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", default=os.environ.get("PARLEY_HOME", os.path.expanduser("~/.parley")),
                    help="the daemon's home, where its api file names its URL")
    ap.add_argument("--api", help="the daemon's API URL (default: read from <home>/api)")
    ap.add_argument("--token-file", help="the agent's token, from 'parley agents register --token-file' (or set PARLEY_AGENT_TOKEN)")
    ap.add_argument("--name", default="pyquoter", help="the name the agent was registered under")
    ap.add_argument("--price", type=float, default=2.0)
    args = ap.parse_args()
    token = read_token(args)

    delay = 0.5
    while True:
        try:
            url = api_url(args)  # a restarted daemon may listen elsewhere
            serve(url, token, args)
            delay = 0.5  # the daemon ended the stream: it is restarting
        except Revoked as e:
            sys.exit("agent.py: the daemon refused this agent's token: %s" % e)
        except (OSError, urllib.error.URLError) as e:
            print("daemon unreachable, retrying:", e, file=sys.stderr, flush=True)
        time.sleep(delay)
        delay = min(delay * 2, 10)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
