"""The programs in examples/python run as written against the live server."""

from __future__ import annotations

import os
import subprocess
import sys
import unittest
from pathlib import Path

from tests.live import server_url

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "python"
PACKAGE = Path(__file__).resolve().parents[1]


class ExamplesTest(unittest.TestCase):
    def run_example(self, name: str) -> str:
        env = dict(os.environ, INFERQ_URL=server_url(), PYTHONPATH=str(PACKAGE))
        proc = subprocess.run(
            [sys.executable, str(EXAMPLES / name)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        self.assertEqual(proc.returncode, 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout

    def test_every_example_is_tested(self) -> None:
        tested = {"submit_and_wait.py", "stream_tokens.py", "async_many.py"}
        self.assertEqual({p.name for p in EXAMPLES.glob("*.py")}, tested)

    def test_submit_and_wait(self) -> None:
        self.assertIn(
            "succeeded float32 (1, 12) equal: True",
            self.run_example("submit_and_wait.py"),
        )

    def test_stream_tokens(self) -> None:
        self.assertEqual(self.run_example("stream_tokens.py"), "hello hello hello \n")

    def test_async_many(self) -> None:
        self.assertIn("sums " + str(list(range(1, 21))), self.run_example("async_many.py"))


if __name__ == "__main__":
    unittest.main()
