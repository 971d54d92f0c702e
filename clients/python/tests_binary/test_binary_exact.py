"""Values JSON cannot carry (NaN, infinities, bytes that are not UTF-8) sent
with binary=True must come back bit for bit too. That needs the whole path to
keep tensors raw, the job record's result included, not only the HTTP
bodies: until the server does, these fail (500 bad_output for NaN; U+FFFD in
place of non-UTF-8 bytes), so they are kept apart from test_binary.py."""

from __future__ import annotations

import unittest

import numpy as np

import inferq
from tests.live import assert_binary_output, rng_arrays, server_url


def awkward_arrays() -> dict[str, "np.ndarray"]:
    """Values JSON cannot carry: NaN and infinities, and bytes that are not UTF-8."""
    arrays = {}
    for name in ("float16", "float32", "float64"):
        a = rng_arrays(seed=3)[name].copy().reshape(-1)
        a[5], a[6], a[7] = np.nan, np.inf, -np.inf
        arrays[name] = a.reshape(2, 5)
    b = rng_arrays(seed=3)["BYTES"].copy().reshape(-1)
    b[0], b[1] = b"\xff\xfe\x00", bytes(range(256))
    arrays["BYTES"] = b.reshape(2, 5)
    return arrays


class ExactTest(unittest.TestCase):
    def setUp(self) -> None:
        self.c = inferq.Client(server_url())

    def test_values_json_cannot_carry(self) -> None:
        for name, a in awkward_arrays().items():
            with self.subTest(dtype=name, path="jobs"):
                job = self.c.wait(self.c.submit("identity", {"INPUT0": a}, binary=True).id, 30, binary=True)
                self.assertEqual(job.status, "succeeded", job.error)
                assert job.result is not None
                assert_binary_output(self, name, a, job.result.output("OUTPUT0"))
            with self.subTest(dtype=name, path="infer"):
                assert_binary_output(
                    self, name, a, self.c.infer("identity", {"INPUT0": a}, binary=True).output("OUTPUT0")
                )


if __name__ == "__main__":
    unittest.main()
