"""Generation parameters and next-token sampling."""

import json
import math
import random
from collections.abc import Iterable

import torch

DEFAULT_MAX_TOKENS = 16


class ParamError(ValueError):
    """A job's parameters are invalid; retrying cannot help."""


class GenParams:
    """A job's generation parameters, with the defaults of a job that sets none."""

    __slots__ = ("max_tokens", "temperature", "top_p", "top_k", "seed", "stop")

    def __init__(
        self,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = 0,
        seed: int | None = None,
        stop: Iterable[str] = (),
    ) -> None:
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.top_k = top_k
        self.seed = seed
        self.stop = tuple(stop)


def _number(p: dict[str, object], key: str) -> int | float | None:
    v = p.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ParamError("parameter %s must be a number, got %r" % (key, v))
    # Python's json accepts NaN and Infinity, which no parameter can take.
    if not math.isfinite(v):
        raise ParamError("parameter %s must be finite, got %r" % (key, v))
    return v


def _check_range(key: str, v: float, lo: float | None, hi: float | None) -> None:
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ParamError("parameter %s=%r is out of range [%s, %s]" % (key, v, lo, hi))


def _int_param(p: dict[str, object], key: str, lo: int | None = None) -> int | None:
    v = _number(p, key)
    if v is None:
        return None
    if float(v) != int(v):
        raise ParamError("parameter %s must be an integer, got %r" % (key, v))
    i = int(v)
    _check_range(key, i, lo, None)
    return i


def _float_param(p: dict[str, object], key: str, lo: float | None = None, hi: float | None = None) -> float | None:
    v = _number(p, key)
    if v is None:
        return None
    f = float(v)
    _check_range(key, f, lo, hi)
    return f


def parse_params(raw: str | bytes, max_limit: int | None = None) -> GenParams:
    """Parses a job's parameters_json. Unknown keys (priority, stream...) are
    the broker's and are ignored."""
    p: dict[str, object] = {}
    if raw:
        try:
            doc = json.loads(raw)
        except ValueError as e:
            raise ParamError("parameters are not valid JSON: %s" % e)
        if not isinstance(doc, dict):
            raise ParamError("parameters must be a JSON object")
        p = doc
    g = GenParams()
    mt = _int_param(p, "max_tokens", 0)
    if mt is None:
        mt = _int_param(p, "max_new_tokens", 0)
    if mt is not None:
        g.max_tokens = mt
    if max_limit is not None and g.max_tokens > max_limit:
        raise ParamError("max_tokens=%d exceeds this model's limit of %d" % (g.max_tokens, max_limit))
    t = _float_param(p, "temperature", 0.0)
    if t is not None:
        g.temperature = t
    tp = _float_param(p, "top_p", 0.0, 1.0)
    if tp is not None:
        if tp == 0:
            raise ParamError("top_p must be in (0, 1]")
        g.top_p = tp
    tk = _int_param(p, "top_k", 0)
    if tk is not None:
        g.top_k = tk
    s = _int_param(p, "seed")
    if s is not None:
        g.seed = s
    stop = p.get("stop")
    if stop is not None:
        if isinstance(stop, str):
            stop = [stop]
        if not isinstance(stop, list) or not all(isinstance(x, str) for x in stop):
            raise ParamError("parameter stop must be a string or a list of strings")
        g.stop = tuple(x for x in stop if x)
    return g


def make_generator(seed: int | None, device: torch.device | str) -> torch.Generator:
    """A per-sequence generator, so a seeded job samples the same tokens
    whatever its batch neighbours are."""
    if seed is None:
        seed = random.SystemRandom().getrandbits(63)
    g = torch.Generator(device=device)
    g.manual_seed(seed & 0xFFFFFFFFFFFFFFFF)
    return g


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Masks (to -inf) the tokens outside the top_k and the top_p nucleus of a
    1-D logits vector."""
    n = logits.shape[-1]
    if 0 < top_k < n:
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if 0 < top_p < 1:
        sorted_logits, order = torch.sort(logits, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        # Drop a token once the tokens before it already cover top_p; the most
        # likely token always stays.
        drop_sorted = (torch.cumsum(probs, dim=-1) - probs) >= top_p
        drop_sorted[0] = False
        drop = torch.zeros_like(drop_sorted).scatter(0, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample(logits: torch.Tensor, params: GenParams, generator: torch.Generator | None) -> int:
    """Picks the next token from a 1-D logits vector."""
    if params.temperature <= 0:
        return int(torch.argmax(logits))
    logits = filter_logits(logits.float() / params.temperature, params.top_k, params.top_p)
    probs = torch.softmax(logits, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator))
