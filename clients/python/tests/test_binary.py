"""The KServe v2 binary tensor data extension (binary=True) against a live
inferq dev whose ingress supports it: raw tensors of every datatype through
identity bit for bit, on job submission + GET (Accept:
application/octet-stream), a Prefer: wait submission and /v2 infer.

Values JSON cannot carry (NaN, infinities, bytes that are not UTF-8) travel
in the HTTP bodies but not yet through a job's stored result, which is JSON,
so these tests use finite floats and UTF-8 text."""

from __future__ import annotations

import unittest

import numpy as np

import inferq
from tests.live import assert_binary_output, rng_arrays, server_url


class BinaryTest(unittest.TestCase):
    def setUp(self) -> None:
        self.c = inferq.Client(server_url())

    def check(self, name: str, want: "np.ndarray", out: inferq.Tensor) -> None:
        assert_binary_output(self, name, want, out)

    def test_jobs_round_trip_in_binary(self) -> None:
        for name, a in rng_arrays(seed=3).items():
            with self.subTest(dtype=name):
                acc = self.c.submit("identity", {"INPUT0": a}, binary=True)
                job = self.c.wait(acc.id, 30, binary=True)
                self.assertEqual(job.status, "succeeded", job.error)
                assert job.result is not None
                self.check(name, a, job.result.output("OUTPUT0"))

    def test_prefer_wait_answers_in_binary(self) -> None:
        a = rng_arrays(seed=3)["float32"]
        job = self.c.submit("identity", {"INPUT0": a}, binary=True, wait=20)
        self.assertEqual((job.status_code, job.status), (200, "succeeded"))
        assert job.result is not None
        self.check("float32", a, job.result.output("OUTPUT0"))

    def test_bf16(self) -> None:
        raw = np.array([0x3F80, 0xC000, 0x8000, 0x0001], "<u2").tobytes()  # 1, -2, -0, a subnormal
        t = inferq.Tensor("INPUT0", [1, 4], "BF16", raw=raw)
        job = self.c.wait(self.c.submit("identity", [t], binary=True).id, 30, binary=True)
        assert job.result is not None
        self.assertEqual(job.result.output("OUTPUT0").to_bytes(), raw)

    def test_infer_in_binary(self) -> None:
        for name, a in rng_arrays(seed=3).items():
            with self.subTest(dtype=name):
                res = self.c.infer("identity", {"INPUT0": a}, binary=True)
                self.check(name, a, res.output("OUTPUT0"))


if __name__ == "__main__":
    unittest.main()
