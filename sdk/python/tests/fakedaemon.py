"""An in-process stand-in for a parley daemon's API, for the unit tests.

It speaks the wire of node/api/external.go: registration with the operator
token, the agent's event stream (SSE), and the bid, progress, result and
failure posts, which it records. Tests push events down the open stream,
end it, and wait for what the agent posts.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import parse_qs, urlsplit


class FakeDaemon:
    """One fake daemon on 127.0.0.1. ``code_field`` adds the API's
    ``"code"`` to error bodies; ``taken`` are names registration refuses
    with 409."""

    def __init__(self, operator: Optional[str] = None, code_field: bool = True) -> None:
        self.operator = operator or secrets.token_hex(16)
        self.code_field = code_field
        self.taken = {"default"}
        self.tokens: Dict[str, str] = {}  # agent token -> agent name
        self.registrations: List[Dict[str, Any]] = []
        self.posts: List[Tuple[str, Dict[str, Any]]] = []  # (path, body)
        self.stream_opens: List[str] = []  # the agent names of every stream opened
        self.tasks: List[Dict[str, Any]] = []  # POST /v1/tasks bodies
        self.refuse_streams = 0  # answer this many stream opens with 409, as for a stream open elsewhere
        self.task_answer: Dict[str, Any] = {"task": "t1", "state": "completed", "result": {"ok": True}}
        # Called with (path, body) for a post; may return (status, body) to answer instead.
        self.on_post: Optional[Callable[[str, Dict[str, Any]], Optional[Tuple[int, Dict[str, Any]]]]] = None
        self.cond = threading.Condition()
        self._streams: List["queue.Queue[Optional[bytes]]"] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _json(self, status: int, body: Any) -> None:
                b = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(b)))
                self.end_headers()
                self.wfile.write(b)

            def _error(self, status: int, code: str, msg: str) -> None:
                body = {"error": msg}
                if fake.code_field:
                    body["code"] = code
                self._json(status, body)

            def _principal(self) -> Optional[str]:
                auth = self.headers.get("Authorization", "")
                tok = auth[len("Bearer "):] if auth.startswith("Bearer ") else ""
                if tok == fake.operator:
                    return "operator"
                return fake.tokens.get(tok)

            def _body(self) -> Dict[str, Any]:
                n = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(n) or b"{}")

            def do_GET(self) -> None:
                u = urlsplit(self.path)
                who = self._principal()
                if who is None:
                    return self._error(401, "unauthorized", "unknown token")
                if u.path == "/v1/node":
                    return self._json(200, {"peer": "12D3KooWfake", "agents": []})
                if u.path != "/v1/external/events":
                    return self._error(404, "not_found", "no such path")
                name = parse_qs(u.query).get("agent", [""])[0]
                if who not in ("operator", name):
                    return self._error(403, "forbidden", "this token is external agent %s's" % who)
                with fake.cond:
                    busy = fake.refuse_streams > 0
                    if busy:
                        fake.refuse_streams -= 1
                        fake.stream_opens.append("409:" + name)
                        fake.cond.notify_all()
                if busy:
                    return self._error(409, "conflict", "this agent's event stream is already open")
                q: "queue.Queue[Optional[bytes]]" = queue.Queue()
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                self.wfile.write((": events for %s\n\n" % name).encode())
                self.wfile.flush()
                with fake.cond:
                    fake._streams.append(q)
                    fake.stream_opens.append(name)
                    fake.cond.notify_all()
                while True:
                    item = q.get()
                    if item is None:
                        return
                    try:
                        self.wfile.write(item)
                        self.wfile.flush()
                    except OSError:
                        return

            def do_POST(self) -> None:
                who = self._principal()
                path = urlsplit(self.path).path
                body = self._body()
                if who is None:
                    return self._error(401, "unauthorized", "unknown token")
                if path == "/v1/external/agents":
                    if who != "operator":
                        return self._error(403, "forbidden", "needs the operator token")
                    name = body.get("name", "")
                    if name in fake.taken:
                        return self._error(409, "conflict", "agent name taken by one of the node's own agents; pick another name")
                    if not body.get("capabilities"):
                        return self._error(400, "bad_request", "capabilities: an external agent offers at least one")
                    tok = secrets.token_hex(16)
                    with fake.cond:
                        for t, n in list(fake.tokens.items()):
                            if n == name:
                                del fake.tokens[t]  # registering again revokes the old token
                        fake.tokens[tok] = name
                        fake.registrations.append(body)
                        fake.cond.notify_all()
                    return self._json(201, {"name": name, "id": "did:key:z6Mkfake" + name,
                                            "capabilities": body["capabilities"], "token": tok})
                if path == "/v1/tasks":
                    with fake.cond:
                        fake.tasks.append(body)
                        fake.cond.notify_all()
                    return self._json(200, fake.task_answer)
                if path.startswith("/v1/external/"):
                    if who not in ("operator", body.get("agent")):
                        return self._error(403, "forbidden", "not this agent's token")
                    answer = fake.on_post(path, body) if fake.on_post else None
                    with fake.cond:
                        fake.posts.append((path, body))
                        fake.cond.notify_all()
                    if answer is not None:
                        return self._json(*answer)
                    return self._json(200, {"task": body.get("task")})
                return self._error(404, "not_found", "no such path")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    # Driving the stream.

    def send_raw(self, data: bytes, stream: int = -1) -> None:
        """Write bytes down an open stream (the newest by default)."""
        with self.cond:
            q = self._streams[stream]
        q.put(data)

    def send(self, event: str, data: Dict[str, Any]) -> None:
        self.send_raw(("event: %s\ndata: %s\n\n" % (event, json.dumps(data))).encode())

    def end_streams(self) -> None:
        """End every open stream, as a daemon that shuts down does."""
        with self.cond:
            streams, self._streams = self._streams, []
        for q in streams:
            q.put(None)

    def wait(self, pred: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Wait until pred() holds (checked whenever the fake records
        something); returns whether it did within timeout."""
        with self.cond:
            return self.cond.wait_for(pred, timeout)

    def posted(self, path: str) -> List[Dict[str, Any]]:
        with self.cond:
            return [b for p, b in self.posts if p == path]

    def write_home(self, home: str) -> None:
        """Publish this daemon's URL and operator token in a home, as a
        daemon does at start."""
        with open(os.path.join(home, "api.token"), "w") as f:
            f.write(self.operator + "\n")
        with open(os.path.join(home, "api"), "w") as f:
            f.write(self.url + "\n")

    def close(self) -> None:
        self.end_streams()
        self.server.shutdown()
        self.server.server_close()


def call_event(task: str, capability: str = "quote", bid_window: Any = 500_000_000) -> Dict[str, Any]:
    """A call event as the daemon sends it (bid_window as Go marshals a
    time.Duration today: nanoseconds)."""
    return {"type": "call", "task": task, "call": {
        "task": task, "capability": capability, "requester": "did:key:z6Mkrequester",
        "requester_peer": "12D3KooWrequester", "summary": {"sku": "bolt"}, "budget": 10,
        "bid_window": bid_window, "deadline": "2030-01-02T03:04:05.123456789Z"}}


def counter_event(task: str, price: float, round: int = 1) -> Dict[str, Any]:
    """A counter event as the daemon sends it: the requester's counter to
    the agent's bid of 2.5 for 200ms."""
    ev = call_event(task)
    ev.update(type="counter", counter={"price": price, "eta": "200ms", "terms": "80% of your price", "round": round,
                                       "bid": {"price": 2.5, "eta": "200ms", "rationale": "python can"}})
    return ev


def award_event(task: str, input: Any = None) -> Dict[str, Any]:
    ev = call_event(task)
    ev.update(type="award", bid={"price": 2, "eta": 200_000_000, "rationale": "python can"}, input=input)
    return ev
