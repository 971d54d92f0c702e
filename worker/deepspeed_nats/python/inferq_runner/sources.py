"""Model sources: one string says where a model comes from.

  builtin:NAME            a built-in test model (tiny-gpt, tiny-mlp, sim-gpt)
  torchscript:PATH        a TorchScript file, inputs and outputs named and typed by the model config
  python:MODULE:FACTORY   the user's own Python (see api.py)
  hf:PATH                 a Hugging Face causal-LM directory; a bare directory path means the same

A model that cannot serve its config fails to load with a LoadError that says
why; the agent then reports the worker not ready, with that message.
"""

import importlib
import logging
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import inferq_pb2 as pb
from .api import GenerateModel as UserGenerateModel
from .api import ModelContext, TensorSpec
from .api import TensorModel as UserTensorModel
from .models import (
    CANCELLED,
    EXPIRED,
    Cancelled,
    Emit,
    InvalidBatch,
    TensorFn,
    TensorModel,
    chunker,
    job_error,
    read_prompts,
    wanted,
)
from .sampling import GenParams
from .tensors import bytes_tensor
from .text import TextStream

log = logging.getLogger("inferq_runner")

SCHEMES = ("builtin", "torchscript", "python", "hf")

# OIP datatypes a torch tensor can hold, and back.
TORCH_DTYPES: dict[str, torch.dtype] = {
    "BOOL": torch.bool,
    "UINT8": torch.uint8,
    "INT8": torch.int8,
    "INT16": torch.int16,
    "INT32": torch.int32,
    "INT64": torch.int64,
    "FP16": torch.float16,
    "BF16": torch.bfloat16,
    "FP32": torch.float32,
    "FP64": torch.float64,
}
_OIP = {v: k for k, v in TORCH_DTYPES.items()}


class LoadError(ValueError):
    """The model cannot be loaded as configured; loading again cannot help."""


@dataclass(frozen=True, slots=True)
class Source:
    """A parsed model source. path is the builtin name, the file, the
    directory or the module; factory is set for python: only."""

    scheme: str
    path: str
    factory: str = ""


def parse(source: str) -> Source:
    """Parses a model source string (see the module doc)."""
    s = (source or "").strip()
    if not s:
        raise LoadError("no model source: give runner.model (builtin:, torchscript:, python: or hf:)")
    scheme, sep, rest = s.partition(":")
    if sep and scheme in SCHEMES:
        if scheme == "python":
            module, sep2, factory = rest.partition(":")
            if not sep2 or not module or not factory or ":" in factory:
                raise LoadError("model source %r: want python:MODULE:FACTORY" % s)
            return Source(scheme, module, factory)
        if not rest:
            raise LoadError("model source %r: %s: needs a %s" % (s, scheme, "name" if scheme == "builtin" else "path"))
        return Source(scheme, rest)
    if os.path.isdir(s):
        return Source("hf", s)  # a bare directory, as before sources had names
    raise LoadError(
        "model source %r is none of builtin:NAME, torchscript:PATH, python:MODULE:FACTORY, hf:PATH "
        "or an existing directory" % s
    )


def _specs(raw: Any) -> tuple[TensorSpec, ...]:
    out = []
    for t in raw or []:
        out.append(TensorSpec(str(t.get("name", "")), str(t.get("datatype") or ""), tuple(t.get("dims") or ())))
    return tuple(out)


def context(options: Mapping[str, Any], device: torch.device, capacity: int) -> ModelContext:
    """The ModelContext of the Load frame's options (the model config)."""
    return ModelContext(
        name=str(options.get("name") or ""),
        kind=str(options.get("kind") or "tensor"),
        device=device,
        inputs=_specs(options.get("inputs")),
        outputs=_specs(options.get("outputs")),
        params=dict(options.get("params") or {}),
        max_batch_size=capacity,
    )


def check_inputs(inputs: dict[str, torch.Tensor], specs: Sequence[TensorSpec]) -> None:
    """Refuses a batch whose tensors are not the config's inputs (the ingress
    checks them already; this guards the model from a foreign batch)."""
    for s in specs:
        x = inputs.get(s.name)
        if x is None:
            raise InvalidBatch('input "%s" is missing from the batch' % s.name)
        want = TORCH_DTYPES.get(s.datatype)
        if want is not None and x.dtype != want:
            raise InvalidBatch('input "%s": config says %s, batch has %s' % (s.name, s.datatype, _OIP.get(x.dtype)))


def _probe_inputs(ctx: ModelContext) -> dict[str, torch.Tensor]:
    """A one-row batch of zeros shaped and typed as the config's inputs
    (-1 dims as 1; an untyped input as FP32)."""
    out = {}
    for s in ctx.inputs:
        if s.datatype == "BYTES":
            raise LoadError('input "%s" is BYTES: a tensor model takes numeric tensors' % s.name)
        dt = TORCH_DTYPES.get(s.datatype or "FP32")
        if dt is None:
            raise LoadError('input "%s": datatype %s has no torch form' % (s.name, s.datatype))
        out[s.name] = torch.zeros([1] + [d if d > 0 else 1 for d in s.dims], dtype=dt, device=ctx.device)
    return out


def probe(fn: TensorFn, ctx: ModelContext) -> None:
    """Runs fn once on a one-row batch of the config's inputs and checks its
    outputs against the config: names, datatypes, batch dimension and dims. A
    model that cannot serve its config fails here, at load, not at its first
    job."""
    try:
        with torch.no_grad():
            outs = fn(_probe_inputs(ctx))
    except LoadError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure of the user's code is the cause
        raise LoadError(
            "a one-row batch of the config's inputs (%s) failed: %s: %s"
            % (", ".join("%s %s%s" % (s.name, s.datatype or "FP32", list(s.dims)) for s in ctx.inputs), _kind(e), e)
        ) from e
    if not isinstance(outs, dict):
        raise LoadError("the model returned %s, want a dict of named tensors" % type(outs).__name__)
    have = sorted(outs)
    if ctx.outputs and have != sorted(s.name for s in ctx.outputs):
        raise LoadError("the model's outputs are %s, the config declares %s" % (have, [s.name for s in ctx.outputs]))
    for s in ctx.outputs:
        y = outs[s.name]
        if not isinstance(y, torch.Tensor):
            raise LoadError('output "%s" is %s, want a tensor' % (s.name, type(y).__name__))
        if s.datatype and _OIP.get(y.dtype) != s.datatype:
            raise LoadError('output "%s": config says %s, the model gives %s' % (s.name, s.datatype, y.dtype))
        if y.dim() < 1 or y.shape[0] != 1:
            raise LoadError(
                'output "%s" has shape %s for a one-row batch: outputs are batched along dimension 0'
                % (s.name, list(y.shape))
            )
        dims = list(y.shape[1:])
        if s.dims and (len(dims) != len(s.dims) or any(d > 0 and d != g for d, g in zip(s.dims, dims))):
            raise LoadError('output "%s": config says dims %s, the model gives %s' % (s.name, list(s.dims), dims))


def _kind(e: BaseException) -> str:
    return type(e).__name__


def require_deepspeed() -> Any:
    """The deepspeed module; a missing DeepSpeed is a load error, since the
    config asked for it."""
    try:
        import deepspeed  # noqa: PLC0415 - optional dependency
    except ImportError as e:
        raise LoadError("deepspeed: true, but DeepSpeed is not importable here (%s): install it or drop the key" % e)
    return deepspeed


def _deepspeed(module: nn.Module, tp_size: int, dtype: torch.dtype) -> nn.Module:
    """Wraps module with deepspeed.init_inference."""
    deepspeed = require_deepspeed()
    engine: nn.Module = deepspeed.init_inference(
        module, tensor_parallel={"tp_size": tp_size}, dtype=dtype, replace_with_kernel_inject=False
    )
    log.info("engine: DeepSpeed %s inference, tp_size=%d", deepspeed.__version__, tp_size)
    return engine


def load_torchscript(
    path: str, ctx: ModelContext, use_deepspeed: bool, tp_size: int, dtype: torch.dtype
) -> TensorModel:
    """A TorchScript file as a tensor model: forward's arguments are the
    config's inputs by name; it returns a tensor (the one output), a tuple of
    tensors (the outputs in config order) or a dict of named tensors."""
    if ctx.kind != "tensor":
        raise LoadError("a TorchScript model serves kind tensor, the config says %s" % ctx.kind)
    p = Path(path)
    if not p.is_file():
        raise LoadError("TorchScript file %s not found (relative paths start at %s)" % (path, Path.cwd()))
    t0 = time.monotonic()
    try:
        mod = torch.jit.load(str(p), map_location=ctx.device)  # type: ignore[no-untyped-call]
    except RuntimeError as e:
        raise LoadError("%s is not a TorchScript file: %s" % (path, str(e).splitlines()[0] if str(e) else e))
    mod.eval()
    schema = mod.forward.schema
    args = schema.arguments[1:]  # after self
    names = [a.name for a in args]
    declared = [s.name for s in ctx.inputs]
    required = [a.name for a in args if not a.has_default_value()]
    if set(declared) - set(names) or set(required) - set(declared):
        raise LoadError("forward(%s) does not take the config's inputs %s" % (", ".join(names), declared))
    for a in args:
        if a.name in declared and str(a.type) != "Tensor":
            raise LoadError("forward argument %s is %s, want Tensor" % (a.name, a.type))
    out_names = [s.name for s in ctx.outputs]
    engine: nn.Module = _deepspeed(mod, tp_size, dtype) if use_deepspeed else mod

    def fn(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        y = engine(**{n: inputs[n] for n in declared})
        if isinstance(y, dict):
            return y
        if isinstance(y, torch.Tensor):
            y = (y,)
        if isinstance(y, (tuple, list)):
            if len(y) != len(out_names):
                raise LoadError("the model returned %d tensors, the config declares %s" % (len(y), out_names))
            return dict(zip(out_names, y))
        raise LoadError("the model returned %s, want tensors" % type(y).__name__)

    probe(fn, ctx)
    log.info("loaded TorchScript %s in %.1fs: %s", path, time.monotonic() - t0, schema)
    return TensorModel(_checked(fn, ctx), ctx.device, ctx.max_batch_size)


def _checked(fn: TensorFn, ctx: ModelContext) -> TensorFn:
    def run(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        check_inputs(inputs, ctx.inputs)
        return fn(inputs)

    return run


def load_python(
    module: str, factory: str, ctx: ModelContext, python_path: Sequence[str]
) -> "TensorModel | PythonGenerateModel":
    """The user's own model: FACTORY(ctx) from MODULE, imported with the
    python_path directories first on sys.path."""
    for d in reversed(list(python_path)):
        p = Path(d)
        if not p.is_dir():
            raise LoadError("python_path %s is not a directory (relative paths start at %s)" % (d, Path.cwd()))
        if str(p.resolve()) not in sys.path:
            sys.path.insert(0, str(p.resolve()))
    where = "python:%s:%s" % (module, factory)
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        raise LoadError("%s: module %s not found on python_path %s: %s" % (where, module, list(python_path), e))
    except Exception as e:  # noqa: BLE001 - the user's module failed to import
        raise LoadError("%s: importing %s raised %s: %s" % (where, module, _kind(e), e)) from e
    make = getattr(mod, factory, None)
    if not callable(make):
        raise LoadError("%s: module %s has no callable %s" % (where, module, factory))
    try:
        model = make(ctx)
    except Exception as e:  # noqa: BLE001 - the factory's failure is the cause
        raise LoadError("%s: the factory raised %s: %s" % (where, _kind(e), e)) from e
    if ctx.kind == "generate":
        if not isinstance(model, UserGenerateModel):
            raise LoadError(
                "%s: kind generate wants a model with generate(prompt, params), got %s" % (where, type(model).__name__)
            )
        log.info("loaded %s: a generate model", where)
        return PythonGenerateModel(model, ctx.device, ctx.max_batch_size)
    if not isinstance(model, UserTensorModel):
        raise LoadError("%s: kind tensor wants a model with forward(inputs), got %s" % (where, type(model).__name__))
    # A torch Module is called as one, so that its hooks run.
    fn: TensorFn = model.forward
    if isinstance(model, nn.Module):
        fn = model
    probe(fn, ctx)
    log.info("loaded %s: a tensor model", where)
    return TensorModel(_checked(fn, ctx), ctx.device, ctx.max_batch_size)


class _Seq:
    """One job's sequence in a PythonGenerateModel batch."""

    def __init__(self, job: pb.BatchJob, params: GenParams, it: Iterator[str], emit: Emit) -> None:
        self.job, self.params, self.it = job, params, it
        self.stream = TextStream(params.stop)
        self.on_chunk = chunker(job.id, emit)
        self.tokens = 0
        self.result: pb.JobResult | None = None

    def end(self) -> None:
        self.on_chunk(self.stream.ready(final=True), -1, True)
        outs: list[pb.Tensor] = []
        if wanted(self.job, "text_output"):
            outs.append(bytes_tensor("text_output", [self.stream.text.encode("utf-8")], [1, 1]))
        self.result = pb.JobResult(job_id=self.job.id, outputs=outs)

    def step(self, cancelled: Cancelled, now: int) -> None:
        """Takes the sequence's next piece of text, or ends it."""
        if cancelled(self.job.id):
            self.result = job_error(self.job.id, CANCELLED, "cancelled during generation")
            return
        if self.job.deadline_unix_nano and now > self.job.deadline_unix_nano:
            self.result = job_error(self.job.id, EXPIRED, "deadline passed during generation")
            return
        if self.tokens >= self.params.max_tokens:
            self.end()
            return
        piece = next(self.it, None)
        if piece is None:
            self.end()
            return
        if not isinstance(piece, str):
            raise TypeError("generate() yielded %s, want str" % type(piece).__name__)
        self.tokens += 1
        if self.stream.add(piece):
            self.end()  # a stop string
            return
        text = self.stream.ready()
        if text:
            self.on_chunk(text, -1, False)


class PythonGenerateModel:
    """Drives a user generate model's per-sequence iterators side by side,
    a token of each in turn, with the runner's stop rules."""

    kind = "generate"

    def __init__(self, model: UserGenerateModel, device: torch.device, capacity: int) -> None:
        self.model, self.device, self.capacity = model, device, capacity

    def run(self, batch: pb.Batch, emit: Emit, cancelled: Cancelled) -> pb.BatchResult:
        results, prompts = read_prompts(batch)
        live = [_Seq(job, params, iter(self.model.generate(prompt, params)), emit) for job, prompt, params in prompts]
        while live:
            now = time.time_ns()
            for s in live:
                s.step(cancelled, now)
                if s.result is not None:
                    results[s.job.id] = s.result
            live = [s for s in live if s.result is None]
        return pb.BatchResult(batch_id=batch.id, jobs=[results[j.id] for j in batch.jobs])
