import unittest

import torch

from inferq_runner.tiny import LayerKV

from .test_generate import tiny_lm


def kv(rows: int, n: int, start: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys and values [rows, 2, n, 3] whose entries name their position."""
    k = torch.arange(n, dtype=torch.float32).view(1, 1, n, 1).expand(rows, 2, n, 3) + start
    return k.clone(), -k.clone()


class LayerKVTest(unittest.TestCase):
    def test_append_writes_in_place_until_full_then_doubles(self):
        k, v = kv(2, 5)
        cache = LayerKV.empty(k, 64)
        cache.append(k, v)
        ptr = cache.k.data_ptr()
        for i in range(5, 64):
            cache.append(*kv(2, 1, float(i)))
        self.assertEqual((cache.n, cache.capacity, cache.k.data_ptr()), (64, 64, ptr))
        cache.append(*kv(2, 1, 64.0))
        self.assertEqual((cache.n, cache.capacity), (65, 128))
        want = torch.arange(65, dtype=torch.float32)
        self.assertTrue(torch.equal(cache.keys()[1, 1, :, 2], want))
        self.assertTrue(torch.equal(cache.values()[0, 0, :, 0], -want))

    def test_select_trim_and_merge(self):
        a = LayerKV.empty(kv(3, 1)[0], 64)
        a.append(*kv(3, 6))
        b = LayerKV.empty(kv(1, 1)[0], 64)
        b.append(*kv(1, 9, 100.0))
        a = a.select(torch.tensor([0, 2]))
        self.assertEqual(a.keys().shape, (2, 2, 6, 3))
        t = a.trim(2)  # a view: the spare capacity stays usable
        self.assertEqual((t.n, t.capacity, t.k.data_ptr() > a.k.data_ptr()), (4, 62, True))
        self.assertTrue(torch.equal(t.keys()[0, 0, :, 0], torch.tensor([2.0, 3, 4, 5])))
        m = LayerKV.merge(t, b)
        self.assertEqual((m.n, m.keys().shape[0]), (9, 3))
        # a's rows are right-aligned: five zero columns of padding, then its keys.
        self.assertTrue(torch.equal(m.keys()[1, 0, :, 0], torch.tensor([0.0, 0, 0, 0, 0, 2, 3, 4, 5])))
        self.assertTrue(torch.equal(m.values()[2, 1, :, 1], -torch.arange(100.0, 109.0)))

    def test_decoding_does_not_reallocate_the_cache(self):
        lm = tiny_lm()
        ids = torch.tensor([[72, 105, 33]])
        mask = torch.ones((1, 3), dtype=torch.bool)
        with torch.no_grad():
            _, cache = lm.forward(ids, mask, torch.arange(3).unsqueeze(0), None)
            ptrs = [c.k.data_ptr() for c in cache]
            for i in range(3, 20):
                mask = torch.ones((1, i + 1), dtype=torch.bool)
                _, cache = lm.forward(torch.tensor([[65]]), mask, torch.tensor([[i]]), cache)
        self.assertEqual([c.n for c in cache], [20, 20, 20])
        self.assertEqual([c.k.data_ptr() for c in cache], ptrs)


if __name__ == "__main__":
    unittest.main()
