"""Model loading (built-in test models, local Hugging Face directories;
optionally through DeepSpeed) and batch execution."""

import logging
import os
from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import nn

from . import inferq_pb2 as pb
from .continuous import DEFAULT_JOIN_EVERY_STEPS, DEFAULT_MAX_STEP_TOKENS, pad_kv_left
from .generate import CANCELLED, EXPIRED, CausalLM, OnChunk, Request, generate
from .sampling import GenParams, ParamError, parse_params
from .sim import SimGPTLM
from .tensors import TensorError, bytes_tensor, decode_bytes, from_torch, to_torch
from .text import ByteDetokenizer, ByteTokenizer, HFDetokenizer
from .tiny import LayerKV, build_tiny_gpt, build_tiny_mlp

log = logging.getLogger("inferq_runner")

DEFAULT_CAPACITY = 32
_DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


# emit(chunk) streams a token chunk to the agent; cancelled(job_id) says
# whether the agent cancelled that job of the running batch.
Emit = Callable[[pb.TokenChunk], None]
Cancelled = Callable[[str], bool]

# A tensor model's forward pass: named input batches to named output batches.
TensorFn = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]


class InvalidBatch(ValueError):
    """The batch itself is malformed; retrying cannot help."""


def resolve_device(name: str | None) -> torch.device:
    name = (name or "auto").strip()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device %s requested but CUDA is not available to this torch" % name)
    return dev


def resolve_dtype(name: str | None, device: torch.device) -> torch.dtype:
    name = (name or "fp32").lower()
    if name not in _DTYPES:
        raise ValueError("dtype %r: want fp32, fp16 or bf16" % name)
    if device.type == "cpu" and name != "fp32":
        # Half-precision kernels on CPU are incomplete in older torch.
        log.warning("dtype %s is not supported on CPU here; using fp32", name)
        return torch.float32
    return _DTYPES[name]


def maybe_deepspeed(
    module: nn.Module, enabled: bool, tp_size: int, dtype: torch.dtype, kernel_inject: bool
) -> nn.Module:
    """Wraps module with deepspeed.init_inference when asked and importable."""
    if not enabled:
        log.info("engine: plain PyTorch %s", torch.__version__)
        return module
    try:
        import deepspeed  # noqa: PLC0415 - optional dependency
    except ImportError as e:
        log.warning("engine: --deepspeed given but deepspeed is not importable (%s); using plain PyTorch", e)
        return module
    # deepspeed has no type information; its InferenceEngine is a Module.
    engine: nn.Module = deepspeed.init_inference(
        module, tensor_parallel={"tp_size": tp_size}, dtype=dtype, replace_with_kernel_inject=kernel_inject
    )
    log.info(
        "engine: DeepSpeed %s inference, tp_size=%d, kernel_inject=%s", deepspeed.__version__, tp_size, kernel_inject
    )
    return engine


class TinyGPTLM:
    """Adapter of tiny-gpt for generate()."""

    pad_id = 0
    max_length = 8192

    def __init__(self, net: nn.Module, tokenizer: ByteTokenizer, device: torch.device) -> None:
        self.net, self.tok, self.device = net, tokenizer, device
        self.eos_ids = frozenset([tokenizer.eos_id])

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text)

    def detokenizer(self) -> ByteDetokenizer:
        return self.tok.detokenizer()

    def forward(
        self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache: list[LayerKV] | None
    ) -> tuple[torch.Tensor, list[LayerKV]]:
        out: tuple[torch.Tensor, list[LayerKV]] = self.net(ids, mask, pos, cache)
        logits, new_cache = out
        return logits[:, -1, :].float(), new_cache

    def select_cache(self, cache: list[LayerKV], idx: torch.Tensor) -> list[LayerKV] | None:
        return [kv.select(idx) for kv in cache]

    def merge_cache(self, a: list[LayerKV], a_width: int, b: list[LayerKV], b_width: int) -> list[LayerKV]:
        return [LayerKV.merge(x, y) for x, y in zip(a, b)]

    def trim_cache(self, cache: list[LayerKV], start: int) -> list[LayerKV]:
        return [kv.trim(start) for kv in cache]


class HFLM:
    """Adapter of a transformers causal LM for generate(). transformers is an
    optional dependency without type information: its model, tokenizer, config
    and cache are Any here."""

    def __init__(self, net: Any, tokenizer: Any, config: Any, device: torch.device) -> None:
        self.net, self.tok, self.device = net, tokenizer, device
        eos: set[int] = set()
        for v in (tokenizer.eos_token_id, getattr(getattr(net, "generation_config", None), "eos_token_id", None)):
            if isinstance(v, int):
                eos.add(v)
            elif isinstance(v, (list, tuple)):
                eos.update(v)
        self.eos_ids = frozenset(eos)
        self.pad_id: int = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (min(eos) if eos else 0)
        self.max_length: int | None = getattr(config, "max_position_embeddings", None)

    def encode(self, text: str) -> list[int]:
        ids: list[int] = self.tok(text)["input_ids"]
        if not ids:
            start = self.tok.bos_token_id if self.tok.bos_token_id is not None else self.pad_id
            ids = [start]
        return ids

    def detokenizer(self) -> HFDetokenizer:
        return HFDetokenizer(self.tok)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache: Any) -> tuple[torch.Tensor, Any]:
        out = self.net(
            input_ids=ids, attention_mask=mask.long(), position_ids=pos, past_key_values=cache, use_cache=True
        )
        logits: torch.Tensor = out.logits[:, -1, :].float()
        return logits, out.past_key_values

    def select_cache(self, cache: Any, idx: torch.Tensor) -> Any:
        if isinstance(cache, (tuple, list)):
            return tuple(tuple(t.index_select(0, idx) for t in layer) for layer in cache)
        if hasattr(cache, "batch_select_indices"):
            cache.batch_select_indices(idx)
            return cache
        return None  # unknown cache type: finished rows stay in the batch

    def merge_cache(self, a: Any, a_width: int, b: Any, b_width: int) -> Any:
        # Legacy tuple caches only; other cache classes run with joins only
        # into an empty running set (see continuous.py).
        if not isinstance(a, (tuple, list)) or not isinstance(b, (tuple, list)):
            return None
        w = max(a_width, b_width)
        return tuple(
            tuple(torch.cat([pad_kv_left(ta, w), pad_kv_left(tb, w)]) for ta, tb in zip(la, lb)) for la, lb in zip(a, b)
        )

    def trim_cache(self, cache: Any, start: int) -> Any:
        if not isinstance(cache, (tuple, list)):
            return None
        return tuple(tuple(t[:, :, start:] for t in layer) for layer in cache)


def job_error(job_id: str, code: str, message: str, retryable: bool = False) -> pb.JobResult:
    return pb.JobResult(job_id=job_id, error=pb.Error(code=code, message=message, retryable=retryable))


def wanted(job: pb.BatchJob, name: str) -> bool:
    return not job.outputs or name in job.outputs


def read_prompts(batch: pb.Batch) -> tuple[dict[str, pb.JobResult], list[tuple[pb.BatchJob, str, GenParams]]]:
    """Each job's prompt (its one text_input row) and generation parameters;
    jobs whose row or parameters are invalid get their error result instead."""
    inp = next((t for t in batch.inputs if t.name == "text_input"), None)
    if inp is None:
        inp = next((t for t in batch.inputs if t.datatype == "BYTES"), None)
    if inp is None:
        raise InvalidBatch("generate model needs a BYTES text_input tensor")
    try:
        elems = decode_bytes(inp.data)
    except TensorError as e:
        raise InvalidBatch(str(e))
    per_row = 1
    for d in inp.shape[1:]:
        per_row *= d
    results: dict[str, pb.JobResult] = {}
    prompts: list[tuple[pb.BatchJob, str, GenParams]] = []
    for job in batch.jobs:
        try:
            if job.row_end - job.row_start != 1:
                raise ParamError(
                    "a generate job takes exactly one text_input row, got %d" % (job.row_end - job.row_start)
                )
            k = job.row_start * per_row
            if per_row < 1 or k >= len(elems):
                raise ParamError("text_input row %d is missing" % job.row_start)
            prompts.append((job, elems[k].decode("utf-8"), parse_params(job.parameters_json)))
        except (ParamError, UnicodeDecodeError) as e:
            results[job.id] = job_error(job.id, "invalid_input", str(e))
    return results, prompts


class GenerateModel:
    """Text generation on a causal LM, streaming token chunks."""

    kind = "generate"

    def __init__(
        self,
        lm: CausalLM[Any],
        capacity: int,
        continuous: bool = False,
        max_num_seqs: int = 0,
        max_step_tokens: int = DEFAULT_MAX_STEP_TOKENS,
        join_every_steps: int = DEFAULT_JOIN_EVERY_STEPS,
        join_at_once_below: int = 0,
    ) -> None:
        self.lm, self.device, self.capacity = lm, lm.device, capacity
        # continuous: the server runs a decode loop that batches join and
        # leave at every step (continuous.py), holding max_num_seqs sequences.
        self.continuous = continuous
        self.max_num_seqs = max_num_seqs or capacity
        self.max_step_tokens = max_step_tokens
        self.join_every_steps = join_every_steps
        self.join_at_once_below = join_at_once_below  # 0: the Engine's default

    def prepare(
        self, batch: pb.Batch, emit: Emit, cancelled: Cancelled
    ) -> tuple[dict[str, pb.JobResult], list[tuple[pb.BatchJob, Request]]]:
        """Splits a batch into requests to generate and results of the jobs
        that fail at once (invalid input)."""
        results, prompts = read_prompts(batch)
        runs: list[tuple[pb.BatchJob, Request]] = []
        for job, prompt, params in prompts:
            ids = self.lm.encode(prompt)
            limit = self.lm.max_length
            if limit and len(ids) + params.max_tokens > limit:
                results[job.id] = job_error(
                    job.id,
                    "invalid_input",
                    "prompt (%d tokens) + max_tokens (%d) exceeds the model's %d positions"
                    % (len(ids), params.max_tokens, limit),
                )
                continue
            runs.append(
                (
                    job,
                    Request(ids, params, chunker(job.id, emit), _canceller(job.id, cancelled), job.deadline_unix_nano),
                )
            )
        return results, runs

    def job_result(self, job: pb.BatchJob, reason: str, text: str) -> pb.JobResult:
        """A finished sequence's result: its text, or why it stopped early."""
        if reason == CANCELLED:
            return job_error(job.id, "cancelled", "cancelled during generation")
        if reason == EXPIRED:
            return job_error(job.id, "expired", "deadline passed during generation")
        outs: list[pb.Tensor] = []
        if wanted(job, "text_output"):
            outs.append(bytes_tensor("text_output", [text.encode("utf-8")], [1, 1]))
        return pb.JobResult(job_id=job.id, outputs=outs)

    def run(self, batch: pb.Batch, emit: Emit, cancelled: Cancelled) -> pb.BatchResult:
        """Static batching: the batch runs until its longest sequence ends."""
        results, runs = self.prepare(batch, emit, cancelled)
        for i in range(0, len(runs), self.capacity):
            part = runs[i : i + self.capacity]
            for (job, _), out in zip(part, generate(self.lm, [r for _, r in part])):
                results[job.id] = self.job_result(job, out.reason, out.text)
        return pb.BatchResult(batch_id=batch.id, jobs=[results[j.id] for j in batch.jobs])


def chunker(job_id: str, emit: Emit) -> OnChunk:
    seq = [0]

    def on_chunk(text: str, token_id: int, final: bool) -> None:
        seq[0] += 1
        emit(pb.TokenChunk(job_id=job_id, seq=seq[0], text=text, token_id=token_id, final=final))

    return on_chunk


def _canceller(job_id: str, cancelled: Cancelled) -> Callable[[], bool]:
    return lambda: cancelled(job_id)


class TensorModel:
    """A forward pass over the batched tensors; outputs split by job rows."""

    kind = "tensor"

    def __init__(self, fn: TensorFn, device: torch.device, capacity: int) -> None:
        self.fn, self.device, self.capacity = fn, device, capacity

    def run(self, batch: pb.Batch, emit: Emit, cancelled: Cancelled) -> pb.BatchResult:
        try:
            inputs = {t.name: to_torch(t).to(self.device) for t in list(batch.inputs) + list(batch.masks)}
        except TensorError as e:
            raise InvalidBatch(str(e))
        with torch.no_grad():
            outputs = self.fn(inputs)
        res = pb.BatchResult(batch_id=batch.id)
        for job in batch.jobs:
            if cancelled(job.id):
                res.jobs.append(job_error(job.id, "cancelled", "cancelled before it ran"))
                continue
            jr = res.jobs.add(job_id=job.id)
            for name, out in outputs.items():
                if wanted(job, name):
                    jr.outputs.append(from_torch(name, out[job.row_start : job.row_end]))
        return res


class Model(Protocol):
    """What load() returns and the server runs: GenerateModel, TensorModel
    or sources.PythonGenerateModel."""

    kind: str
    device: torch.device
    capacity: int

    def run(self, batch: pb.Batch, emit: Emit, cancelled: Cancelled) -> pb.BatchResult:
        ...


def _tiny_mlp_fn(net: nn.Module, dtype: torch.dtype) -> TensorFn:
    def fn(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = inputs.get("INPUT0")
        if x is None:
            raise InvalidBatch("tiny-mlp needs input INPUT0")
        if x.dtype != torch.float32 or x.dim() != 2 or x.shape[1] != 16:
            raise InvalidBatch("tiny-mlp: INPUT0 must be FP32 [n, 16], got %s %s" % (x.dtype, list(x.shape)))
        y: torch.Tensor = net(x.to(dtype))
        return {"OUTPUT0": y.float()}

    return fn


def load(
    source: str,
    device: str | None = "auto",
    dtype: str | None = "fp32",
    use_deepspeed: bool = False,
    tp_size: int = 1,
    options: dict[str, Any] | None = None,
) -> Model:
    """Loads a model once; returns a GenerateModel or a TensorModel. source is
    builtin:NAME, torchscript:PATH, python:MODULE:FACTORY, hf:PATH or a bare
    Hugging Face directory (see sources.py). options is the Load frame's
    decoded options_json: the model config's kind, inputs, outputs,
    max_batch_size, params, python_path and deepspeed."""
    from . import sources  # noqa: PLC0415 - sources builds on this module

    options = options or {}
    src = sources.parse(source)
    if options.get("deepspeed"):
        sources.require_deepspeed()  # the config asked for it: no silent fallback to plain PyTorch
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    capacity = int(options.get("max_batch_size") or DEFAULT_CAPACITY)
    kernel_inject = bool(options.get("kernel_inject", False))
    # batching.continuous (default on) and its limits, from the agent's config.
    cont = options.get("continuous")
    gen_opts: dict[str, Any] = {
        "continuous": True if cont is None else bool(cont),
        "max_num_seqs": int(options.get("max_num_seqs") or capacity),
        "max_step_tokens": int(options.get("max_step_tokens") or DEFAULT_MAX_STEP_TOKENS),
        "join_every_steps": int(options.get("join_every_steps") or DEFAULT_JOIN_EVERY_STEPS),
        "join_at_once_below": int(options.get("join_at_once_below") or 0),
    }
    if src.scheme == "builtin":
        if src.path == "tiny-gpt":
            gpt, tok = build_tiny_gpt()
            net = maybe_deepspeed(gpt.to(dev, dt), use_deepspeed, tp_size, dt, False)
            return GenerateModel(TinyGPTLM(net, tok, dev), capacity, **gen_opts)
        if src.path == "tiny-mlp":
            net = maybe_deepspeed(build_tiny_mlp().to(dev, dt), use_deepspeed, tp_size, dt, False)
            return TensorModel(_tiny_mlp_fn(net, dt), dev, capacity)
        if src.path == "sim-gpt":
            try:
                sim = SimGPTLM.from_params(dict(options.get("params") or {}))
            except ValueError as e:
                raise sources.LoadError(str(e))
            return GenerateModel(sim, capacity, **gen_opts)
        raise sources.LoadError(
            "unknown built-in model %r (have builtin:tiny-gpt, builtin:tiny-mlp, builtin:sim-gpt)" % source
        )
    if src.scheme == "hf":
        if not os.path.isdir(src.path):
            raise sources.LoadError("hf:%s: no such directory" % src.path)
        return _load_hf(src.path, dev, dt, use_deepspeed, tp_size, kernel_inject, capacity, gen_opts)
    ctx = sources.context(options, dev, capacity)
    if src.scheme == "torchscript":
        return sources.load_torchscript(src.path, ctx, use_deepspeed, tp_size, dt)
    return sources.load_python(src.path, src.factory, ctx, options.get("python_path") or [])


def _load_hf(
    path: str,
    dev: torch.device,
    dt: torch.dtype,
    use_deepspeed: bool,
    tp_size: int,
    kernel_inject: bool,
    capacity: int,
    gen_opts: dict[str, Any],
) -> GenerateModel:
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: PLC0415 - optional dependency
    except ImportError as e:
        raise RuntimeError(
            "model source %s is a Hugging Face directory, but transformers is not importable "
            "(%s): install transformers for this python" % (path, e)
        )
    tok = AutoTokenizer.from_pretrained(path)
    net = AutoModelForCausalLM.from_pretrained(path, torch_dtype=dt).to(dev).eval()
    config = net.config
    net = maybe_deepspeed(net, use_deepspeed, tp_size, dt, kernel_inject)
    log.info("loaded Hugging Face model %s (%s)", path, type(getattr(net, "module", net)).__name__)
    return GenerateModel(HFLM(net, tok, config, dev), capacity, **gen_opts)
