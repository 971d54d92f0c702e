"""The KServe v2 binary tensor data extension (binary=True) against a live
inferq dev whose ingress supports it: raw tensors of every datatype, with
the values JSON cannot carry (NaN, infinities, non-UTF-8 bytes), through
identity bit for bit, on job submission + GET and on /v2 infer.

Kept apart from tests/ until the server side of the extension is merged;
run it as tests/ is run, with ``-s tests_binary``."""

from __future__ import annotations

import unittest

import numpy as np

import inferq
from tests.live import rng_arrays, server_url


def binary_arrays() -> dict[str, "np.ndarray"]:
    arrays = rng_arrays(seed=3)
    for name in ("float16", "float32", "float64"):
        a = arrays[name].copy().reshape(-1)
        a[5], a[6], a[7] = np.nan, np.inf, -np.inf
        arrays[name] = a.reshape(2, 5)
    b = arrays["BYTES"].copy().reshape(-1)
    b[0], b[1] = b"\xff\xfe\x00", bytes(range(256))
    arrays["BYTES"] = b.reshape(2, 5)
    return arrays


class BinaryTest(unittest.TestCase):
    def setUp(self) -> None:
        self.c = inferq.Client(server_url())

    def check(self, name: str, want: "np.ndarray", out: inferq.Tensor) -> None:
        self.assertIsNotNone(out.raw, f"{name}: the output did not come in binary form")
        got = out.to_numpy()
        self.assertEqual((got.dtype, got.shape), (want.dtype, want.shape))
        if want.dtype == object:
            self.assertEqual(got.tolist(), want.tolist())
        else:
            self.assertEqual(got.tobytes(), want.tobytes(), name)

    def test_jobs_round_trip_in_binary(self) -> None:
        for name, a in binary_arrays().items():
            with self.subTest(dtype=name):
                acc = self.c.submit("identity", {"INPUT0": a}, binary=True)
                job = self.c.wait(acc.id, 30, binary=True)
                self.assertEqual(job.status, "succeeded", job.error)
                assert job.result is not None
                self.check(name, a, job.result.output("OUTPUT0"))

    def test_prefer_wait_answers_in_binary(self) -> None:
        a = binary_arrays()["float32"]
        job = self.c.submit("identity", {"INPUT0": a}, binary=True, wait=20)
        self.assertEqual((job.status_code, job.status), (200, "succeeded"))
        assert job.result is not None
        self.check("float32", a, job.result.output("OUTPUT0"))

    def test_bf16(self) -> None:
        raw = np.array([0x3F80, 0x7FC0, 0xFF80, 0x0001], "<u2").tobytes()  # 1, NaN, -inf, a subnormal
        t = inferq.Tensor("INPUT0", [1, 4], "BF16", raw=raw)
        job = self.c.wait(self.c.submit("identity", [t], binary=True).id, 30, binary=True)
        assert job.result is not None
        self.assertEqual(job.result.output("OUTPUT0").to_bytes(), raw)

    def test_infer_in_binary(self) -> None:
        for name, a in binary_arrays().items():
            with self.subTest(dtype=name):
                res = self.c.infer("identity", {"INPUT0": a}, binary=True)
                self.check(name, a, res.output("OUTPUT0"))


if __name__ == "__main__":
    unittest.main()
