"""Agent against the fake daemon: bidding, working, reconnecting, refusing."""

import json
import logging
import os
import shutil
import tempfile
import threading
import time
import unittest
from typing import Any, List, Optional

import parley
from fakedaemon import FakeDaemon, award_event, call_event, counter_event

BID = "/v1/external/bid"
PROGRESS = "/v1/external/progress"
RESULT = "/v1/external/result"
FAILURE = "/v1/external/failure"

logging.getLogger("parley").setLevel(logging.CRITICAL)  # the tests assert; the log would only be noise


def fast_backoff() -> parley.Backoff:
    return parley.Backoff(initial=0.02, maximum=0.1, jitter=0)


class Running:
    """An agent's run() in a thread, stopped and joined at cleanup."""

    def __init__(self, test: unittest.TestCase, agent: parley.Agent, **run_args: Any) -> None:
        self.agent = agent
        self.error: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._run, kwargs=run_args, daemon=True)
        self.thread.start()
        test.addCleanup(self.stop)

    def _run(self, **run_args: Any) -> None:
        try:
            self.agent.run(**run_args)
        except BaseException as e:  # handed to the test
            self.error = e

    def stop(self) -> None:
        self.agent.stop()
        self.thread.join(5)
        assert not self.thread.is_alive(), "run() did not return within 5 s of stop()"

    def join(self, timeout: float = 5.0) -> Optional[BaseException]:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "run() did not return within %s s" % timeout
        return self.error


class AgentCase(unittest.TestCase):
    def setUp(self):
        self.fake = FakeDaemon()
        self.addCleanup(self.fake.close)
        self.home = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.home, True)
        self.fake.write_home(self.home)

    def quoter(self, **kw: Any) -> parley.Agent:
        kw.setdefault("home", self.home)
        agent = parley.Agent("q", kw.pop("capabilities", ["quote"]), backoff=fast_backoff(), **kw)

        @agent.on_call
        def bid(call):
            return agent.bid(price=2.5, eta=0.2, rationale="python can")

        @agent.on_task
        def work(task):
            task.progress(0.5, "pricing")
            return {"quote": 7, "input": task.input}

        return agent

    def wait_streams(self, n: int) -> None:
        self.assertTrue(self.fake.wait(lambda: len(self.fake.stream_opens) >= n), "stream %d not opened" % n)

    def wait_posts(self, path: str, n: int = 1) -> List[Any]:
        self.assertTrue(self.fake.wait(lambda: len(self.fake.posted(path)) >= n), "no %s post" % path)
        return self.fake.posted(path)


class Negotiating(AgentCase):
    def test_registers_bids_works_and_returns_the_result(self):
        agent = self.quoter()
        seen: List[parley.Call] = []

        @agent.on_call
        def bid(call):
            seen.append(call)
            return agent.bid(price=2.5, eta=0.2, rationale="python can")

        Running(self, agent)
        self.wait_streams(1)
        self.assertEqual(self.fake.registrations, [{"name": "q", "capabilities": ["quote"]}])
        self.assertEqual(agent.id, "did:key:z6Mkfakeq")
        self.fake.send("call", call_event("t1"))
        bids = self.wait_posts(BID)
        self.assertEqual(bids, [{"agent": "q", "task": "t1", "price": 2.5, "eta": "200ms", "rationale": "python can"}])
        c = seen[0]
        self.assertEqual((c.capability, c.summary, c.budget, c.bid_window), ("quote", {"sku": "bolt"}, 10.0, 0.5))
        assert c.deadline is not None
        self.assertEqual((c.deadline.year, c.deadline.microsecond), (2030, 123456))
        self.fake.send("award", award_event("t1", {"sku": "bolt"}))
        self.assertEqual(self.wait_posts(RESULT), [{"agent": "q", "task": "t1", "result": {"quote": 7, "input": {"sku": "bolt"}}}])
        self.assertEqual(self.fake.posted(PROGRESS), [{"agent": "q", "task": "t1", "fraction": 0.5, "note": "pricing"}])

    def test_none_refuses_and_an_exception_fails_the_task(self):
        agent = parley.Agent("q", ["quote"], home=self.home, backoff=fast_backoff())
        agent.on_call(lambda call: None)

        @agent.on_task
        def work(task):
            raise ValueError("out of bolts")

        Running(self, agent)
        self.wait_streams(1)
        self.fake.send("call", call_event("t1"))
        self.assertEqual(self.wait_posts(BID), [{"agent": "q", "task": "t1", "refuse": "declined"}])
        self.fake.send("award", award_event("t2"))
        self.assertEqual(self.wait_posts(FAILURE), [{"agent": "q", "task": "t2", "error": "out of bolts"}])

    def test_a_handler_that_fails_refuses(self):
        agent = parley.Agent("q", ["quote"], home=self.home, backoff=fast_backoff())

        @agent.on_call
        def bid(call):
            raise ValueError("no idea")

        Running(self, agent)
        self.wait_streams(1)
        self.fake.send("call", call_event("t1"))
        self.assertEqual(self.wait_posts(BID), [{"agent": "q", "task": "t1", "refuse": "the agent's handler failed"}])

    def test_counters_are_accepted_revised_or_refused(self):
        agent = self.quoter()
        seen: List[parley.Counter] = []

        @agent.on_counter
        def haggle(counter):
            seen.append(counter)
            if counter.price >= 2:
                return counter.accept()
            if counter.round == 1:
                return agent.bid(price=2.2, eta="300ms", rationale="my floor")
            return None  # the bid stands

        Running(self, agent)
        self.wait_streams(1)
        self.fake.send("counter", counter_event("t1", 2.0))
        self.fake.send("counter", counter_event("t2", 1.5))
        self.fake.send("counter", counter_event("t3", 1.5, round=2))
        posts = {b["task"]: b for b in self.wait_posts(BID, 3)}
        self.assertEqual(posts["t1"], {"agent": "q", "task": "t1", "price": 2.0, "eta": "200ms", "rationale": "deal"})
        self.assertEqual(posts["t2"], {"agent": "q", "task": "t2", "price": 2.2, "eta": "300ms", "rationale": "my floor"})
        self.assertEqual(posts["t3"], {"agent": "q", "task": "t3", "refuse": "the bid stands"})
        c = next(c for c in seen if c.task == "t1")
        self.assertEqual((c.price, c.eta, c.terms, c.round, c.bid.price, c.call.capability), (2.0, 0.2, "80% of your price", 1, 2.5, "quote"))

    def test_without_on_counter_counters_are_refused(self):
        Running(self, self.quoter())
        self.wait_streams(1)
        self.fake.send("counter", counter_event("t1", 1.0))
        self.assertEqual(self.wait_posts(BID), [{"agent": "q", "task": "t1", "refuse": "agent q takes no counter-offers"}])

    def test_a_result_that_is_not_json_fails_the_task(self):
        agent = parley.Agent("q", ["quote"], home=self.home, backoff=fast_backoff())
        agent.on_task(lambda task: {"when": object()})
        Running(self, agent)
        self.wait_streams(1)
        self.fake.send("award", award_event("t1"))
        self.assertEqual(self.wait_posts(FAILURE), [{"agent": "q", "task": "t1", "error": "the agent's result is not JSON"}])
        self.assertEqual(self.fake.posted(RESULT), [])

    def test_cancel_reaches_the_work(self):
        agent = parley.Agent("q", ["quote"], home=self.home, backoff=fast_backoff())
        canceled = threading.Event()
        agent.on_cancel(lambda task: canceled.set())

        @agent.on_task
        def work(task):
            if task.wait_cancelled(5):
                return task.fail("canceled")
            return "not canceled"

        Running(self, agent)
        self.wait_streams(1)
        self.fake.send("award", award_event("t1"))
        self.fake.send("cancel", {"type": "cancel", "task": "t1"})
        self.assertEqual(self.wait_posts(FAILURE), [{"agent": "q", "task": "t1", "error": "canceled"}])
        self.assertTrue(canceled.is_set())

    def test_busy_agent_refuses_calls(self):
        agent = parley.Agent("q", ["quote"], home=self.home, backoff=fast_backoff(), max_tasks=1)
        release = threading.Event()
        agent.on_task(lambda task: release.wait(5) and "done")
        agent.on_call(lambda call: agent.bid(1, "1s"))
        Running(self, agent)
        self.wait_streams(1)
        self.fake.send("award", award_event("t1"))
        self.fake.send("call", call_event("t2"))
        self.assertEqual(self.wait_posts(BID), [{"agent": "q", "task": "t2", "refuse": "busy: 1 calls and tasks in hand"}])
        release.set()
        self.wait_posts(RESULT)
        self.fake.send("call", call_event("t3"))
        self.assertEqual(self.wait_posts(BID, 2)[1]["price"], 1.0)

    def test_too_late_to_bid_is_not_fatal(self):
        self.fake.on_post = lambda path, body: (409, {"error": "task is not open for bids", "code": "conflict"}) \
            if body.get("task") == "t1" else None
        agent = self.quoter()
        r = Running(self, agent)
        self.wait_streams(1)
        self.fake.send("call", call_event("t1"))
        self.wait_posts(BID)
        self.fake.send("call", call_event("t2"))
        self.assertEqual([b["task"] for b in self.wait_posts(BID, 2)], ["t1", "t2"])
        self.assertTrue(r.thread.is_alive())


class Stream(AgentCase):
    def test_malformed_events_are_skipped(self):
        Running(self, self.quoter())
        self.wait_streams(1)
        self.fake.send_raw(b"event: call\ndata: {not json\n\n")
        self.fake.send_raw(b"event: call\ndata: [1, 2]\n\n")
        self.fake.send_raw(b'event: call\ndata: {"type": "call"}\n\n')  # no task
        self.fake.send_raw(b"retry: 100\r\nevent: call\r\ndata: " + json.dumps(call_event("t1")).encode() + b"\r\n\r\n")
        self.assertEqual([b["task"] for b in self.wait_posts(BID)], ["t1"])
        self.assertEqual(len(self.fake.stream_opens), 1)  # the stream was kept

    def test_reconnects_after_the_stream_drops(self):
        connects: List[str] = []
        agent = self.quoter()
        agent.on_connect(lambda a: connects.append(a.id))
        Running(self, agent)
        self.wait_streams(1)
        self.fake.end_streams()
        self.wait_streams(2)
        self.fake.send("call", call_event("t2"))
        self.assertEqual([b["task"] for b in self.wait_posts(BID)], ["t2"])
        # The same daemon: the token it gave still works, no second registration.
        self.assertEqual(len(self.fake.registrations), 1)
        self.assertEqual(connects, ["did:key:z6Mkfakeq"] * 2)

    def test_without_reconnect_the_stream_end_returns(self):
        reasons: List[str] = []
        agent = self.quoter()
        agent.on_disconnect(reasons.append)
        r = Running(self, agent, reconnect=False)
        self.wait_streams(1)
        self.fake.end_streams()
        self.assertIsNone(r.join())
        self.assertEqual(reasons, ["the daemon ended the event stream"])
        self.assertEqual(self.fake.stream_opens, ["q"])

    def test_registers_again_after_a_daemon_restart(self):
        agent = self.quoter()
        Running(self, agent)
        self.wait_streams(1)
        # The daemon stops (its api files go) and another starts on a new
        # port with a new operator token.
        self.fake.close()
        for f in ("api", "api.token"):
            os.remove(os.path.join(self.home, f))
        second = FakeDaemon()
        self.addCleanup(second.close)
        second.write_home(self.home)
        self.assertTrue(second.wait(lambda: len(second.stream_opens) >= 1), "the agent did not come back")
        self.assertEqual(second.registrations, [{"name": "q", "capabilities": ["quote"]}])
        second.send("call", call_event("t3"))
        self.assertTrue(second.wait(lambda: len(second.posted(BID)) == 1))
        self.assertEqual(self.fake.posted(BID), [])

    def test_stream_open_elsewhere_is_retried_then_conflict(self):
        self.fake.refuse_streams = 2  # our own last stream, lingering for a moment
        Running(self, self.quoter())
        self.wait_streams(3)
        self.assertEqual(self.fake.stream_opens, ["409:q", "409:q", "q"])
        self.fake.end_streams()
        self.fake.refuse_streams = 100  # another program holds it
        r = Running(self, self.quoter())
        err = r.join()
        self.assertIsInstance(err, parley.Conflict)
        self.assertIn("another program serves agent q", str(err))

    def test_revoked_while_serving_stops_rather_than_taking_turns(self):
        r = Running(self, self.quoter())
        self.wait_streams(1)
        parley.Client(url=self.fake.url, token=self.fake.operator).register("q", ["quote"])  # someone else
        self.fake.end_streams()
        err = r.join()
        self.assertIsInstance(err, parley.Conflict)
        self.assertIn("registered again or removed while this program served it", str(err))
        self.assertEqual(len(self.fake.registrations), 2)  # it did not take the name back


class Refusals(AgentCase):
    def test_name_taken_is_conflict(self):
        agent = parley.Agent("default", ["quote"], home=self.home)
        with self.assertRaises(parley.Conflict) as cm:
            agent.run()
        self.assertIn("pick another name", str(cm.exception))

    def test_no_daemon_at_start_is_unreachable(self):
        with tempfile.TemporaryDirectory() as empty:
            with self.assertRaises(parley.DaemonUnreachable) as cm:
                parley.Agent("q", ["quote"], home=empty).run()
            self.assertIn("no daemon running for home " + empty, str(cm.exception))

    def test_waiting_for_a_daemon_gives_up_when_told(self):
        with tempfile.TemporaryDirectory() as empty:
            agent = parley.Agent("q", ["quote"], home=empty, backoff=fast_backoff())
            start = time.monotonic()
            with self.assertRaises(parley.DaemonUnreachable) as cm:
                agent.run(wait=True, give_up_after=0.3)
            took = time.monotonic() - start
            self.assertIn("gave up reconnecting", str(cm.exception))
            self.assertGreaterEqual(took, 0.3)
            self.assertLess(took, 2.0)

    def test_agent_token_refused(self):
        agent = parley.Agent("q", url=self.fake.url, agent_token="not-a-token")
        with self.assertRaises(parley.Unauthorized) as cm:
            agent.run()
        self.assertIn("parley agents register --name q", str(cm.exception))

    def test_agent_token_for_another_agent(self):
        tok = parley.Client(url=self.fake.url, token=self.fake.operator).register("other", ["quote"]).token
        with self.assertRaises(parley.Forbidden):
            parley.Agent("q", url=self.fake.url, agent_token=tok).run()

    def test_agent_token_needs_no_operator_token(self):
        # A program with an agent token reads only <home>/api.
        tok = parley.Client(url=self.fake.url, token=self.fake.operator).register("q", ["quote"]).token
        os.remove(os.path.join(self.home, "api.token"))
        agent = parley.Agent("q", home=self.home, agent_token=tok, backoff=fast_backoff())
        agent.on_call(lambda call: agent.bid(1))
        Running(self, agent)
        self.wait_streams(1)
        self.fake.send("call", call_event("t1"))
        self.assertEqual(self.wait_posts(BID)[0]["eta"], "0s")

    def test_stop_returns_promptly(self):
        r = Running(self, self.quoter())
        self.wait_streams(1)
        start = time.monotonic()
        r.stop()
        self.assertLess(time.monotonic() - start, 2.0)
        self.assertIsNone(r.error)


if __name__ == "__main__":
    unittest.main()
