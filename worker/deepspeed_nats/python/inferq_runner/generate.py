"""Batched generation: left padding with an attention mask, a KV cache,
per-sequence sampling, stop conditions, streaming and cancellation."""

import time

import torch

from .sampling import make_generator, sample
from .text import TextStream

CANCELLED = "cancelled"
EXPIRED = "expired"


class Request:
    """One sequence to generate. on_chunk(text, token_id, final) streams it."""

    def __init__(self, prompt_ids, params, on_chunk=None, is_cancelled=None, deadline_ns=0):
        self.prompt_ids = list(prompt_ids)
        self.params = params
        self.on_chunk = on_chunk or (lambda text, token_id, final: None)
        self.is_cancelled = is_cancelled or (lambda: False)
        self.deadline_ns = deadline_ns


class _Seq:
    def __init__(self, req, lm, device):
        self.req = req
        self.detok = lm.detokenizer()
        self.stream = TextStream(req.params.stop)
        self.gen = None
        if req.params.temperature > 0:
            self.gen = make_generator(req.params.seed, device)
        self.tokens = []
        self.reason = None

    def finish(self, reason, token_id):
        self.reason = reason
        if reason in (CANCELLED, EXPIRED):
            return  # the job's result says why; no final chunk
        self.stream.add(self.detok.flush())
        self.req.on_chunk(self.stream.ready(final=True), token_id, True)

    def push(self, token_id, eos_ids):
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


class Outcome:
    __slots__ = ("text", "tokens", "reason")

    def __init__(self, text, tokens, reason):
        self.text, self.tokens, self.reason = text, tokens, reason


def generate(lm, requests):
    """Runs requests as one batch on a causal LM adapter (see models.py) and
    returns an Outcome per request. reason is eos, stop, length, cancelled or
    expired."""
    device = lm.device
    seqs = [_Seq(r, lm, device) for r in requests]
    eos = lm.eos_ids
    for s in seqs:
        if s.req.params.max_tokens == 0:
            s.finish("length", -1)
    live = [s for s in seqs if s.reason is None]
    if live:
        with torch.no_grad():
            _decode(lm, live, eos, device)
    return [Outcome(s.stream.text, s.tokens, s.reason) for s in seqs]


def _decode(lm, seqs, eos, device):
    width = max(len(s.req.prompt_ids) for s in seqs)
    ids = torch.full((len(seqs), width), lm.pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.bool)
    for i, s in enumerate(seqs):
        p = s.req.prompt_ids
        ids[i, width - len(p) :] = torch.tensor(p, dtype=torch.long)
        mask[i, width - len(p) :] = True
    ids, mask = ids.to(device), mask.to(device)
    # Positions count real tokens only, so a padded row sees the same
    # positions as it would alone.
    pos = (torch.cumsum(mask.long(), dim=1) - 1).clamp(min=0)
    logits, cache = lm.forward(ids, mask, pos, None)
    next_pos = pos[:, -1] + 1
    rows = list(seqs)  # row i of the batch tensors; None once finished and not compacted
    while True:
        now = time.time_ns()
        nxt = []
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
