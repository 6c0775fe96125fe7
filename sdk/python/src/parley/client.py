"""Talking to a parley daemon's local HTTP API.

A :class:`Client` finds the daemon the way the parley CLI does: the home
directory (``home=``, else ``$PARLEY_HOME``, else ``~/.parley``) holds the
running daemon's API URL in ``<home>/api`` and its operator token in
``<home>/api.token``; both are read again at every reconnect, since a
restarted daemon may listen elsewhere and always writes a new operator
token. An explicit ``url=`` and ``token=`` skip the home.
"""

from __future__ import annotations

import json
import os
import socket
import urllib.parse
from dataclasses import dataclass, field
from http.client import HTTPConnection, HTTPException, HTTPResponse, HTTPSConnection
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from . import durations
from .errors import (
    DaemonUnreachable,
    InvalidInput,
    ParleyError,
    ProtocolError,
    TaskFailed,
    from_response,
)

__all__ = ["Client", "Endpoint", "Registration", "Outcome", "default_home", "EventStream"]

#: Environment variable naming the home, as for the parley CLI.
ENV_HOME = "PARLEY_HOME"

# Paths of the API (node/api/external.go, node/api/api.go).
PATH_NODE = "/v1/node"
PATH_TASKS = "/v1/tasks"
PATH_EXTERNAL_AGENTS = "/v1/external/agents"
PATH_EXTERNAL_EVENTS = "/v1/external/events"
PATH_BID = "/v1/external/bid"
PATH_PROGRESS = "/v1/external/progress"
PATH_RESULT = "/v1/external/result"
PATH_FAILURE = "/v1/external/failure"
PATH_ASK = "/v1/external/ask"

#: The longest line of an event stream this package reads (as the Go client).
MAX_EVENT_BYTES = 8 << 20


def default_home() -> str:
    """``$PARLEY_HOME``, else ``~/.parley``: the home the parley CLI uses."""
    return os.environ.get(ENV_HOME) or os.path.join(os.path.expanduser("~"), ".parley")


@dataclass(frozen=True)
class Endpoint:
    """Where a daemon's API is and the token to use with it."""

    url: str
    token: str


@dataclass(frozen=True)
class Registration:
    """A registered external agent: its AgentID (``did:key:…``) and the
    agent token its program uses (shown by the daemon only once)."""

    name: str
    id: str
    capabilities: List[str]
    token: str


@dataclass
class Outcome:
    """How a requested task ended, as the daemon tells it."""

    task: str
    state: str
    capability: str = ""
    winner: str = ""
    winner_peer: str = ""
    rationale: str = ""
    bids: List[Dict[str, Any]] = field(default_factory=list)
    result: Any = None
    reason: str = ""
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def completed(self) -> bool:
        """Whether the task completed (``result`` holds its result)."""
        return self.state == "completed"

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> "Outcome":
        return cls(
            task=str(doc.get("task", "")),
            state=str(doc.get("state", "")),
            capability=str(doc.get("capability", "")),
            winner=str(doc.get("winner", "")),
            winner_peer=str(doc.get("winner_peer", "")),
            rationale=str(doc.get("rationale", "")),
            bids=list(doc.get("bids") or []),
            result=doc.get("result"),
            reason=str(doc.get("reason", "")),
            raw=dict(doc),
        )


class Client:
    """A client of one daemon's API.

    ``Client()`` reads the home the CLI would (``$PARLEY_HOME`` or
    ``~/.parley``); ``Client(home=DIR)`` another; ``Client(url=…,
    token=…)`` skips the home. ``token`` may be an agent token, which is
    good only for that agent's own calls. Its methods are safe to call from
    several threads.
    """

    def __init__(self, home: Optional[str] = None, *, url: Optional[str] = None, token: Optional[str] = None,
                 timeout: float = 30.0) -> None:
        if url is None and home is None:
            home = default_home()
        self.home = home
        self._url = url.rstrip("/") if url else None
        self._token = token
        self.timeout = timeout

    def __repr__(self) -> str:
        return "Client(%s)" % (("home=%r" % self.home) if self._url is None else ("url=%r" % self._url))

    def endpoint(self, with_token: bool = True) -> Endpoint:
        """The daemon's URL and operator token, read from the home now
        unless given. With ``with_token`` false the token is not read (a
        program with an agent token need not be able to read api.token) and
        is "".

        Raises DaemonUnreachable when the home has no running daemon's API
        files.
        """
        url, token = self._url, self._token
        home = self.home or default_home()
        if url is None:
            url = _read_home_file(home, "api").rstrip("/")
        if token is None:
            token = _read_home_file(home, "api.token") if with_token else ""
        return Endpoint(url, token)

    # The operator's calls.

    def node(self) -> Dict[str, Any]:
        """The node's PeerID, addresses, agents and version."""
        doc = self.call("GET", PATH_NODE, what="node")
        if not isinstance(doc, dict):
            raise ProtocolError("node: the daemon's answer is not a JSON object")
        return doc

    def register(self, name: str, capabilities: Sequence[str]) -> Registration:
        """Register (or register again) an external agent; needs the
        operator token. Registering a name again replaces its capabilities
        and its token; its key, so its AgentID, stays.

        Raises Conflict when the name is one of the node's own agents,
        InvalidInput for a bad name or capability.
        """
        if isinstance(capabilities, str):
            capabilities = [capabilities]
        doc = self.call("POST", PATH_EXTERNAL_AGENTS, {"name": name, "capabilities": list(capabilities)},
                        what="register agent %s" % name)
        if not isinstance(doc, dict) or not doc.get("token"):
            raise ProtocolError("register agent %s: the daemon's answer has no token" % name)
        return Registration(name=str(doc.get("name", name)), id=str(doc.get("id", "")),
                            capabilities=list(doc.get("capabilities") or capabilities), token=str(doc["token"]))

    def deregister(self, name: str) -> None:
        """Remove an external agent: its token stops working and the tasks
        it holds fail over. Raises NotFound for an unknown name."""
        self.call("DELETE", PATH_EXTERNAL_AGENTS + "/" + urllib.parse.quote(name, safe=""),
                  what="remove agent %s" % name)

    def request(self, capability: str, input: Any = None, *, summary: Any = None, budget: Optional[float] = None,
                bid_window: Optional[durations.DurationLike] = None, timeout: Optional[durations.DurationLike] = None,
                calls: Optional[int] = None, strategy: Optional[str] = None, agent: Optional[str] = None,
                check: bool = True) -> Outcome:
        """Negotiate a task as one of the node's agents and wait for its end.

        ``input`` reaches only the winner; ``summary`` every bidder. Durations
        are seconds or strings such as "2s". Returns the outcome; unless
        ``check`` is false, an outcome other than completed raises
        TaskFailed (with the outcome on it).
        """
        body: Dict[str, Any] = {"capability": capability}
        if input is not None:
            body["input"] = input
        if summary is not None:
            body["summary"] = summary
        if budget is not None:
            body["budget"] = float(budget)
        if bid_window is not None:
            body["bid_window"] = durations.to_go(bid_window, "bid_window")
        if timeout is not None:
            body["timeout"] = durations.to_go(timeout, "timeout")
        if calls is not None:
            body["calls"] = int(calls)
        if strategy is not None:
            body["strategy"] = strategy
        if agent is not None:
            body["agent"] = agent
        # The daemon answers when the task ends: wait for its timeout and
        # some more, not for ever.
        wait = durations.seconds(timeout) + 30 if timeout is not None else 600.0
        doc = self.call("POST", PATH_TASKS, body, what="request %s" % capability, timeout=wait)
        if not isinstance(doc, dict):
            raise ProtocolError("request %s: the daemon's answer is not a JSON object" % capability)
        out = Outcome.from_json(doc)
        if check and not out.completed:
            raise TaskFailed("task %s %s: %s" % (out.task, out.state or "failed", out.reason or "no reason given"), out)
        return out

    # The wire.

    def call(self, method: str, path: str, body: Any = None, *, token: Optional[str] = None, what: str = "",
             timeout: Optional[float] = None) -> Any:
        """Send one request and return the decoded JSON answer.

        ``token`` overrides the client's (an agent token for the
        /v1/external/* calls). Errors become ParleyError subclasses.
        """
        ep = self.endpoint(with_token=token is None)
        data = None
        if body is not None:
            try:
                data = json.dumps(body, allow_nan=False).encode("utf-8")
            except (TypeError, ValueError) as e:
                raise InvalidInput("%s: not JSON: %s" % (what or path, e)) from None
        resp, _ = self._open(ep, method, path, data, token, what, self.timeout if timeout is None else timeout)
        with resp:
            raw = _read(resp, what or path)
        if not raw.strip():
            return None
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise ProtocolError("%s: the daemon's answer is not JSON: %.100r" % (what or path, raw)) from None

    def events(self, agent: str, token: str, *, idle_timeout: float = 60.0) -> "EventStream":
        """Open the agent's event stream (GET /v1/external/events).

        ``idle_timeout`` bounds how long the stream may stay silent: the
        daemon pings every 15 s, so a longer silence means the connection is
        dead. Raises Conflict when the stream is already open elsewhere.
        """
        ep = self.endpoint(with_token=False)
        path = PATH_EXTERNAL_EVENTS + "?agent=" + urllib.parse.quote(agent, safe="")
        resp, sock = self._open(ep, "GET", path, None, token, "event stream of %s" % agent, idle_timeout,
                                accept="text/event-stream")
        return EventStream(resp, sock, agent)

    def _open(self, ep: Endpoint, method: str, path: str, data: Optional[bytes], token: Optional[str], what: str,
              timeout: float, accept: str = "application/json") -> Tuple[HTTPResponse, Optional[socket.socket]]:
        u = urllib.parse.urlsplit(ep.url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ParleyError("the daemon's API URL %r is not an http:// URL" % ep.url)
        # http.client, not urllib: the API is local, so no proxy from the
        # environment may see it or its token, and no redirect is followed.
        conn_cls = HTTPSConnection if u.scheme == "https" else HTTPConnection
        try:
            conn = conn_cls(u.hostname, u.port, timeout=timeout)
        except ValueError as e:  # a bad port
            raise ParleyError("the daemon's API URL %r: %s" % (ep.url, e)) from None
        headers = {"Authorization": "Bearer " + (token or ep.token), "Accept": accept}
        if data is not None:
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, u.path.rstrip("/") + path, body=data, headers=headers)
            sock = conn.sock
            resp = conn.getresponse()
        except (OSError, HTTPException) as e:
            conn.close()
            raise _unreachable(ep.url, e) from None
        if not 200 <= resp.status < 300:
            try:
                payload = resp.read(64 << 10)
            except (OSError, HTTPException):
                payload = b""
            finally:
                resp.close()
                conn.close()
            raise from_response(resp.status, payload, what or path)
        return resp, sock


def _unreachable(url: str, err: BaseException) -> DaemonUnreachable:
    if isinstance(err, ConnectionRefusedError):
        return DaemonUnreachable("no daemon answers at %s (is it running?)" % url)
    if isinstance(err, (socket.timeout, TimeoutError)):
        return DaemonUnreachable("the daemon at %s did not answer in time" % url)
    return DaemonUnreachable("cannot reach the daemon at %s: %s" % (url, err or type(err).__name__))


def _read(resp: HTTPResponse, what: str) -> bytes:
    try:
        return resp.read()
    except (OSError, HTTPException) as e:
        raise DaemonUnreachable("%s: the connection broke: %s" % (what, e)) from None


def _read_home_file(home: str, name: str) -> str:
    path = os.path.join(home, name)
    try:
        with open(path, encoding="utf-8") as f:
            value = f.read().strip()
    except FileNotFoundError:
        raise DaemonUnreachable("no daemon running for home %s (start one with: parley run --home %s)"
                                % (home, home)) from None
    except OSError as e:
        raise ParleyError("cannot read %s: %s" % (path, e.strerror or e)) from None
    if not value:
        raise DaemonUnreachable("no daemon running for home %s (%s is empty)" % (home, path))
    return value


class EventStream:
    """A Server-Sent Events stream: iterate it for ``(event, data)`` pairs,
    ``data`` decoded from JSON. A malformed event (data that is not a JSON
    object) is yielded as ``(event, ProtocolError)`` so the reader can skip
    it and keep the stream. Iteration ends when the daemon ends the stream;
    a broken connection raises DaemonUnreachable.
    """

    def __init__(self, resp: HTTPResponse, sock: Optional[socket.socket], agent: str) -> None:
        self._resp = resp
        self._sock = sock
        self.agent = agent

    def shutdown(self) -> None:
        """End the stream from any thread: a read blocked on it in another
        thread returns at once, as at the stream's end."""
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        """End the stream and free its connection (from the reading thread)."""
        self.shutdown()
        try:
            self._resp.close()
        except (OSError, HTTPException):
            pass

    def __enter__(self) -> "EventStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Tuple[str, Any]]:
        event = ""
        data: List[str] = []
        while True:
            try:
                raw = self._resp.readline(MAX_EVENT_BYTES + 1)
            except (OSError, HTTPException, ValueError) as e:
                # ValueError: the response was closed under us.
                raise DaemonUnreachable("the event stream of %s broke: %s" % (self.agent, e or type(e).__name__)) from None
            if not raw:
                return  # the daemon ended the stream
            if len(raw) > MAX_EVENT_BYTES:
                raise ProtocolError("the event stream of %s has a line over %d bytes" % (self.agent, MAX_EVENT_BYTES))
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if line == "":
                if data:
                    yield event or "message", _decode("\n".join(data), event)
                event, data = "", []
                continue
            if line.startswith(":"):
                continue  # a comment: the greeting or a ping
            name, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
            # id and retry are not used by the daemon; other fields are ignored.


def _decode(data: str, event: str) -> Any:
    try:
        doc = json.loads(data)
    except ValueError as e:
        return ProtocolError("malformed %s event: %s: %.100r" % (event or "message", e, data))
    if not isinstance(doc, dict):
        return ProtocolError("malformed %s event: not a JSON object: %.100r" % (event or "message", data))
    return doc
