"""Serving a parley agent: bid on calls for proposals, do the work you win.

::

    from parley import Agent

    agent = Agent("quoter", capabilities=["quote.shipping"])

    @agent.on_call
    def bid(call):
        return agent.bid(price=12.5, eta="200ms")   # or None to refuse

    @agent.on_counter
    def haggle(counter):                            # optional: a requester's counter-offer
        if counter.price >= 11:
            return counter.accept()                 # its terms
        return agent.bid(price=11, eta="200ms")     # revised; None refuses: the bid stands

    @agent.on_task
    def work(task):
        task.progress(0.5, "pricing")
        return {"price": 12.5}

    agent.run()   # blocks; reconnects with backoff; Ctrl-C returns

The agent is an *external agent* of a daemon: it holds the daemon's event
stream open, receives calls, counter-offers, awards and cancellations on
it, and answers on the API. It gets there in one of two ways:

- with the operator token (read from the daemon's home, or given), it
  registers itself, and registers again after every daemon restart; its key,
  so its AgentID, is kept by the daemon across restarts;
- with an agent token (``agent_token=``, from ``parley agents register
  --token-file``), it never holds the operator token, and the daemon keeps
  its registration and token across restarts.
"""

from __future__ import annotations

import logging
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

from . import durations
from .client import (
    PATH_ASK,
    PATH_BID,
    PATH_FAILURE,
    PATH_PROGRESS,
    PATH_RESULT,
    Client,
    EventStream,
)
from .errors import (
    Conflict,
    DaemonUnreachable,
    Forbidden,
    InternalError,
    InvalidInput,
    NotFound,
    ParleyError,
    ProtocolError,
    Unauthorized,
    Unavailable,
)

__all__ = ["Agent", "Bid", "Refusal", "Call", "Counter", "Task", "Backoff"]

log = logging.getLogger("parley")

class _StreamBusy(Conflict):
    """The agent's event stream is open elsewhere (maybe, for a moment, our
    own last connection)."""


# Errors after which trying again later may work.
_RETRIABLE = (DaemonUnreachable, Unavailable, InternalError, ProtocolError)


@dataclass(frozen=True)
class Bid:
    """A proposal: the price, how long the work will take (seconds or a
    string such as "200ms") and why this agent."""

    price: float
    eta: durations.DurationLike = 0
    rationale: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.price, bool) or not isinstance(self.price, (int, float)) or self.price < 0:
            raise InvalidInput("bid price %r: want a number of 0 or more" % (self.price,))
        durations.seconds(self.eta, "bid eta")

    def wire(self) -> Dict[str, Any]:
        """The bid's fields as the API takes them."""
        return {"price": float(self.price), "eta": durations.to_go(self.eta, "bid eta"), "rationale": self.rationale}


@dataclass(frozen=True)
class Refusal:
    """Not bidding on a call, and why (the reason stays in the daemon's
    log)."""

    reason: str = "declined"


#: What an on_call or on_counter handler returns.
CallAnswer = Optional[Union[Bid, Refusal]]


def _parse_time(v: Any) -> Optional[datetime]:
    if not isinstance(v, str) or not v:
        return None
    try:
        # Go writes RFC 3339 with nanoseconds; fromisoformat takes micro.
        head, dot, rest = v.partition(".")
        if dot:
            digits = "".join(c for c in rest if c.isdigit())
            zone = rest[len(digits):]
            v = head + "." + digits[:6] + zone
        return datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass
class Call:
    """A call for proposals: what is wanted (``summary``, public to every
    bidder), from whom, for how much at most, and how long bids are taken
    (``bid_window``, in seconds)."""

    task: str
    capability: str = ""
    requester: str = ""
    requester_peer: str = ""
    summary: Any = None
    budget: float = 0.0
    bid_window: float = 0.0
    deadline: Optional[datetime] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_event(cls, ev: Dict[str, Any]) -> "Call":
        c = ev.get("call")
        if not isinstance(c, dict):
            c = {}
        budget = c.get("budget", 0)
        return cls(
            task=str(ev.get("task") or c.get("task", "")),
            capability=str(c.get("capability", "")),
            requester=str(c.get("requester", "")),
            requester_peer=str(c.get("requester_peer", "")),
            summary=c.get("summary"),
            budget=float(budget) if isinstance(budget, (int, float)) and not isinstance(budget, bool) else 0.0,
            bid_window=durations.from_wire(c.get("bid_window")),
            deadline=_parse_time(c.get("deadline")),
            raw=ev,
        )


def _bid_of(b: Any) -> Bid:
    """A Bid from the daemon's JSON, lenient: what it sent is its own."""
    if not isinstance(b, dict):
        b = {}
    price = b.get("price", 0)
    return Bid(price=float(price) if isinstance(price, (int, float)) and not isinstance(price, bool) and price >= 0 else 0.0,
               eta=durations.from_wire(b.get("eta")), rationale=str(b.get("rationale", "")))


@dataclass
class Counter:
    """A requester's counter-offer to this agent's bid: the ``price`` and
    ``eta`` (seconds) it would take, its ``terms`` in a few words, which
    ``round`` of bargaining this is (1 = the first), the agent's last
    ``bid`` it answers, and the ``call``."""

    call: Call
    price: float = 0.0
    eta: float = 0.0
    terms: str = ""
    round: int = 1
    bid: Bid = field(default_factory=lambda: Bid(0))

    @property
    def task(self) -> str:
        return self.call.task

    @classmethod
    def from_event(cls, ev: Dict[str, Any]) -> "Counter":
        c = ev.get("counter")
        if not isinstance(c, dict):
            c = {}
        price, rnd = c.get("price", 0), c.get("round", 1)
        return cls(
            call=Call.from_event(ev),
            price=float(price) if isinstance(price, (int, float)) and not isinstance(price, bool) and price >= 0 else 0.0,
            eta=durations.from_wire(c.get("eta")),
            terms=str(c.get("terms", "")),
            round=rnd if isinstance(rnd, int) and not isinstance(rnd, bool) else 1,
            bid=_bid_of(c.get("bid")),
        )

    def accept(self, rationale: str = "deal") -> Bid:
        """The bid that accepts the counter: its price and eta."""
        return Bid(price=self.price, eta=self.eta, rationale=rationale)


class Task:
    """An awarded task: the call, the winning bid, the full ``input`` (only
    the winner receives it), and ways to report on it."""

    def __init__(self, agent: "Agent", ev: Dict[str, Any]) -> None:
        self.call = Call.from_event(ev)
        self.id = self.call.task
        self.input: Any = ev.get("input")
        self.bid = _bid_of(ev.get("bid"))
        self._agent = agent
        self._cancelled = threading.Event()
        self._answered = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "Task(%r, capability=%r)" % (self.id, self.call.capability)

    @property
    def cancelled(self) -> bool:
        """Whether the requester canceled the task, or the agent lost its
        stream (the daemon then fails the task over): stop working on it."""
        return self._cancelled.is_set()

    def wait_cancelled(self, timeout: Optional[float] = None) -> bool:
        """Block until the task is canceled or ``timeout`` seconds pass;
        returns whether it was canceled. A stand-in for ``time.sleep`` in
        work that should stop early."""
        return self._cancelled.wait(timeout)

    def progress(self, fraction: float, note: str = "") -> bool:
        """Tell the requester how far the work is (0 to 1) and what it is
        doing. Returns whether the daemon took it (it does not once the task
        is canceled or failed over)."""
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
            raise InvalidInput("progress %r: want a fraction from 0 to 1" % (fraction,))
        return self._agent._post(PATH_PROGRESS, {"task": self.id, "fraction": float(fraction), "note": note},
                                 "progress on %s" % self.id)

    def ask(self, note: str, schema: Any = None) -> Any:
        """Ask the requester a question (``note``; ``schema``, any JSON, hints
        at the answer's shape) and wait for its answer, which is returned
        (any JSON value). The task is input-required at the requester
        until it answers; the wait ends at the task's deadline at the
        latest. Raises Conflict when the requester's node takes no
        questions, the task has asked its 3 or ended first; InvalidInput for
        an empty note or one the daemon refuses."""
        if not isinstance(note, str) or not note:
            raise InvalidInput("ask %r: want the question, a non-empty string" % (note,))
        token = self._agent._agent_token
        if token is None:
            raise Conflict("ask on %s: agent %s is not registered" % (self.id, self._agent.name))
        body: Dict[str, Any] = {"agent": self._agent.name, "task": self.id, "note": note}
        if schema is not None:
            body["schema"] = schema
        timeout = None  # the client's default; the node gives every task a deadline
        if self.call.deadline is not None:
            timeout = max((self.call.deadline - datetime.now(self.call.deadline.tzinfo)).total_seconds(), 0) + 10
        doc = self._agent.client.call("POST", PATH_ASK, body, token=token, what="question on %s" % self.id,
                                      timeout=timeout)
        return doc.get("answer") if isinstance(doc, dict) else None

    def result(self, value: Any) -> bool:
        """Deliver the result (any JSON value) now, rather than by returning
        it from the on_task handler. Returns whether the daemon took it."""
        with self._lock:
            if self._answered:
                return False
            self._answered = True
        try:
            return self._agent._post(PATH_RESULT, {"task": self.id, "result": value}, "result of %s" % self.id)
        except InvalidInput:
            with self._lock:
                self._answered = False  # so that it can still fail
            raise

    def fail(self, reason: str) -> bool:
        """Fail the task, saying why (the requester sees the reason and
        moves to the next best bid). Returns whether the daemon took it."""
        with self._lock:
            if self._answered:
                return False
            self._answered = True
        return self._agent._post(PATH_FAILURE, {"task": self.id, "error": reason or "failed"}, "failure of %s" % self.id)


class Backoff:
    """Delays between reconnection attempts: ``initial`` seconds, doubling
    up to ``maximum``, each shortened by up to ``jitter`` (a fraction) so
    that agents of one daemon do not come back in step. Never more than
    ``maximum``."""

    def __init__(self, initial: float = 0.25, maximum: float = 10.0, factor: float = 2.0, jitter: float = 0.2,
                 rand: Callable[[], float] = random.random) -> None:
        if not 0 < initial <= maximum or factor < 1 or not 0 <= jitter < 1:
            raise InvalidInput("backoff: want 0 < initial <= maximum, factor >= 1 and 0 <= jitter < 1")
        self.initial, self.maximum, self.factor, self.jitter = initial, maximum, factor, jitter
        self._rand = rand
        self._next = initial

    def next(self) -> float:
        """The next delay, in seconds."""
        d = self._next
        self._next = min(self._next * self.factor, self.maximum)
        return d * (1 - self.jitter * self._rand())

    def reset(self) -> None:
        """Start again from ``initial`` (after a connection that worked)."""
        self._next = self.initial


Handler = Callable[..., Any]


class Agent:
    """An external agent of a parley daemon.

    ``name`` is the agent's name on the daemon; ``capabilities`` what it
    offers (needed when it registers itself). Where the daemon is:
    ``home`` (default ``$PARLEY_HOME``, else ``~/.parley``), or ``url`` and
    ``token``. With ``agent_token`` the agent uses that token and does not
    register (the operator did, with ``parley agents register``).

    ``max_tasks`` bounds the calls and tasks handled at once; past it, calls
    are refused as busy. ``backoff`` sets the reconnection delays.
    """

    def __init__(self, name: str, capabilities: Optional[Sequence[str]] = None, *, home: Optional[str] = None,
                 url: Optional[str] = None, token: Optional[str] = None, agent_token: Optional[str] = None,
                 client: Optional[Client] = None, max_tasks: int = 16, backoff: Optional[Backoff] = None,
                 idle_timeout: float = 60.0) -> None:
        if isinstance(capabilities, str):
            capabilities = [capabilities]
        if agent_token is None and not capabilities:
            raise InvalidInput("agent %s: give the capabilities it offers (it registers itself), "
                               "or the agent_token from 'parley agents register'" % name)
        self.name = name
        self.capabilities: List[str] = list(capabilities or [])
        self.client = client or Client(home, url=url, token=token)
        self.id: Optional[str] = None  # the AgentID, once registered
        self.max_tasks = max_tasks
        self.backoff = backoff or Backoff()
        self.idle_timeout = idle_timeout
        self._given_token = agent_token
        self._agent_token = agent_token
        self._registered_with: Optional[str] = None  # the operator token used to register
        self._on_call: Optional[Handler] = None
        self._on_counter: Optional[Handler] = None
        self._on_task: Optional[Handler] = None
        self._on_cancel: Optional[Handler] = None
        self._on_connect: Optional[Handler] = None
        self._on_disconnect: Optional[Handler] = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._stream: Optional[EventStream] = None
        self._busy = 0
        self._held: Dict[str, Task] = {}

    # Decorators.

    def on_call(self, fn: Handler) -> Handler:
        """Decorate the function that answers a call for proposals: it gets
        a :class:`Call` and returns a :class:`Bid` (``agent.bid(…)``), a
        :class:`Refusal` (``agent.refuse(…)``), or None to refuse. It runs
        in its own thread and must answer within ``call.bid_window``. An
        exception refuses the call (and is logged). Without it the agent
        refuses every call."""
        self._on_call = fn
        return fn

    def on_counter(self, fn: Handler) -> Handler:
        """Decorate the function that answers a requester's counter-offer to
        this agent's bid: it gets a :class:`Counter` and returns a
        :class:`Bid` — ``counter.accept()`` takes the counter's terms, any
        other bid revises — or a :class:`Refusal` or None to refuse, and the
        last bid stands. It runs in its own thread and must answer within
        two thirds of ``counter.call.bid_window``; past that the daemon
        refuses for it. An exception refuses (and is logged). Without it the
        agent refuses every counter."""
        self._on_counter = fn
        return fn

    def on_task(self, fn: Handler) -> Handler:
        """Decorate the function that does awarded work: it gets a
        :class:`Task` and returns the result (any JSON value). An exception
        fails the task with the exception's message, and the requester
        moves to the next best bid."""
        self._on_task = fn
        return fn

    def on_cancel(self, fn: Handler) -> Handler:
        """Decorate a function called with the :class:`Task` the requester
        canceled (``task.cancelled`` is then true as well)."""
        self._on_cancel = fn
        return fn

    def on_connect(self, fn: Handler) -> Handler:
        """Decorate a function called with the agent each time its event
        stream opens (first connect and every reconnect)."""
        self._on_connect = fn
        return fn

    def on_disconnect(self, fn: Handler) -> Handler:
        """Decorate a function called with the reason (a string) each time
        the stream is lost; the agent then reconnects."""
        self._on_disconnect = fn
        return fn

    # Answers.

    @staticmethod
    def bid(price: float, eta: durations.DurationLike = 0, rationale: str = "") -> Bid:
        """A bid to return from an on_call handler."""
        return Bid(price=price, eta=eta, rationale=rationale)

    @staticmethod
    def refuse(reason: str = "declined") -> Refusal:
        """A refusal to return from an on_call handler."""
        return Refusal(reason)

    # Running.

    def stop(self) -> None:
        """Make run() return soon; safe from any thread or a handler."""
        self._stop.set()
        with self._lock:
            stream = self._stream
        if stream is not None:
            stream.shutdown()

    def run(self, *, reconnect: bool = True, wait: bool = False, give_up_after: Optional[float] = None) -> None:
        """Serve until stop(), Ctrl-C, or a failure that retrying cannot mend.

        When the stream ends or the daemon goes away the agent reconnects
        with backoff (registering again where it registers itself), unless
        ``reconnect`` is false. A daemon that is not there at the start is
        DaemonUnreachable unless ``wait`` is true. ``give_up_after`` bounds,
        in seconds, how long reconnecting may fail before DaemonUnreachable
        is raised (None: for ever).

        Raises Unauthorized, Forbidden or NotFound when the daemon refuses
        the token or the agent, Conflict when the name is taken or another
        program serves the agent, InvalidInput for a bad name or capability.
        Ctrl-C returns normally.
        """
        self._stop.clear()
        connected_once = False
        failing_since: Optional[float] = None
        conflicts = 0
        try:
            while not self._stop.is_set():
                try:
                    stream = self._connect()
                except _StreamBusy as e:
                    # The stream may still be open from our own last
                    # connection for a moment; past that another program
                    # serves this agent.
                    if conflicts >= 3:
                        raise Conflict("%s: another program serves agent %s" % (e, self.name),
                                       status=e.status, code=e.code) from None
                    conflicts += 1
                    self._pause(e, self.backoff.next())
                    continue
                except _RETRIABLE as e:
                    if not reconnect or (not connected_once and not wait):
                        raise
                    now = time.monotonic()
                    failing_since = failing_since or now
                    if give_up_after is not None and now - failing_since >= give_up_after:
                        raise DaemonUnreachable("%s (gave up reconnecting after %.0f s)" % (e, now - failing_since)) from None
                    self._pause(e, self.backoff.next())
                    continue
                connected_once, failing_since, conflicts = True, None, 0
                self.backoff.reset()
                reason = self._serve(stream)
                if self._stop.is_set():
                    break
                log.warning("%s: %s%s", self.name, reason, "; reconnecting" if reconnect else "")
                if self._on_disconnect is not None:
                    self._on_disconnect(reason)
                if not reconnect:
                    break
        except KeyboardInterrupt:
            pass
        finally:
            self._drop_held()

    def main(self, **run_args: Any) -> None:
        """Run as a program's main: log to stderr, stop cleanly on SIGTERM
        and Ctrl-C (exit 0), and exit 1 with one line naming the problem
        instead of a traceback."""
        prog = sys.argv[0].rsplit("/", 1)[-1] or "agent"
        if not logging.getLogger().handlers and not log.handlers:
            h = logging.StreamHandler(sys.stderr)
            h.setFormatter(logging.Formatter(prog + ": %(message)s"))
            log.addHandler(h)
            log.setLevel(logging.INFO)
        # SIGINT too, not only Python's KeyboardInterrupt: a program started
        # in the background by a script inherits SIGINT ignored, and Python
        # then leaves it ignored, so `kill -INT` would not stop it.
        try:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self.stop())
        except ValueError:
            pass  # not the main thread
        try:
            self.run(**run_args)
        except ParleyError as e:
            print("%s: %s" % (prog, e), file=sys.stderr, flush=True)
            sys.exit(1)
        sys.exit(0)

    def _pause(self, err: BaseException, delay: float) -> None:
        log.warning("%s: %s; retrying in %.1f s", self.name, err, delay)
        self._stop.wait(delay)

    def _events(self, token: str) -> EventStream:
        try:
            return self.client.events(self.name, token, idle_timeout=self.idle_timeout)
        except Conflict as e:
            raise _StreamBusy(str(e), status=e.status, code=e.code) from None

    def _connect(self) -> EventStream:
        """Register if need be and open the event stream."""
        if self._given_token is not None:
            token = self._given_token
            try:
                stream = self._events(token)
            except (Unauthorized, Forbidden) as e:
                raise type(e)("the daemon refused agent %s's token (%s); was the agent removed or registered "
                              "again? register it again with: parley agents register --name %s --capability ... "
                              "--token-file FILE" % (self.name, e, self.name), status=e.status, code=e.code) from None
            except NotFound as e:
                raise NotFound("%s; register it with: parley agents register --name %s --capability ..."
                               % (e, self.name), status=e.status, code=e.code) from None
        else:
            operator = self.client.endpoint().token
            fresh = self._agent_token is None or operator != self._registered_with
            if fresh:
                # First connect, or a new daemon (each start writes a new
                # operator token): register again, same name and key.
                reg = self.client.register(self.name, self.capabilities)
                self._agent_token, self._registered_with, self.id = reg.token, operator, reg.id
            assert self._agent_token is not None
            try:
                stream = self._events(self._agent_token)
            except (Unauthorized, NotFound) as e:
                if fresh:
                    raise
                # The same daemon revoked the token it gave us: the agent was
                # registered again by someone else, or removed. Registering
                # again would take the name back and the two programs would
                # take turns: stop instead.
                raise Conflict("agent %s was registered again or removed while this program served it "
                               "(the daemon no longer takes its token); stopping" % self.name,
                               status=e.status, code=e.code) from None
        with self._lock:
            self._stream = stream
        if self._stop.is_set():
            stream.shutdown()
        log.info("%s: connected%s", self.name, " as " + self.id if self.id else "")
        if self._on_connect is not None:
            self._on_connect(self)
        return stream

    def _serve(self, stream: EventStream) -> str:
        """Read the stream to its end; returns why it ended."""
        try:
            with stream:
                for kind, ev in stream:
                    if isinstance(ev, ProtocolError):
                        log.warning("%s: skipping %s", self.name, ev)
                        continue
                    task = ev.get("task")
                    if not isinstance(task, str) or not task:
                        log.warning("%s: skipping a %s event without a task: %.100r", self.name, kind, ev)
                        continue
                    if kind == "call":
                        self._spawn_call(Call.from_event(ev))
                    elif kind == "counter":
                        self._spawn_counter(Counter.from_event(ev))
                    elif kind == "award":
                        self._spawn_task(Task(self, ev))
                    elif kind == "cancel":
                        self._cancel(task)
                    else:
                        log.debug("%s: ignoring a %r event", self.name, kind)
            return "the daemon ended the event stream"
        except ParleyError as e:
            return str(e)
        finally:
            with self._lock:
                self._stream = None
            # The daemon fails what we held when the stream ends.
            self._drop_held()

    def _spawn_call(self, call: Call) -> None:
        with self._lock:
            busy = self._busy >= self.max_tasks
            if not busy:
                self._busy += 1
        if busy:
            self._answer_call(call, Refusal("busy: %d calls and tasks in hand" % self.max_tasks))
            return
        threading.Thread(target=self._handle_call, args=(call,), name="parley-call-" + call.task, daemon=True).start()

    def _spawn_counter(self, counter: Counter) -> None:
        # A counter answers a bid this agent made: it takes no new slot.
        threading.Thread(target=self._handle_counter, args=(counter,), name="parley-counter-" + counter.task,
                         daemon=True).start()

    def _handle_counter(self, counter: Counter) -> None:
        answer: Any = Refusal("agent %s takes no counter-offers" % self.name)
        if self._on_counter is not None:
            try:
                answer = self._on_counter(counter)
            except Exception as e:  # the handler's failure refuses the counter
                log.error("%s: on_counter for %s failed, refusing: %s: %s", self.name, counter.task, type(e).__name__, e)
                answer = Refusal("the agent's handler failed")
        if answer is None:
            answer = Refusal("the bid stands")
        self._answer_call(counter.call, answer, "on_counter")

    def _spawn_task(self, task: Task) -> None:
        with self._lock:
            self._busy += 1  # an award is never refused: we bid on it
            self._held[task.id] = task
        threading.Thread(target=self._handle_task, args=(task,), name="parley-task-" + task.id, daemon=True).start()

    def _done(self) -> None:
        with self._lock:
            self._busy -= 1

    def _handle_call(self, call: Call) -> None:
        answer: Any = Refusal("no on_call handler")
        try:
            if self._on_call is not None:
                try:
                    answer = self._on_call(call)
                except Exception as e:  # the handler's failure refuses the call
                    log.error("%s: on_call for %s failed, refusing: %s: %s", self.name, call.task, type(e).__name__, e)
                    answer = Refusal("the agent's handler failed")
        finally:
            self._done()  # free before answering, as for tasks
        self._answer_call(call, answer)

    def _answer_call(self, call: Call, answer: Any, handler: str = "on_call") -> None:
        if answer is None:
            answer = Refusal()
        if isinstance(answer, Bid):
            body: Dict[str, Any] = dict(answer.wire(), task=call.task)
        elif isinstance(answer, Refusal):
            body = {"task": call.task, "refuse": answer.reason or "declined"}
        else:
            log.error("%s: %s returned %r for %s: want a Bid, a Refusal or None; refusing",
                      self.name, handler, answer, call.task)
            body = {"task": call.task, "refuse": "the agent's handler failed"}
        self._post(PATH_BID, body, "bid on %s" % call.task)

    def _handle_task(self, task: Task) -> None:
        # The slot is free once the work is: before the answer goes out, so
        # that a requester who saw the answer finds the agent free.
        freed = False

        def free() -> None:
            nonlocal freed
            if not freed:
                freed = True
                with self._lock:
                    self._held.pop(task.id, None)
                self._done()

        try:
            if self._on_task is None:
                free()
                task.fail("agent %s has no on_task handler" % self.name)
                return
            try:
                value = self._on_task(task)
            except Exception as e:  # the handler's failure fails the task
                free()
                log.error("%s: task %s failed: %s: %s", self.name, task.id, type(e).__name__, e)
                task.fail(str(e) or type(e).__name__)
                return
            free()
            if not task._answered:
                try:
                    task.result(value)
                except InvalidInput as e:
                    log.error("%s: %s", self.name, e)
                    task.fail("the agent's result is not JSON")
        finally:
            free()

    def _cancel(self, task_id: str) -> None:
        with self._lock:
            task = self._held.get(task_id)
        if task is None:
            return
        task._cancelled.set()
        log.info("%s: task %s canceled", self.name, task_id)
        if self._on_cancel is not None:
            try:
                self._on_cancel(task)
            except Exception as e:
                log.error("%s: on_cancel for %s failed: %s: %s", self.name, task_id, type(e).__name__, e)

    def _drop_held(self) -> None:
        with self._lock:
            held = list(self._held.values())
        for t in held:
            t._cancelled.set()

    def _post(self, path: str, body: Dict[str, Any], what: str) -> bool:
        """Post an answer with the agent token; logs rather than raises what
        the daemon refuses (a call that closed, a task that moved on)."""
        token = self._agent_token
        if token is None:
            return False
        body = dict(body, agent=self.name)
        try:
            self.client.call("POST", path, body, token=token, what=what)
            return True
        except InvalidInput as e:
            if path == PATH_RESULT:
                raise  # the result is not JSON: the caller fails the task
            log.error("%s: %s", self.name, e)
            return False
        except Conflict as e:
            log.info("%s: %s", self.name, e)  # too late: the call closed, or the task moved on
        except ParleyError as e:
            log.warning("%s: %s", self.name, e)
        return False
