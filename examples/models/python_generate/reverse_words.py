"""An example generate model for inferq's python: source (python:reverse_words:build).

The runner calls build(ctx) once, then model.generate(prompt, params) for each
sequence of a batch: an iterator that yields the text a token at a time. The
runner streams each piece as a token and stops the sequence at
params.max_tokens, at a stop string, on cancel or at its deadline. This model
answers with the prompt's words in reverse order, one word per token.
"""

from collections.abc import Iterator

from inferq_runner.api import GenParams, ModelContext


class ReverseWords:
    def __init__(self, suffix: str) -> None:
        self.suffix = suffix

    def generate(self, prompt: str, params: GenParams) -> Iterator[str]:
        for i, word in enumerate(reversed(prompt.split())):
            yield word if i == 0 else " " + word
        if self.suffix:
            yield self.suffix


def build(ctx: ModelContext) -> ReverseWords:
    """The factory: ctx carries the model's name, device, config and params."""
    return ReverseWords(str(ctx.params.get("suffix", "")))
