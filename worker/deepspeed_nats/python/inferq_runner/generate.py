"""Batched generation: left padding with an attention mask, a KV cache,
per-sequence sampling, stop conditions, streaming and cancellation."""

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import torch

from .sampling import GenParams, make_generator, sample
from .text import Detokenizer, TextStream

CANCELLED = "cancelled"
EXPIRED = "expired"

# on_chunk(text, token_id, final): streams a sequence's text as it is decoded.
OnChunk = Callable[[str, int, bool], None]

# The KV cache of one causal LM: its type is the model's own business.
Cache = TypeVar("Cache")


class CausalLM(Protocol[Cache]):
    """What generate() and GenerateModel need of a model; models.py adapts
    tiny-gpt and transformers models to it."""

    @property
    def device(self) -> torch.device:
        ...

    @property
    def eos_ids(self) -> frozenset[int]:
        ...

    @property
    def pad_id(self) -> int:
        ...

    @property
    def max_length(self) -> int | None:
        ...

    def encode(self, text: str) -> list[int]:
        ...

    def detokenizer(self) -> Detokenizer:
        ...

    def forward(
        self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache: Cache | None
    ) -> tuple[torch.Tensor, Cache]:
        """Returns the last position's logits [B, V] and the grown cache."""
        ...

    def select_cache(self, cache: Cache, idx: torch.Tensor) -> Cache | None:
        """Keeps the cache rows idx, or returns None when it cannot."""
        ...


def _no_chunk(text: str, token_id: int, final: bool) -> None:
    pass


def _never_cancelled() -> bool:
    return False


class Request:
    """One sequence to generate. on_chunk(text, token_id, final) streams it."""

    def __init__(
        self,
        prompt_ids: Iterable[int],
        params: GenParams,
        on_chunk: OnChunk | None = None,
        is_cancelled: Callable[[], bool] | None = None,
        deadline_ns: int = 0,
    ) -> None:
        self.prompt_ids = list(prompt_ids)
        self.params = params
        self.on_chunk: OnChunk = on_chunk or _no_chunk
        self.is_cancelled: Callable[[], bool] = is_cancelled or _never_cancelled
        self.deadline_ns = deadline_ns


class _Seq:
    def __init__(self, req: Request, detok: Detokenizer, device: torch.device) -> None:
        self.req = req
        self.detok = detok
        self.stream = TextStream(req.params.stop)
        self.gen: torch.Generator | None = None
        if req.params.temperature > 0:
            self.gen = make_generator(req.params.seed, device)
        self.tokens: list[int] = []
        self.reason: str | None = None

    def finish(self, reason: str, token_id: int) -> None:
        self.reason = reason
        if reason in (CANCELLED, EXPIRED):
            return  # the job's result says why; no final chunk
        self.stream.add(self.detok.flush())
        self.req.on_chunk(self.stream.ready(final=True), token_id, True)

    def push(self, token_id: int, eos_ids: frozenset[int]) -> None:
        if token_id in eos_ids:
            self.finish("eos", token_id)
            return
        self.tokens.append(token_id)
        if self.stream.add(self.detok.push(token_id)):
            self.finish("stop", token_id)
        elif len(self.tokens) >= self.req.params.max_tokens:
            self.finish("length", token_id)
        else:
            text = self.stream.ready()
            if text:
                self.req.on_chunk(text, token_id, False)


@dataclass(slots=True)
class Outcome:
    """A finished sequence: its text, its token ids and why it ended."""

    text: str
    tokens: list[int]
    reason: str


def generate(lm: CausalLM[Cache], requests: Sequence[Request]) -> list[Outcome]:
    """Runs requests as one batch on a causal LM adapter (see models.py) and
    returns an Outcome per request. reason is eos, stop, length, cancelled or
    expired."""
    device = lm.device
    seqs = [_Seq(r, lm.detokenizer(), device) for r in requests]
    eos = lm.eos_ids
    for s in seqs:
        if s.req.params.max_tokens == 0:
            s.finish("length", -1)
    live = [s for s in seqs if s.reason is None]
    if live:
        with torch.no_grad():
            _decode(lm, live, eos, device)
    outs = []
    for s in seqs:
        assert s.reason is not None, "decoding ends only when every sequence has finished"
        outs.append(Outcome(s.stream.text, s.tokens, s.reason))
    return outs


def _decode(lm: CausalLM[Cache], seqs: list[_Seq], eos: frozenset[int], device: torch.device) -> None:
    width = max(len(s.req.prompt_ids) for s in seqs)
    ids = torch.full((len(seqs), width), lm.pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.bool)
    for i, seq in enumerate(seqs):
        p = seq.req.prompt_ids
        ids[i, width - len(p) :] = torch.tensor(p, dtype=torch.long)
        mask[i, width - len(p) :] = True
    ids, mask = ids.to(device), mask.to(device)
    # Positions count real tokens only, so a padded row sees the same
    # positions as it would alone.
    pos = (torch.cumsum(mask.long(), dim=1) - 1).clamp(min=0)
    logits, cache = lm.forward(ids, mask, pos, None)
    next_pos = pos[:, -1] + 1
    rows: list[_Seq | None] = list(seqs)  # row i of the batch tensors; None once finished and not compacted
    while True:
        now = time.time_ns()
        nxt: list[int] = []
        for i, s in enumerate(rows):
            if s is None or s.reason is not None:
                nxt.append(lm.pad_id)
                continue
            tok = lm.pad_id
            # Cancellation is checked once per decode step.
            if s.req.is_cancelled():
                s.finish(CANCELLED, -1)
            elif s.req.deadline_ns and now > s.req.deadline_ns:
                s.finish(EXPIRED, -1)
            else:
                tok = sample(logits[i], s.req.params, s.gen)
                s.push(tok, eos)
            nxt.append(tok if s.reason is None else lm.pad_id)
        keep = [i for i, s in enumerate(rows) if s is not None and s.reason is None]
        if not keep:
            return
        nxt_t = torch.tensor(nxt, dtype=torch.long, device=device)
        if len(keep) < len(rows):
            idx = torch.tensor(keep, dtype=torch.long, device=device)
            compacted = lm.select_cache(cache, idx)
            if compacted is not None:
                # Finished rows leave the batch: later steps cost only the live ones.
                cache = compacted
                rows = [rows[i] for i in keep]
                nxt_t, mask, next_pos = nxt_t[idx], mask[idx], next_pos[idx]
            else:
                rows = [s if s is not None and s.reason is None else None for s in rows]
        mask = torch.cat([mask, torch.ones((mask.shape[0], 1), dtype=torch.bool, device=device)], dim=1)
        logits, cache = lm.forward(nxt_t.unsqueeze(1), mask, next_pos.unsqueeze(1), cache)
        next_pos = next_pos + 1
