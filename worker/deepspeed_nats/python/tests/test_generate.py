import threading
import unittest

import torch

from inferq_runner.generate import Request, generate
from inferq_runner.models import GenerateModel, TinyGPTLM, load
from inferq_runner.sampling import GenParams
from inferq_runner.text import ByteTokenizer

_LM: TinyGPTLM | None = None


def load_tiny_lm() -> TinyGPTLM:
    model = load("builtin:tiny-gpt", device="cpu")
    assert isinstance(model, GenerateModel) and isinstance(model.lm, TinyGPTLM)
    return model.lm


def tiny_lm() -> TinyGPTLM:
    global _LM
    if _LM is None:
        _LM = load_tiny_lm()
    return _LM


class ScriptLM(TinyGPTLM):
    """Emits a fixed token script per row (then EOS), to test stop logic
    without depending on what the random model says."""

    def __init__(self, scripts):
        tok = ByteTokenizer()
        super().__init__(torch.nn.Identity(), tok, torch.device("cpu"))
        self.scripts = scripts
        self.steps = 0

    def forward(self, ids, mask, pos, cache):
        rows, step = (torch.arange(ids.shape[0]), 0) if cache is None else (cache[0], cache[1] + 1)
        self.steps += 1
        logits = torch.zeros(ids.shape[0], 257)
        for i, r in enumerate(rows.tolist()):
            script = self.scripts[r]
            logits[i, script[step] if step < len(script) else self.tok.eos_id] = 10.0
        return logits, (rows, step)

    def select_cache(self, cache, idx):
        return cache[0][idx], cache[1]


def collect():
    chunks: list[tuple[str, int, bool]] = []
    return chunks, lambda text, token_id, final: chunks.append((text, token_id, final))


def greedy(n, stop=()):
    return GenParams(max_tokens=n, temperature=0, stop=stop)


class StopConditionTest(unittest.TestCase):
    def test_eos_max_tokens_and_stop_strings(self):
        lm = ScriptLM([list(b"hi"), list(b"abcdefgh"), list(b"one<END>two"), list(b"xyz")])
        streams = [collect() for _ in range(4)]
        reqs = [
            Request([256], greedy(10), streams[0][1]),
            Request([256], greedy(3), streams[1][1]),
            Request([256], greedy(20, stop=["<END>"]), streams[2][1]),
            Request([256], greedy(0), streams[3][1]),
        ]
        outs = generate(lm, reqs)
        self.assertEqual(
            [(o.text, o.reason) for o in outs], [("hi", "eos"), ("abc", "length"), ("one", "stop"), ("", "length")]
        )
        for (chunks, _), o in zip(streams, outs):
            self.assertEqual("".join(c[0] for c in chunks), o.text)
            self.assertTrue(chunks[-1][2], "last chunk is final")
            self.assertEqual(sum(c[2] for c in chunks), 1)
        # "<" was held back while it could start "<END>", so nothing past "one" streamed.
        self.assertEqual([c[0] for c in streams[2][0]][:3], ["o", "n", "e"])

    def test_utf8_streaming(self):
        text = "é€😀 ok"
        chunks, cb = collect()
        out = generate(ScriptLM([list(text.encode())]), [Request([256], greedy(50), cb)])[0]
        self.assertEqual(out.text, text)
        self.assertEqual([c[0] for c in chunks if c[0]], ["é", "€", "😀", " ", "o", "k"])

    def test_cancel_between_steps(self):
        lm = ScriptLM([[97] * 1000, [98] * 5])
        flag = threading.Event()
        chunks, cb = collect()

        def on_chunk(text, token_id, final):
            cb(text, token_id, final)
            if len(chunks) == 3:
                flag.set()

        outs = generate(lm, [Request([256], greedy(1000), on_chunk, flag.is_set), Request([256], greedy(5))])
        self.assertEqual(outs[0].reason, "cancelled")
        self.assertEqual(len(outs[0].tokens), 3)
        self.assertEqual((outs[1].text, outs[1].reason), ("bbbbb", "length"))
        self.assertLess(lm.steps, 10)


class TinyGPTTest(unittest.TestCase):
    prompts = ["Hello", "The quick brown fox jumps", "", "é"]

    def test_batched_equals_unbatched_greedy(self):
        lm = tiny_lm()
        batched = generate(lm, [Request(lm.encode(p), greedy(24)) for p in self.prompts])
        for p, b in zip(self.prompts, batched):
            alone = generate(lm, [Request(lm.encode(p), greedy(24))])[0]
            self.assertEqual(alone.tokens, b.tokens, p)
            self.assertEqual(alone.text, b.text)

    def test_same_seed_same_text_regardless_of_neighbours(self):
        lm = tiny_lm()
        params = GenParams(max_tokens=24, temperature=0.9, top_k=40, top_p=0.95, seed=1234)
        alone = generate(lm, [Request(lm.encode("seeded"), params)])[0]
        others = [
            Request(lm.encode(p), GenParams(max_tokens=n, temperature=1.0, seed=n))
            for n, p in ((5, "a long neighbour prompt"), (30, "x"))
        ]
        mixed = generate(lm, [others[0], Request(lm.encode("seeded"), params), others[1]])[1]
        self.assertEqual(alone.text, mixed.text)
        again = generate(lm, [Request(lm.encode("seeded"), params)])[0]
        self.assertEqual(alone.text, again.text)

    def test_weights_are_deterministic(self):
        lm = tiny_lm()
        other = load_tiny_lm()
        for a, b in zip(lm.net.state_dict().values(), other.net.state_dict().values()):
            self.assertTrue(torch.equal(a, b))

    def test_stream_concatenates_to_text(self):
        lm = tiny_lm()
        streams = [collect() for _ in range(3)]
        reqs = [
            Request(lm.encode(p), GenParams(max_tokens=40, temperature=1.0, seed=i, stop=["a", "Gu"]), s[1])
            for i, (p, s) in enumerate(zip(self.prompts, streams))
        ]
        for (chunks, _), o in zip(streams, generate(lm, reqs)):
            self.assertEqual("".join(c[0] for c in chunks), o.text)
            self.assertNotIn("a", o.text)


if __name__ == "__main__":
    unittest.main()
