#!/usr/bin/env python3
"""A parley agent in Python, on the parley package (sdk/python).

Either the operator registers the agent once, which gives it a token good
only for this agent's own calls (not for approvals, not for other agents):

    parley agents register --name pyquoter --capability quote --token-file pyquoter.token
    python3 examples/python/agent.py --name pyquoter --token-file pyquoter.token

or, run by the operator, it registers itself with the daemon's operator
token in <home>/api.token, and again after every daemon restart:

    python3 examples/python/agent.py --name pyquoter --capability quote

It bids on every call, reports progress and returns a quote. When the daemon
restarts it reconnects as the same agent (same AgentID). Ctrl-C stops it
(exit 0); a problem it cannot mend is one line on stderr and exit 1.
Install the package with: pip install ./sdk/python (or PYTHONPATH=sdk/python/src).
"""

import argparse
import os

import parley

ap = argparse.ArgumentParser(description="A parley agent that quotes.")
ap.add_argument("--home", help="the daemon's home (default: $PARLEY_HOME, else ~/.parley)")
ap.add_argument("--api", help="the daemon's API URL (default: read from <home>/api)")
ap.add_argument("--token-file", help="the agent's token from 'parley agents register --token-file' "
                "(or set PARLEY_AGENT_TOKEN); without one the agent registers itself")
ap.add_argument("--name", default="pyquoter", help="the agent's name")
ap.add_argument("--capability", action="append", help="what it offers when it registers itself (default: quote)")
ap.add_argument("--price", type=float, default=2.0)
args = ap.parse_args()

try:
    token = parley.read_token_file(args.token_file) if args.token_file else os.environ.get("PARLEY_AGENT_TOKEN")
except parley.ParleyError as e:
    ap.exit(1, "agent.py: %s\n" % e)
agent = parley.Agent(args.name, args.capability or ["quote"], home=args.home, url=args.api, agent_token=token or None)


@agent.on_connect
def connected(a):
    print(" ".join(["connected", a.name] + ([a.id] if a.id else [])), flush=True)


@agent.on_call
def bid(call):
    print("bid on", call.task, flush=True)
    return agent.bid(price=args.price, eta="200ms", rationale="python can")


@agent.on_task
def work(task):
    task.progress(0.5, "working")
    print("done", task.id, flush=True)
    return {"quote": 7, "by": "python", "input": task.input}


agent.main()
