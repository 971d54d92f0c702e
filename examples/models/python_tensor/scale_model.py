"""An example tensor model for inferq's python: source (python:scale_model:build).

The runner calls build(ctx) once, then model.forward(inputs) for every batch:
a dict of named tensors, batched along dimension 0, to a dict of named
tensors with the same number of rows. Here OUTPUT0 = INPUT0 * scale + bias
and SUM is each row's sum; scale and bias come from runner.params.
"""

import torch

from inferq_runner.api import ModelContext


class ScaleModel:
    def __init__(self, scale: float, bias: float) -> None:
        self.scale, self.bias = scale, bias

    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = inputs["INPUT0"]
        return {"OUTPUT0": x * self.scale + self.bias, "SUM": x.sum(dim=1, keepdim=True)}


def build(ctx: ModelContext) -> ScaleModel:
    """The factory: ctx carries the model's name, device, config and params."""
    return ScaleModel(float(ctx.params.get("scale", 2.0)), float(ctx.params.get("bias", 0.0)))
