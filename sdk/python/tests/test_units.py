"""Errors, durations and backoff: no daemon needed."""

import json
import unittest

import parley
from parley import durations
from parley.errors import from_response


class ErrorsFromResponse(unittest.TestCase):
    def test_code_picks_the_class(self):
        # The code names the problem even where the status is generic.
        e = from_response(400, json.dumps({"error": "no such agent", "code": "not_found"}).encode())
        self.assertIsInstance(e, parley.NotFound)
        self.assertEqual((str(e), e.status, e.code), ("no such agent", 400, "not_found"))

    def test_status_when_no_code(self):
        cases = {400: parley.InvalidInput, 401: parley.Unauthorized, 403: parley.Forbidden, 404: parley.NotFound,
                 405: parley.MethodNotAllowed, 409: parley.Conflict, 413: parley.PayloadTooLarge,
                 500: parley.InternalError, 501: parley.Unsupported, 503: parley.Unavailable}
        for status, cls in cases.items():
            with self.subTest(status=status):
                e = from_response(status, b'{"error": "why"}')
                self.assertIs(type(e), cls)
                self.assertEqual(str(e), "why")
                self.assertIsInstance(e, parley.ParleyError)

    def test_unknown_code_falls_back_to_status(self):
        e = from_response(409, b'{"error": "taken", "code": "something_new"}')
        self.assertIs(type(e), parley.Conflict)
        self.assertEqual(e.code, "something_new")

    def test_body_not_json(self):
        e = from_response(502, b"<html>bad gateway</html>", "register q")
        self.assertIsInstance(e, parley.InternalError)
        self.assertEqual(str(e), "register q: <html>bad gateway</html>")
        e = from_response(418, b"")
        self.assertIs(type(e), parley.ParleyError)
        self.assertEqual(str(e), "HTTP 418")


class Durations(unittest.TestCase):
    def test_numbers_and_strings_give_go_strings(self):
        for given, want in [(0.2, "200ms"), ("200ms", "200ms"), (90, "90s"), ("1.5s", "1500ms"), ("2m", "120s"),
                            (0, "0s"), ("1h2m3s", "3723s"), (1.5e-6, "1500ns"), ("250us", "250us")]:
            with self.subTest(given=given):
                self.assertEqual(durations.to_go(given), want)

    def test_bad_durations_are_invalid_input(self):
        for bad in [-1, "-1s", "soon", "", "5", "1x", True, None, [1], float("nan"), float("inf")]:
            with self.subTest(bad=bad):
                with self.assertRaises(parley.InvalidInput):
                    durations.to_go(bad)

    def test_from_wire(self):
        # Today the daemon marshals time.Duration as nanoseconds; tomorrow strings.
        self.assertEqual(durations.from_wire(500_000_000), 0.5)
        self.assertEqual(durations.from_wire("500ms"), 0.5)
        self.assertEqual(durations.from_wire(None), 0.0)


class BackoffBounded(unittest.TestCase):
    def test_grows_to_the_maximum_and_never_past_it(self):
        b = parley.Backoff(initial=0.1, maximum=2.0, jitter=0.0)
        delays = [b.next() for _ in range(12)]
        self.assertEqual(delays[:5], [0.1, 0.2, 0.4, 0.8, 1.6])
        self.assertEqual(delays[5:], [2.0] * 7)
        b.reset()
        self.assertEqual(b.next(), 0.1)

    def test_jitter_only_shortens(self):
        for r in (0.0, 0.5, 0.999):
            b = parley.Backoff(initial=1.0, maximum=4.0, jitter=0.5, rand=lambda: r)
            for _ in range(10):
                d = b.next()
                self.assertLessEqual(d, 4.0)
                self.assertGreater(d, 0.0)
        b = parley.Backoff(initial=1.0, maximum=4.0, jitter=0.5, rand=lambda: 0.999)
        self.assertAlmostEqual(b.next(), 0.5005)

    def test_bad_settings(self):
        for kw in ({"initial": 0.0}, {"initial": 5.0, "maximum": 1.0}, {"factor": 0.5}, {"jitter": 1.0}):
            with self.subTest(kw=kw), self.assertRaises(parley.InvalidInput):
                parley.Backoff(**kw)  # pyright: ignore[reportArgumentType]


class Answers(unittest.TestCase):
    def test_bid_checks_what_it_is_given(self):
        self.assertEqual(parley.Bid(12.5, "200ms", "fast").wire(), {"price": 12.5, "eta": "200ms", "rationale": "fast"})
        self.assertEqual(parley.Agent.bid(price=3, eta=0.25).wire()["eta"], "250ms")
        for bad in [{"price": -1}, {"price": "12"}, {"price": 1, "eta": "soon"}]:
            with self.subTest(bad=bad), self.assertRaises(parley.InvalidInput):
                parley.Bid(**bad)

    def test_counter_from_the_event_and_its_acceptance(self):
        c = parley.Counter.from_event({"type": "counter", "task": "t", "call": {"task": "t", "bid_window": "2s"},
                                       "counter": {"price": 1.6, "eta": "200ms", "terms": "80%", "round": 2,
                                                   "bid": {"price": 2, "eta": "200ms"}}})
        self.assertEqual((c.task, c.price, c.eta, c.terms, c.round, c.bid.price, c.call.bid_window), ("t", 1.6, 0.2, "80%", 2, 2.0, 2.0))
        self.assertEqual(c.accept().wire(), {"price": 1.6, "eta": "200ms", "rationale": "deal"})
        # What the daemon would never send is read leniently, not raised.
        bad = parley.Counter.from_event({"task": "t", "counter": {"price": "x", "round": True}})
        self.assertEqual((bad.price, bad.round), (0.0, 1))

    def test_agent_needs_capabilities_or_a_token(self):
        with self.assertRaises(parley.InvalidInput):
            parley.Agent("q")
        parley.Agent("q", agent_token="t", url="http://127.0.0.1:1")


if __name__ == "__main__":
    unittest.main()
