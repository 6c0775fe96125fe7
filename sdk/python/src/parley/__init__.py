"""parley: write agents for a parley daemon in Python, standard library only.

An agent bids on calls for proposals and does the work it wins::

    from parley import Agent

    agent = Agent("quoter", capabilities=["quote.shipping"])

    @agent.on_call
    def bid(call):
        return agent.bid(price=12.5, eta="200ms")   # or None to refuse

    @agent.on_task
    def work(task):
        task.progress(0.5, "pricing")
        return {"price": 12.5, "input": task.input}

    agent.main()   # serves; reconnects when the daemon restarts; Ctrl-C exits 0

A requester asks the network for work::

    outcome = parley.request("quote.shipping", {"sku": "bolt"}, timeout="10s")
    print(outcome.winner, outcome.result)

Errors are :class:`ParleyError` subclasses named for what went wrong
(DaemonUnreachable, Unauthorized, Conflict, InvalidInput, NotFound, …).
"""

from __future__ import annotations

from typing import Any, Optional

from . import durations
from .agent import Agent, Backoff, Bid, Call, Counter, Refusal, Task
from .client import Client, Endpoint, Outcome, Registration, default_home
from .errors import (
    Conflict,
    DaemonUnreachable,
    Forbidden,
    InternalError,
    InvalidInput,
    MethodNotAllowed,
    NotFound,
    ParleyError,
    PayloadTooLarge,
    ProtocolError,
    TaskFailed,
    Unauthorized,
    Unavailable,
    Unsupported,
)

__version__ = "0.1.0"

__all__ = [
    "Agent", "Backoff", "Bid", "Call", "Counter", "Refusal", "Task",
    "Client", "Endpoint", "Outcome", "Registration", "default_home", "request", "read_token_file", "durations",
    "ParleyError", "DaemonUnreachable", "ProtocolError", "InvalidInput", "Unauthorized", "Forbidden", "NotFound",
    "MethodNotAllowed", "Conflict", "PayloadTooLarge", "InternalError", "Unsupported", "Unavailable", "TaskFailed",
]


def request(capability: str, input: Any = None, *, home: Optional[str] = None, url: Optional[str] = None,
            token: Optional[str] = None, **options: Any) -> Outcome:
    """Negotiate one task through the daemon and return its outcome; see
    :meth:`Client.request` for the options (summary, budget, bid_window,
    timeout, calls, strategy, agent, check)."""
    return Client(home, url=url, token=token).request(capability, input, **options)


def read_token_file(path: str) -> str:
    """The token in a file written by ``parley agents register --token-file``."""
    try:
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
    except OSError as e:
        raise InvalidInput("token file %s: %s" % (path, e.strerror or e)) from None
    if not token:
        raise InvalidInput("token file %s is empty" % path)
    return token
