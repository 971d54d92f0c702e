import time
import unittest

from inferq_runner.continuous import Engine
from inferq_runner.generate import Request, generate
from inferq_runner.models import GenerateModel, load
from inferq_runner.sim import SimGPTLM, parse_duration
from inferq_runner.sources import LoadError

from .test_continuous import run_all
from .test_generate import greedy


def sim_lm(a: str = "0ms", b: str = "0ms") -> SimGPTLM:
    model = load("builtin:sim-gpt", device="cpu", options={"params": {"a": a, "b": b}})
    assert isinstance(model, GenerateModel) and isinstance(model.lm, SimGPTLM)
    return model.lm


class SimGPTTest(unittest.TestCase):
    def test_params_and_bad_params(self):
        lm = sim_lm("12ms", "250us")
        self.assertAlmostEqual(lm.a, 0.012)
        self.assertAlmostEqual(lm.b, 0.00025)
        self.assertAlmostEqual(parse_duration(3, "a"), 0.003)  # a bare number is milliseconds
        for bad in ("ten", "-1ms", "5 parsecs", True):
            with self.assertRaises(LoadError, msg=repr(bad)):
                load("builtin:sim-gpt", device="cpu", options={"params": {"a": bad}})

    def test_a_step_costs_a_plus_b_per_row(self):
        lm = sim_lm("20ms", "1ms")
        reqs = [Request(lm.encode("p%d" % i), greedy(4)) for i in range(10)]
        t = time.monotonic()
        generate(lm, reqs)
        took = time.monotonic() - t
        # A prefill and three decoding steps of ten rows: 4 * (20 + 10) ms.
        self.assertEqual(lm.steps, 4)
        self.assertGreaterEqual(took, 0.12)
        self.assertLess(took, 0.12 + 0.5)

    def test_tokens_are_deterministic_printable_and_independent_of_neighbours(self):
        lm = sim_lm()
        prompts = ["Hello", "a much longer prompt than the others", "", "é"]
        solo = [generate(lm, [Request(lm.encode(p), greedy(40))])[0] for p in prompts]
        for out in solo:
            self.assertEqual(len(out.tokens), 40)
            self.assertTrue(all(32 <= t < 127 for t in out.tokens))
        self.assertNotEqual(solo[0].text, solo[1].text)
        batched = generate(lm, [Request(lm.encode(p), greedy(40)) for p in prompts])
        self.assertEqual([o.text for o in batched], [o.text for o in solo])
        joins = {2 * i: [(i, Request(lm.encode(p), greedy(10 + 7 * i)))] for i, p in enumerate(prompts)}
        done, _ = run_all(Engine(lm, max_num_seqs=3), joins)
        for i in range(len(prompts)):
            self.assertEqual(done[i].tokens, solo[i].tokens[: 10 + 7 * i])


if __name__ == "__main__":
    unittest.main()
