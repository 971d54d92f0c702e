import math
import unittest

import torch

from inferq_runner.sampling import GenParams, ParamError, filter_logits, make_generator, parse_params, sample


class SamplingTest(unittest.TestCase):
    def test_greedy_is_argmax(self):
        logits = torch.tensor([0.1, 3.0, -2.0, 2.9])
        self.assertEqual(sample(logits, GenParams(temperature=0), None), 1)

    def test_top_k_masks(self):
        logits = torch.tensor([1.0, 4.0, 3.0, 2.0, 0.0])
        out = filter_logits(logits, top_k=2)
        self.assertEqual([math.isinf(v) for v in out.tolist()], [True, False, False, True, True])
        # With top_k=1 sampling always picks the argmax.
        g = make_generator(1, "cpu")
        for _ in range(20):
            self.assertEqual(sample(logits, GenParams(temperature=5.0, top_k=1), g), 1)

    def test_top_p_masks(self):
        probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
        out = filter_logits(probs.log(), top_p=0.75)
        # 0.5 < 0.75, so the second token is needed too; the rest are dropped.
        self.assertEqual([math.isinf(v) for v in out.tolist()], [False, False, True, True])
        out = filter_logits(probs.log(), top_p=0.4)  # the top token is always kept
        self.assertEqual([math.isinf(v) for v in out.tolist()], [False, True, True, True])

    def test_same_seed_same_sample(self):
        logits = torch.randn(257, generator=torch.Generator().manual_seed(3))
        p = GenParams(temperature=1.0, top_p=0.9)
        a = [sample(logits, p, g) for g in [make_generator(99, "cpu")] for _ in range(30)]
        b = [sample(logits, p, g) for g in [make_generator(99, "cpu")] for _ in range(30)]
        c = [sample(logits, p, g) for g in [make_generator(100, "cpu")] for _ in range(30)]
        self.assertEqual(a, b)
        self.assertNotEqual(a, c)

    def test_parse_params(self):
        p = parse_params(
            b'{"max_new_tokens": 5, "temperature": 0, "top_k": 3, "top_p": 0.5, "seed": 7, '
            b'"stop": "\\n", "priority": 1}'
        )
        self.assertEqual((p.max_tokens, p.temperature, p.top_k, p.top_p, p.seed, p.stop), (5, 0.0, 3, 0.5, 7, ("\n",)))
        self.assertEqual(parse_params(b"").max_tokens, 16)
        self.assertEqual(parse_params(b'{"max_tokens": 2, "max_new_tokens": 9}').max_tokens, 2)
        for bad in (
            b'{"max_tokens": -1}',
            b'{"temperature": "hot"}',
            b'{"top_p": 1.5}',
            b'{"max_tokens": Infinity}',
            b'{"max_tokens": NaN}',
            b'{"temperature": NaN}',
            b'{"top_p": NaN}',
            b'{"stop": [1]}',
            b"[1]",
            b"{",
            b'{"max_tokens": 1.5}',
        ):
            with self.assertRaises(ParamError, msg=bad):
                parse_params(bad)


if __name__ == "__main__":
    unittest.main()
