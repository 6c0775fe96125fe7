"""Client against the fake daemon: finding the daemon, errors, requests."""

import os
import socket
import tempfile
import unittest

import parley
from fakedaemon import FakeDaemon


def closed_port_url() -> str:
    """A loopback URL where nothing listens."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return "http://127.0.0.1:%d" % port


class Finding(unittest.TestCase):
    def test_home_without_a_daemon(self):
        with tempfile.TemporaryDirectory() as home:
            with self.assertRaises(parley.DaemonUnreachable) as cm:
                parley.Client(home).node()
            self.assertEqual(str(cm.exception),
                             "no daemon running for home %s (start one with: parley run --home %s)" % (home, home))

    def test_nothing_listens(self):
        url = closed_port_url()
        with self.assertRaises(parley.DaemonUnreachable) as cm:
            parley.Client(url=url, token="x").node()
        self.assertIn("no daemon answers at " + url, str(cm.exception))

    def test_stale_api_file(self):
        # A daemon that died without cleaning up leaves its files behind.
        with tempfile.TemporaryDirectory() as home:
            with open(os.path.join(home, "api"), "w") as f:
                f.write(closed_port_url() + "\n")
            with open(os.path.join(home, "api.token"), "w") as f:
                f.write("tok\n")
            with self.assertRaises(parley.DaemonUnreachable):
                parley.Client(home).node()

    def test_home_from_the_environment(self):
        fake = FakeDaemon()
        self.addCleanup(fake.close)
        with tempfile.TemporaryDirectory() as home:
            fake.write_home(home)
            old = os.environ.get("PARLEY_HOME")
            os.environ["PARLEY_HOME"] = home
            try:
                self.assertEqual(parley.Client().node()["peer"], "12D3KooWfake")
            finally:
                if old is None:
                    del os.environ["PARLEY_HOME"]
                else:
                    os.environ["PARLEY_HOME"] = old

    def test_not_an_http_url(self):
        with self.assertRaises(parley.ParleyError) as cm:
            parley.Client(url="127.0.0.1:5001", token="x").node()
        self.assertIn("not an http:// URL", str(cm.exception))


class Errors(unittest.TestCase):
    def setUp(self):
        self.fake = FakeDaemon()
        self.addCleanup(self.fake.close)
        self.client = parley.Client(url=self.fake.url, token=self.fake.operator)

    def test_register_a_taken_name_is_conflict(self):
        with self.assertRaises(parley.Conflict) as cm:
            self.client.register("default", ["quote"])
        self.assertEqual(cm.exception.status, 409)
        self.assertIn("pick another name", str(cm.exception))

    def test_register_and_again(self):
        first = self.client.register("q", ["quote"])
        self.assertEqual((first.name, first.id, first.capabilities), ("q", "did:key:z6Mkfakeq", ["quote"]))
        again = self.client.register("q", "quote")
        self.assertNotEqual(first.token, again.token)

    def test_bad_input_without_code_field(self):
        self.fake.code_field = False  # a daemon from before the "code" field
        with self.assertRaises(parley.InvalidInput) as cm:
            self.client.register("q", [])
        self.assertIn("at least one", str(cm.exception))
        self.assertEqual(cm.exception.code, "bad_request")

    def test_wrong_token(self):
        with self.assertRaises(parley.Unauthorized):
            parley.Client(url=self.fake.url, token="nope").node()

    def test_body_that_is_not_json(self):
        with self.assertRaises(parley.InvalidInput):
            self.client.call("POST", "/v1/tasks", {"x": object()})


class Requests(unittest.TestCase):
    def setUp(self):
        self.fake = FakeDaemon()
        self.addCleanup(self.fake.close)
        self.client = parley.Client(url=self.fake.url, token=self.fake.operator)

    def test_completed(self):
        out = self.client.request("quote", {"sku": "bolt"}, budget=5, bid_window=0.5, timeout="10s")
        self.assertTrue(out.completed)
        self.assertEqual(out.result, {"ok": True})
        self.assertEqual(self.fake.tasks, [{"capability": "quote", "input": {"sku": "bolt"}, "budget": 5.0,
                                            "bid_window": "500ms", "timeout": "10s"}])

    def test_failed_raises_with_the_outcome(self):
        self.fake.task_answer = {"task": "t9", "state": "failed", "reason": "no bids"}
        with self.assertRaises(parley.TaskFailed) as cm:
            self.client.request("quote")
        self.assertEqual(str(cm.exception), "task t9 failed: no bids")
        self.assertEqual(cm.exception.outcome.state, "failed")
        out = self.client.request("quote", check=False)
        self.assertFalse(out.completed)
        self.assertEqual(out.reason, "no bids")

    def test_module_level_request(self):
        out = parley.request("quote", url=self.fake.url, token=self.fake.operator)
        self.assertEqual(out.task, "t1")


if __name__ == "__main__":
    unittest.main()
