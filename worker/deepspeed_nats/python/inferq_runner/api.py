"""The interface of a user's own Python model (source python:MODULE:FACTORY).

The runner imports MODULE (from the directories of the model's
runner.python_path, put first on sys.path) and calls FACTORY(ctx) once with a
ModelContext. The factory returns one of two kinds of model, matching the
model config's kind:

- a tensor model (kind: tensor) has forward(inputs) -> outputs: a dict of
  named torch tensors for the whole batch to a dict of named tensors, each
  batched along dimension 0 (row i of every output belongs to row i of the
  inputs). Inputs and outputs are named and typed as in the model config.
- a generate model (kind: generate) has generate(prompt, params): an
  iterator that yields one sequence's text a token at a time. The runner
  drives the iterators of a batch side by side, streams each piece as a
  token, and stops one at max_tokens, a stop string, a cancel or its
  deadline (it simply stops calling next()).

See examples/models/python_tensor and examples/models/python_generate.
"""

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch

from .sampling import GenParams

__all__ = ["GenParams", "GenerateModel", "ModelContext", "TensorModel", "TensorSpec"]


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """An input or output of the model config. dims exclude the batch
    dimension; -1 is any size. An empty datatype accepts any."""

    name: str
    datatype: str = ""
    dims: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class ModelContext:
    """What a factory learns about the model it builds."""

    name: str  # the model's name in the config
    kind: str  # tensor or generate
    device: torch.device  # where the runner wants tensors: cuda when available, else cpu
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)  # runner.params of the model config
    max_batch_size: int = 32


@runtime_checkable
class TensorModel(Protocol):
    """A model that maps a whole batch of named tensors to named tensors."""

    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        ...


@runtime_checkable
class GenerateModel(Protocol):
    """A model that writes text for a prompt, a token at a time."""

    def generate(self, prompt: str, params: GenParams) -> Iterator[str]:
        ...
