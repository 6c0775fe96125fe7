"""The command lines, as a user runs them: one line and a non-zero exit for
a problem, exit 0 for Ctrl-C and SIGTERM, never a traceback."""

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import unittest
from pathlib import Path

from fakedaemon import FakeDaemon, award_event, call_event

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "python" / "agent.py"
README = Path(__file__).resolve().parents[1] / "README.md"
TOP_README = Path(__file__).resolve().parents[3] / "README.md"


def first_python_block(path: Path) -> str:
    """The first ```python block of a markdown file, dedented."""
    text = path.read_text()
    start = text.index("```python\n") + len("```python\n")
    return textwrap.dedent(text[start:text.index("```", start)])


def run(*args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


class ModuleCommand(unittest.TestCase):
    def test_no_daemon(self):
        with tempfile.TemporaryDirectory() as home:
            p = run("-m", "parley", "--home", home, "node")
        self.assertEqual(p.returncode, 1)
        self.assertEqual(p.stderr, "parley: no daemon running for home %s (start one with: parley run --home %s)\n"
                         % (home, home))

    def test_request(self):
        fake = FakeDaemon()
        self.addCleanup(fake.close)
        p = run("-m", "parley", "--api", fake.url, "--token", fake.operator, "request", "--capability", "quote",
                "--input", '{"sku": "bolt"}', "--timeout", "5s")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn('"state": "completed"', p.stdout)
        self.assertEqual(fake.tasks, [{"capability": "quote", "input": {"sku": "bolt"}, "timeout": "5s"}])

    def test_bad_json_argument(self):
        p = run("-m", "parley", "--api", "http://127.0.0.1:1", "--token", "x", "request", "--capability", "quote",
                "--input", "{nope")
        self.assertEqual(p.returncode, 1)
        self.assertTrue(p.stderr.startswith("parley: --input '{nope' is not JSON"), p.stderr)


@unittest.skipUnless(EXAMPLE.exists(), "examples/python/agent.py is not beside this package")
class ExampleAgent(unittest.TestCase):
    def setUp(self):
        self.fake = FakeDaemon()
        self.addCleanup(self.fake.close)
        self.home = tempfile.TemporaryDirectory()
        self.addCleanup(self.home.cleanup)
        self.fake.write_home(self.home.name)

    def test_problems_are_one_line(self):
        with tempfile.TemporaryDirectory() as empty:
            cases = [
                (["--home", empty], "agent.py: no daemon running for home %s (start one with: parley run --home %s)\n"
                 % (empty, empty)),
                (["--home", self.home.name, "--name", "default"], "agent.py: register agent default: agent name taken "
                 "by one of the node's own agents; pick another name\n"),
                (["--home", self.home.name, "--token-file", os.path.join(empty, "none")],
                 "agent.py: token file %s: No such file or directory\n" % os.path.join(empty, "none")),
            ]
            for args, want in cases:
                with self.subTest(args=args):
                    p = run(str(EXAMPLE), *args)
                    self.assertEqual(p.returncode, 1)
                    self.assertEqual(p.stderr, want)

    def test_signals_exit_zero(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            with self.subTest(sig=sig.name):
                p = subprocess.Popen([sys.executable, str(EXAMPLE), "--home", self.home.name, "--name", "q"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                try:
                    assert p.stdout is not None
                    line = p.stdout.readline()
                    self.assertEqual(line, "connected q did:key:z6Mkfakeq\n")
                    p.send_signal(sig)
                    _, err = p.communicate(timeout=5)
                finally:
                    if p.poll() is None:
                        p.kill()
                        p.communicate()
                self.assertEqual(p.returncode, 0, err)
                self.assertNotIn("Traceback", err)


@unittest.skipUnless(README.exists(), "README.md is not beside this package")
class ReadmeAgent(unittest.TestCase):
    def test_the_ten_line_agent_works(self):
        code = first_python_block(README)
        self.assertLessEqual(len([l for l in code.splitlines() if l.strip()]), 10)
        fake = FakeDaemon()
        self.addCleanup(fake.close)
        with tempfile.TemporaryDirectory() as home:
            fake.write_home(home)
            env = dict(os.environ, PARLEY_HOME=home)
            p = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True)
            try:
                self.assertTrue(fake.wait(lambda: fake.stream_opens == ["quoter"]), "the README agent did not connect")
                self.assertEqual(fake.registrations, [{"name": "quoter", "capabilities": ["quote.shipping"]}])
                fake.send("call", call_event("t1", "quote.shipping"))
                self.assertTrue(fake.wait(lambda: len(fake.posted("/v1/external/bid")) == 1))
                self.assertEqual(fake.posted("/v1/external/bid"), [{"agent": "quoter", "task": "t1", "price": 12.5,
                                                                    "eta": "200ms", "rationale": "cheap and fast"}])
                fake.send("award", award_event("t1", {"sku": "bolt"}))
                self.assertTrue(fake.wait(lambda: len(fake.posted("/v1/external/result")) == 1))
                self.assertEqual(fake.posted("/v1/external/result")[0]["result"], {"price": 12.5})
                p.send_signal(signal.SIGTERM)
                _, err = p.communicate(timeout=5)
            finally:
                if p.poll() is None:
                    p.kill()
                    p.communicate()
        self.assertEqual(p.returncode, 0, err)

    @unittest.skipUnless(TOP_README.exists(), "the repository's README.md is not here")
    def test_the_repository_readme_shows_the_same_agent(self):
        self.assertEqual(first_python_block(TOP_README), first_python_block(README))


if __name__ == "__main__":
    unittest.main()
