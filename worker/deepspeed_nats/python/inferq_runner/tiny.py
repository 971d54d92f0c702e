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

# One layer's attention keys and values, [B, heads, S, head size] each.
LayerKV = tuple[torch.Tensor, torch.Tensor]

TINY_GPT_SEED = 1234
TINY_MLP_SEED = 4321


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
        b, t, d = x.shape
        h = self.n_head
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        q = q.view(b, t, h, d // h).transpose(1, 2)
        k = k.view(b, t, h, d // h).transpose(1, 2)
        v = v.view(b, t, h, d // h).transpose(1, 2)
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(d // h)
        # A finite minimum, not -inf: a fully masked (padding) row must not
        # turn into NaN; real rows still give masked keys exactly zero weight.
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        att = torch.matmul(torch.softmax(scores, dim=-1), v)
        x = x + self.proj(att.transpose(1, 2).reshape(b, t, d))
        x = x + self.ff(self.ln2(x))
        return x, (k, v)


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
