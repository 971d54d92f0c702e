"""Continuous (iteration-level) batching: one running decode loop per model.

Sequences join the running set between decoding steps and leave it the step
they finish, so the device never idles on a shrinking batch while work waits.

KV cache layout: one padded cache for the whole running set, left-aligned to
a common width. A joining group is prefilled on its own (left padding, as in
generate()), then both caches are padded on the left to the wider of the two
and concatenated along the batch; the attention mask marks padding, and each
row's positions count its real tokens only, so a row sees exactly the keys and
positions it would see alone. Rows that finish are dropped from the cache at
once (select_cache), and columns that are padding for every remaining row are
cut off (trim_cache), so the width follows the longest live sequence. Padding
costs memory proportional to the spread of lengths; a paged cache would avoid
that but needs kernels the runner does not have. An adapter whose cache
cannot be merged (merge_cache returns None) still runs, with new sequences
admitted only when the running set is empty.
"""

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from .generate import CANCELLED, EXPIRED, CausalLM, Request, _Seq
from .sampling import sample

DEFAULT_MAX_NUM_SEQS = 32
DEFAULT_MAX_STEP_TOKENS = 4096
# Grouped admission (see Engine): 1 admits at every step. 8 measured best
# on the 2-core VM (docs/benchmarks.md, 2026-12-01): +16-20% tokens/s for
# tiny-gpt and +6% for sim-gpt over 1, first tokens up to 7 steps later;
# 16 gained only a few percent more for twice that delay.
DEFAULT_JOIN_EVERY_STEPS = 8


def default_join_at_once_below(max_num_seqs: int) -> int:
    """Half of max_num_seqs, at least 1: below it waiting sequences join at
    once (see Engine)."""
    return max(1, max_num_seqs // 2)


class MergeableLM(CausalLM[Any], Protocol):
    def merge_cache(self, a: Any, a_width: int, b: Any, b_width: int) -> Any:
        """Pads both caches on the left to max(a_width, b_width) and stacks
        them along the batch; None when this cache type cannot."""
        ...

    def trim_cache(self, cache: Any, start: int) -> Any:
        """Drops the first start positions of every row; None when it cannot."""
        ...


@dataclass(slots=True)
class Finished:
    """A sequence that left the running set, with the key it was added with."""

    key: Any
    text: str
    tokens: list[int]
    reason: str


class _Live:
    __slots__ = ("key", "seq", "first_at", "added_step")

    def __init__(self, key: Any, seq: _Seq, added_step: int) -> None:
        self.key, self.seq, self.first_at, self.added_step = key, seq, 0.0, added_step


@dataclass(slots=True)
class StepStats:
    """What one step did: for metrics and benchmarks."""

    running: int = 0  # sequences decoded in this step
    joined: int = 0  # sequences prefilled and merged in this step
    tokens: int = 0  # tokens sampled in this step


class Engine:
    """Runs requests with iteration-level scheduling on one causal LM. Not
    thread-safe: one thread calls add() and step().

    Grouped admission: every join costs a prefill pass, which on a device
    whose step costs the same for 1 or 32 rows is as dear as a decoding step.
    So while sequences run, waiting ones join together: when the oldest has
    waited join_every_steps - 1 steps, or when at least a quarter of
    max_num_seqs can join at once. join_every_steps 1 admits at every step.

    While fewer than join_at_once_below sequences run (default half of
    max_num_seqs; 1 means only into an empty set), waiting ones join at
    once: a prefill then delays few running rows, and a mostly empty batch
    gains little from waiting for company, while under an arriving stream
    (an open loop) the running set is small most of the time and grouping
    would only add up to join_every_steps - 1 steps to each first token.
    A full set, as in a closed loop, still joins in groups."""

    def __init__(
        self,
        lm: CausalLM[Any],
        max_num_seqs: int = DEFAULT_MAX_NUM_SEQS,
        max_step_tokens: int = DEFAULT_MAX_STEP_TOKENS,
        on_first_token: Callable[[Any], None] | None = None,
        join_every_steps: int = DEFAULT_JOIN_EVERY_STEPS,
        join_at_once_below: int = 0,
    ) -> None:
        self.lm = lm
        self.max_num_seqs = max(1, max_num_seqs)
        self.max_step_tokens = max(1, max_step_tokens)
        self.join_every_steps = max(1, join_every_steps)
        self.join_group = max(1, self.max_num_seqs // 4)
        self.join_at_once_below = join_at_once_below or default_join_at_once_below(self.max_num_seqs)
        self.steps = 0  # step() calls so far: the clock of grouped admission
        self.on_first_token = on_first_token
        self.waiting: deque[_Live] = deque()
        self.rows: list[_Live] = []
        self.cache: Any = None
        self.mask: torch.Tensor | None = None  # [B, S] over the cache's positions
        self.next_pos: torch.Tensor | None = None  # [B]
        self.logits: torch.Tensor | None = None  # [B, V]: each row's next-token logits
        self.finished_now: list[Finished] = []
        self.can_merge = hasattr(lm, "merge_cache") and hasattr(lm, "trim_cache")

    def add(self, key: Any, req: Request) -> None:
        """Queues a request; it joins the running set at a coming step."""
        self.waiting.append(_Live(key, _Seq(req, self.lm.detokenizer(), self.lm.device), self.steps))

    @property
    def running(self) -> int:
        return len(self.rows)

    @property
    def free_slots(self) -> int:
        return max(0, self.max_num_seqs - len(self.rows) - len(self.waiting))

    def idle(self) -> bool:
        return not self.rows and not self.waiting

    def step(self) -> tuple[list[Finished], StepStats]:
        """Admits waiting sequences, samples one token for every running one
        and runs the model once; returns the sequences that ended."""
        st = StepStats()
        self.finished_now = []
        with torch.no_grad():
            st.joined = self._admit()
            st.running = len(self.rows)
            st.tokens = self._sample()
            self._advance()
        self.steps += 1
        return self.finished_now, st

    def abort(self) -> list[Any]:
        """Forgets every sequence (after a failed step); returns their keys."""
        keys = [r.key for r in self.rows] + [w.key for w in self.waiting]
        self.rows, self.waiting = [], deque()
        self.cache = self.mask = self.next_pos = self.logits = None
        return keys

    def _end(self, live: _Live) -> None:
        s = live.seq
        assert s.reason is not None
        self.finished_now.append(Finished(live.key, s.stream.text, s.tokens, s.reason))

    def _drop_waiting(self) -> None:
        """Ends waiting sequences that need no decoding (max_tokens 0) or
        were cancelled: they must not hold a slot until the next join."""
        if not any(w.seq.req.params.max_tokens == 0 or w.seq.req.is_cancelled() for w in self.waiting):
            return
        keep: deque[_Live] = deque()
        for w in self.waiting:
            s = w.seq
            if s.req.params.max_tokens == 0 or s.req.is_cancelled():
                s.finish("length" if s.req.params.max_tokens == 0 else CANCELLED, -1)
                self._end(w)
            else:
                keep.append(w)
        self.waiting = keep

    def _join_due(self) -> bool:
        """Whether waiting sequences join the running ones at this step."""
        if len(self.rows) < self.join_at_once_below:
            return True
        if self.steps - self.waiting[0].added_step >= self.join_every_steps - 1:
            return True
        return min(len(self.waiting), self.max_num_seqs - len(self.rows)) >= self.join_group

    def _admit(self) -> int:
        self._drop_waiting()
        if not self.waiting:
            return 0
        # Caches merge when they are per-layer lists or tuples of tensors
        # (tiny-gpt, legacy Hugging Face caches); others join an empty set.
        if self.rows and not (self.can_merge and isinstance(self.cache, (list, tuple))):
            return 0
        if not self._join_due():
            return 0
        group: list[_Live] = []
        budget = self.max_step_tokens - len(self.rows)
        while self.waiting and len(self.rows) + len(group) < self.max_num_seqs:
            w = self.waiting[0]
            s = w.seq
            n = len(s.req.prompt_ids)
            if (group or self.rows) and n > budget:
                break  # a later step has room for it; one alone always fits
            self.waiting.popleft()
            group.append(w)
            budget -= n
        if not group:
            return 0
        self._prefill(group)
        return len(group)

    def _prefill(self, group: list[_Live]) -> None:
        lm, device = self.lm, self.lm.device
        width = max(len(g.seq.req.prompt_ids) for g in group)
        ids = torch.full((len(group), width), lm.pad_id, dtype=torch.long)
        mask = torch.zeros((len(group), width), dtype=torch.bool)
        for i, g in enumerate(group):
            p = g.seq.req.prompt_ids
            ids[i, width - len(p) :] = torch.tensor(p, dtype=torch.long)
            mask[i, width - len(p) :] = True
        ids, mask = ids.to(device), mask.to(device)
        pos = (torch.cumsum(mask.long(), dim=1) - 1).clamp(min=0)
        logits, cache = lm.forward(ids, mask, pos, None)
        next_pos = pos[:, -1] + 1
        if not self.rows:
            self.rows, self.cache, self.mask, self.next_pos, self.logits = group, cache, mask, next_pos, logits
            return
        assert self.mask is not None and self.next_pos is not None and self.logits is not None
        old_w = self.mask.shape[1]
        merged = self.lm.merge_cache(self.cache, old_w, cache, width)  # type: ignore[attr-defined]
        if merged is None:
            raise RuntimeError("the model's cache cannot be merged")
        w = max(old_w, width)
        self.cache = merged
        self.mask = torch.cat([_pad_left(self.mask, w), _pad_left(mask, w)], dim=0)
        self.next_pos = torch.cat([self.next_pos, next_pos])
        self.logits = torch.cat([self.logits, logits], dim=0)
        self.rows = self.rows + group

    def _sample(self) -> int:
        if not self.rows:
            return 0
        assert self.logits is not None
        now = time.time_ns()
        eos = self.lm.eos_ids
        self.nxt: list[int] = []
        n = 0
        for i, r in enumerate(self.rows):
            s = r.seq
            tok = self.lm.pad_id
            # Cancellation and deadlines act per sequence, once per step.
            if s.req.is_cancelled():
                s.finish(CANCELLED, -1)
            elif s.req.deadline_ns and now > s.req.deadline_ns:
                s.finish(EXPIRED, -1)
            else:
                tok = sample(self.logits[i], s.req.params, s.gen)
                s.push(tok, eos)
                n += 1
                if not r.first_at:
                    r.first_at = time.monotonic()
                    if self.on_first_token is not None:
                        self.on_first_token(r.key)
            self.nxt.append(tok)
            if s.reason is not None:
                self._end(r)
        return n

    def _advance(self) -> None:
        if not self.rows:
            return
        assert self.mask is not None and self.next_pos is not None
        device = self.lm.device
        keep = [i for i, r in enumerate(self.rows) if r.seq.reason is None]
        nxt = torch.tensor(self.nxt, dtype=torch.long, device=device)
        if len(keep) < len(self.rows):
            if not keep:
                self.rows = []
                self.cache = self.mask = self.next_pos = self.logits = None
                return
            idx = torch.tensor(keep, dtype=torch.long, device=device)
            cache = self.lm.select_cache(self.cache, idx)
            if cache is None:
                raise RuntimeError("the model's cache cannot drop finished rows")
            self.cache = cache
            self.rows = [self.rows[i] for i in keep]
            nxt, self.mask, self.next_pos = nxt[idx], self.mask[idx], self.next_pos[idx]
            # Columns that are padding for every row left are dead weight.
            live_cols = self.mask.any(dim=0).nonzero()
            start = int(live_cols[0]) if live_cols.numel() else 0
            if start > 0 and self.can_merge:
                trimmed = self.lm.trim_cache(self.cache, start)  # type: ignore[attr-defined]
                if trimmed is not None:
                    self.cache, self.mask = trimmed, self.mask[:, start:]
        self.mask = torch.cat([self.mask, torch.ones((self.mask.shape[0], 1), dtype=torch.bool, device=device)], dim=1)
        self.logits, self.cache = self.lm.forward(nxt.unsqueeze(1), self.mask, self.next_pos.unsqueeze(1), self.cache)
        self.next_pos = self.next_pos + 1


def _pad_left(t: torch.Tensor, width: int) -> torch.Tensor:
    """Pads dimension 1 of a [B, S] mask on the left with False to width."""
    extra = width - t.shape[1]
    if extra <= 0:
        return t
    return torch.cat([torch.zeros((t.shape[0], extra), dtype=t.dtype, device=t.device), t], dim=1)


def pad_kv_left(t: torch.Tensor, width: int) -> torch.Tensor:
    """Pads the sequence dimension (2) of a [B, heads, S, d] key or value
    tensor on the left with zeros to width."""
    extra = width - t.shape[2]
    if extra <= 0:
        return t
    z = torch.zeros((t.shape[0], t.shape[1], extra, t.shape[3]), dtype=t.dtype, device=t.device)
    return torch.cat([z, t], dim=2)
