"""sim-gpt, a built-in TEST model: a causal LM whose forward pass sleeps for
a fixed device time per step plus a small term per row, a + b * rows (params
a and b, as simgpu's), and computes nothing. It stands for a GPU, whose
decoding step is bound by reading the weights and costs nearly the same for
1 or 32 rows, so benchmarks of the runner's scheduling (static against
continuous batching, grouped admission) can be run on a CPU. Its tokens are
deterministic: each is a printable byte drawn from a hash of the sequence's
own tokens, so a sequence decodes the same text alone or beside others. It
is not the product's inference.
"""

import re
import time
from typing import Any

import torch

from .text import ByteDetokenizer, ByteTokenizer

DEFAULT_A = 0.010  # seconds a step, whatever its rows
DEFAULT_B = 0.0001  # seconds more a row

_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ns|us|µs|ms|s)?\s*$")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, None: 1e-3}
_MOD = 2_147_483_647  # a prime: the state is a polynomial hash of the tokens


def parse_duration(v: Any, name: str) -> float:
    """Seconds from "10ms", "100us", "1.5s" or a bare number of milliseconds."""
    m = _DURATION.match(str(v))
    if m is None or isinstance(v, bool):
        raise ValueError("sim-gpt param %s: %r is not a duration (e.g. 10ms, 100us)" % (name, v))
    return float(m.group(1)) * _UNIT[m.group(2)]


class SimGPTLM:
    """The CausalLM adapter itself (see generate.py). Its cache is a list
    with one [B] tensor: each row's hash of its tokens so far. Positions and
    padding width do not matter to it, so merging, selecting and trimming
    are exact."""

    pad_id = 0
    max_length = 8192

    def __init__(self, a: float = DEFAULT_A, b: float = DEFAULT_B) -> None:
        if a < 0 or b < 0:
            raise ValueError("sim-gpt params a and b must not be negative")
        self.a, self.b = a, b
        self.tok = ByteTokenizer()
        self.device = torch.device("cpu")
        self.eos_ids = frozenset([self.tok.eos_id])
        self.steps = 0  # forward passes, for tests

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "SimGPTLM":
        a = parse_duration(params["a"], "a") if "a" in params else DEFAULT_A
        b = parse_duration(params["b"], "b") if "b" in params else DEFAULT_B
        return cls(a, b)

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text)

    def detokenizer(self) -> ByteDetokenizer:
        return self.tok.detokenizer()

    def forward(
        self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache: list[torch.Tensor] | None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        rows, t = ids.shape
        state = cache[0].clone() if cache is not None else torch.zeros(rows, dtype=torch.long)
        live = mask[:, -t:]  # the new positions' mask: left padding adds nothing
        for j in range(t):
            mixed = (state * 31 + ids[:, j] + 1) % _MOD
            state = torch.where(live[:, j], mixed, state)
        self.steps += 1
        time.sleep(self.a + self.b * rows)
        nxt = 32 + (state * 2_654_435_761 % _MOD) % 95
        logits = torch.zeros((rows, self.tok.vocab_size))
        logits[torch.arange(rows), nxt] = 20.0
        return logits, [state]

    def select_cache(self, cache: list[torch.Tensor], idx: torch.Tensor) -> list[torch.Tensor]:
        return [cache[0].index_select(0, idx)]

    def merge_cache(
        self, a: list[torch.Tensor], a_width: int, b: list[torch.Tensor], b_width: int
    ) -> list[torch.Tensor]:
        return [torch.cat([a[0], b[0]])]

    def trim_cache(self, cache: list[torch.Tensor], start: int) -> list[torch.Tensor]:
        return cache
