"""Built-in TEST models of the runner (like Triton's QA models): tiny-gpt, a
small byte-level GPT, and tiny-mlp, a small tensor model. Their weights are
random but seeded, so every machine gets the same model and the same greedy
text. They exercise the runner's machinery; they are not the product's
inference."""

import math
from typing import ClassVar

import torch
from torch import nn

from .text import ByteTokenizer

TINY_GPT_SEED = 1234
TINY_MLP_SEED = 4321


# A fresh cache holds at least this many positions, so short prompts do not
# reallocate in their first decoding steps.
_MIN_CAPACITY = 64


def _capacity(need: int) -> int:
    """The next power of two above need: growth by doubling, so appending a
    position costs amortised O(1) copies instead of a whole new cache."""
    return max(_MIN_CAPACITY, 1 << need.bit_length())


class LayerKV:
    """One layer's attention keys and values: buffers [B, heads, capacity,
    head size] whose first n positions are live. Decoding writes each new
    position in place; the buffers are reallocated (doubling) only when full.
    Concatenating a fresh cache every step instead cost tiny-gpt more than
    half of a wide decoding step (a profile of issue 20)."""

    __slots__ = ("k", "v", "n")

    def __init__(self, k: torch.Tensor, v: torch.Tensor, n: int) -> None:
        self.k, self.v, self.n = k, v, n

    @classmethod
    def empty(cls, like: torch.Tensor, capacity: int, rows: int = 0) -> "LayerKV":
        """Buffers shaped like like ([B, heads, S, d]; rows instead of B when
        given) with room for capacity positions. They are not zeroed: only
        the live positions are ever read."""
        b, h, _, d = like.shape
        k = torch.empty((rows or b, h, capacity, d), dtype=like.dtype, device=like.device)
        return cls(k, torch.empty_like(k), 0)

    @property
    def capacity(self) -> int:
        return int(self.k.shape[2])

    def keys(self) -> torch.Tensor:
        return self.k[:, :, : self.n]

    def values(self) -> torch.Tensor:
        return self.v[:, :, : self.n]

    def append(self, k: torch.Tensor, v: torch.Tensor) -> None:
        """Writes t new positions ([B, heads, t, d]) after the live ones."""
        t = k.shape[2]
        if self.n + t > self.capacity:
            grown = LayerKV.empty(self.k, _capacity(self.n + t))
            grown.k[:, :, : self.n] = self.keys()
            grown.v[:, :, : self.n] = self.values()
            self.k, self.v = grown.k, grown.v
        self.k[:, :, self.n : self.n + t] = k
        self.v[:, :, self.n : self.n + t] = v
        self.n += t

    def select(self, idx: torch.Tensor) -> "LayerKV":
        """The rows idx (a copy, with the same spare capacity)."""
        return LayerKV(self.k.index_select(0, idx), self.v.index_select(0, idx), self.n)

    def trim(self, start: int) -> "LayerKV":
        """Drops the first start positions of every row: a view, no copy; the
        spare capacity after the live positions stays usable."""
        return LayerKV(self.k[:, :, start:], self.v[:, :, start:], self.n - start)

    @staticmethod
    def merge(a: "LayerKV", b: "LayerKV") -> "LayerKV":
        """Stacks a's rows over b's, each right-aligned (left-padded with
        zeros) to the wider of the two."""
        w = max(a.n, b.n)
        rows = a.k.shape[0]
        out = LayerKV.empty(a.k, _capacity(w), rows + b.k.shape[0])
        out.n = w
        for part, src in ((slice(0, rows), a), (slice(rows, None), b)):
            pad = w - src.n
            # Padding is masked out, but zero weight times garbage (NaN) is
            # still NaN: padding columns hold zeros.
            out.k[part, :, :pad] = 0
            out.v[part, :, :pad] = 0
            out.k[part, :, pad:w] = src.keys()
            out.v[part, :, pad:w] = src.values()
        return out


class _Block(nn.Module):
    def __init__(self, d_model: int, n_head: int, d_ff: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.ln1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.ln2 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model))

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, past: LayerKV | None) -> tuple[torch.Tensor, LayerKV]:
        """x: [B, T, d]; allowed: [B, 1, T, S] over the S = past + T positions.
        Appends the new keys and values to past in place (or to a fresh cache)."""
        b, t, d = x.shape
        h = self.n_head
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        q = q.view(b, t, h, d // h).transpose(1, 2)
        k = k.view(b, t, h, d // h).transpose(1, 2)
        v = v.view(b, t, h, d // h).transpose(1, 2)
        cache = past if past is not None else LayerKV.empty(k, _capacity(t))
        cache.append(k, v)
        keys, values = cache.keys(), cache.values()
        scale = math.sqrt(d // h)
        # A finite minimum, not -inf: a fully masked (padding) row must not
        # turn into NaN; real rows still give masked keys exactly zero weight.
        low = torch.finfo(x.dtype).min
        if t == 1:
            # One query per row (decoding): an elementwise product and a sum
            # instead of batched matmuls, which CPU builds of torch run as a
            # loop over B x heads tiny matrices; 10-30% faster a step on the
            # 2-core VM (32 rows at width 300 with OpenBLAS: 12.0 -> 8.1 ms),
            # and the same greedy tokens.
            scores = (q * keys).sum(-1, keepdim=True).transpose(-1, -2) / scale  # [B, h, 1, S]
            scores = scores.masked_fill(~allowed, low)
            att = (torch.softmax(scores, dim=-1).transpose(-1, -2) * values).sum(2, keepdim=True)
        else:
            scores = torch.matmul(q, keys.transpose(-1, -2)) / scale
            scores = scores.masked_fill(~allowed, low)
            att = torch.matmul(torch.softmax(scores, dim=-1), values)
        x = x + self.proj(att.transpose(1, 2).reshape(b, t, d))
        x = x + self.ff(self.ln2(x))
        return x, cache


class TinyGPT(nn.Module):
    """A causal transformer over bytes with sinusoidal positions (so any
    length works) and a KV cache."""

    def __init__(self, vocab: int = 257, d_model: int = 96, n_layer: int = 3, n_head: int = 4, d_ff: int = 256) -> None:
        super().__init__()
        self.d_model = d_model
        self.emb = nn.Embedding(vocab, d_model)
        self.blocks = nn.ModuleList(_Block(d_model, n_head, d_ff) for _ in range(n_layer))
        self.ln = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab, bias=False)
        # Fixed output bias so the random model favours readable ASCII and
        # rarely ends early; high bytes (multi-byte UTF-8) still occur.
        bias = torch.zeros(vocab)
        bias[32:127] = 2.5
        bias[256] = -3.0
        self.register_buffer("out_bias", bias)

    def _positions(self, pos: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        half = self.d_model // 2
        freq = torch.exp(torch.arange(half, device=pos.device, dtype=torch.float32) * (-math.log(10000.0) / half))
        ang = pos.to(torch.float32).unsqueeze(-1) * freq
        return torch.cat([torch.sin(ang), torch.cos(ang)], dim=-1).to(dtype)

    def forward(
        self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, past: list[LayerKV] | None = None
    ) -> tuple[torch.Tensor, list[LayerKV]]:
        """ids, pos: [B, T]; mask: [B, S] bool over all S = past + T positions
        (False = left padding). Returns logits [B, T, V] and the new cache."""
        t = ids.shape[1]
        s = mask.shape[1]
        x = self.emb(ids)
        x = x + self._positions(pos, x.dtype)
        # Query i (absolute index s - t + i) sees keys j <= it that are not padding.
        qi = torch.arange(s - t, s, device=ids.device).unsqueeze(1)
        kj = torch.arange(s, device=ids.device).unsqueeze(0)
        allowed = (kj <= qi).unsqueeze(0).unsqueeze(0) & mask[:, None, None, :]
        new: list[LayerKV] = []
        for i, blk in enumerate(self.blocks):
            x, kv = blk(x, allowed, None if past is None else past[i])
            new.append(kv)
        logits = self.head(self.ln(x)) + self.out_bias.to(x.dtype)
        return logits, new


def build_tiny_gpt() -> tuple[TinyGPT, ByteTokenizer]:
    torch.manual_seed(TINY_GPT_SEED)
    model = TinyGPT()
    with torch.no_grad():
        # Larger embeddings than the default make the logits less flat, so
        # greedy decoding has clear winners (no near ties between machines).
        model.emb.weight.normal_(0.0, 1.0)
        model.head.weight.normal_(0.0, 0.35)
    return model.eval(), ByteTokenizer()


class TinyMLP(nn.Module):
    """INPUT0 FP32 [n, 16] -> OUTPUT0 FP32 [n, 4]."""

    inputs: ClassVar[dict[str, int]] = {"INPUT0": 16}

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = self.net(x)
        return y


def build_tiny_mlp() -> TinyMLP:
    torch.manual_seed(TINY_MLP_SEED)
    return TinyMLP().eval()
