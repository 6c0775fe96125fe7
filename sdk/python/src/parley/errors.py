"""The exceptions of the parley package.

Every error this package raises is a :class:`ParleyError`. An answer of the
daemon's API becomes the subclass its ``code`` names (the ``"code"`` field
of the error body, when the daemon sends one) or else the subclass of its
HTTP status; the daemon's own message is the exception's message::

    try:
        agent.run()
    except parley.Conflict as e:      # the name is taken
        print(e)
    except parley.DaemonUnreachable:  # no daemon for this home
        ...

``str(e)`` is one line meant for a person; ``e.status`` and ``e.code`` are
for programs.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Optional, Type

__all__ = [
    "ParleyError",
    "DaemonUnreachable",
    "ProtocolError",
    "InvalidInput",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "MethodNotAllowed",
    "Conflict",
    "PayloadTooLarge",
    "InternalError",
    "Unsupported",
    "Unavailable",
    "TaskFailed",
    "from_response",
]


class ParleyError(Exception):
    """Base class of every error of this package.

    ``status`` is the HTTP status of the daemon's answer (None when the
    daemon did not answer), ``code`` the daemon's snake_case error code (or
    the one its status implies).
    """

    #: The code this class stands for, as the daemon spells it.
    default_code: Optional[str] = None

    def __init__(self, message: str, *, status: Optional[int] = None, code: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code if code is not None else self.default_code

    def __str__(self) -> str:
        return self.message


class DaemonUnreachable(ParleyError):
    """No daemon answers: none runs for the home, its address is stale, or
    the connection broke. Reconnecting later may work."""

    default_code = "unreachable"


class ProtocolError(ParleyError):
    """The daemon answered something this package cannot read (not JSON, a
    malformed event). Usually a daemon of another version."""

    default_code = "protocol"


class InvalidInput(ParleyError):
    """400: the request was refused as bad input; the message names it.
    Also raised before anything is sent for arguments that cannot be right
    (a negative duration, a result that is not JSON)."""

    default_code = "bad_request"


class Unauthorized(ParleyError):
    """401: the daemon does not know the token (a restarted daemon writes a
    new operator token; an agent token dies when its agent is registered
    again or removed)."""

    default_code = "unauthorized"


class Forbidden(ParleyError):
    """403: the token may not do this (an agent token outside its own
    agent's calls)."""

    default_code = "forbidden"


class NotFound(ParleyError):
    """404: no such agent, task or approval."""

    default_code = "not_found"


class MethodNotAllowed(ParleyError):
    """405: the endpoint does not take this method."""

    default_code = "method_not_allowed"


class Conflict(ParleyError):
    """409: the name is taken by one of the node's own agents, the agent's
    stream is already open elsewhere, the call is closed to bids, or the
    task already has its answer."""

    default_code = "conflict"


class PayloadTooLarge(ParleyError):
    """413: the body is over the daemon's limit."""

    default_code = "payload_too_large"


class InternalError(ParleyError):
    """500: the daemon failed; its log says why."""

    default_code = "internal"


class Unsupported(ParleyError):
    """501, or something the daemon's API has no way to say yet (such as a
    counter-offer)."""

    default_code = "not_implemented"


class Unavailable(ParleyError):
    """503: the daemon runs but its node is not (yet) running."""

    default_code = "unavailable"


class TaskFailed(ParleyError):
    """A requested task ended other than completed; ``outcome`` is the
    daemon's account of it (bids, state history, reason)."""

    default_code = "task_failed"

    def __init__(self, message: str, outcome: Any) -> None:
        super().__init__(message)
        self.outcome = outcome


_BY_CODE: Dict[str, Type[ParleyError]] = {
    c.default_code: c  # type: ignore[misc]
    for c in (InvalidInput, Unauthorized, Forbidden, NotFound, MethodNotAllowed, Conflict,
              PayloadTooLarge, InternalError, Unsupported, Unavailable)
}

_BY_STATUS: Dict[int, Type[ParleyError]] = {
    400: InvalidInput,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    409: Conflict,
    413: PayloadTooLarge,
    500: InternalError,
    501: Unsupported,
    503: Unavailable,
}


def from_response(status: int, body: bytes, what: str = "") -> ParleyError:
    """Build the error for an HTTP error answer of the daemon.

    ``body`` is the answer's body: ``{"error": "...", "code": "..."}`` when
    it is the daemon's; the ``code`` picks the class when present and known,
    else the status does. ``what`` (e.g. ``"register pyq"``) prefixes the
    message.
    """
    message, code = "", None
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        doc = None
    if isinstance(doc, dict):
        if isinstance(doc.get("error"), str):
            message = doc["error"]
        if isinstance(doc.get("code"), str) and doc["code"]:
            code = doc["code"]
    if not message:
        message = body.decode("utf-8", "replace").strip()[:300] or "HTTP %d" % status
    cls = _BY_CODE.get(code or "") or _BY_STATUS.get(status)
    if cls is None:
        cls = InternalError if status >= 500 else ParleyError
    if what:
        message = "%s: %s" % (what, message)
    return cls(message, status=status, code=code)
