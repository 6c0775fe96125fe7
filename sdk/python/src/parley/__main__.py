"""``python -m parley``: check the daemon, or request a task, from a shell.

    python -m parley node [--home DIR]
    python -m parley request --capability C [--input JSON] [--budget N] [--timeout 10s] [--home DIR]

Prints JSON on stdout. Problems are one line on stderr and exit status 1
(2 for bad arguments), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, List, Optional

from . import Client, ParleyError, TaskFailed


def _json_arg(flag: str, value: Optional[str]) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError as e:
        raise SystemExit("parley: %s %.60r is not JSON: %s" % (flag, value, e))


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m parley", description="Talk to a parley daemon's local API.")
    ap.add_argument("--home", help="the daemon's home (default: $PARLEY_HOME, else ~/.parley)")
    ap.add_argument("--api", help="the daemon's API URL (default: read from <home>/api)")
    ap.add_argument("--token", help="the operator token (default: read from <home>/api.token)")
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("node", help="print the node's PeerID, addresses and agents")
    rq = sub.add_parser("request", help="negotiate one task and print its outcome")
    rq.add_argument("--capability", required=True)
    rq.add_argument("--input", help="the task's input, a JSON value (only the winner sees it)")
    rq.add_argument("--summary", help="the call's public part, a JSON value")
    rq.add_argument("--budget", type=float)
    rq.add_argument("--bid-window", help="how long bids are taken, e.g. 2s")
    rq.add_argument("--timeout", help="the whole task's deadline, e.g. 30s")
    rq.add_argument("--strategy", choices=["cheapest", "fastest"])
    args = ap.parse_args(argv)

    client = Client(args.home, url=args.api, token=args.token)
    try:
        if args.command == "node":
            print(json.dumps(client.node()))
            return 0
        out = client.request(args.capability, _json_arg("--input", args.input), summary=_json_arg("--summary", args.summary),
                             budget=args.budget, bid_window=args.bid_window, timeout=args.timeout, strategy=args.strategy)
        print(json.dumps(out.raw))
        return 0
    except TaskFailed as e:
        print(json.dumps(e.outcome.raw))
        print("parley: %s" % e, file=sys.stderr)
        return 1
    except ParleyError as e:
        print("parley: %s" % e, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
