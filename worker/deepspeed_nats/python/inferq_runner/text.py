"""Tokenizers and streaming text assembly.

Streamed chunks must concatenate exactly to the final text, so every piece of
text goes through one TextStream per sequence: detokenizers only release
complete characters, and text that might be the start of a stop string is
held back until it is known not to be one.
"""

import codecs
from collections.abc import Iterable
from typing import Any, Protocol

EOS_ID = 256  # byte-level vocabulary: 256 bytes, then EOS


class Detokenizer(Protocol):
    """Turns one sequence's tokens into text, a piece at a time."""

    def push(self, token_id: int) -> str:
        ...

    def flush(self) -> str:
        ...


class ByteTokenizer:
    """One token per UTF-8 byte, plus EOS (also used as BOS)."""

    vocab_size = 257
    eos_id = EOS_ID
    bos_id = EOS_ID

    def encode(self, text: str) -> list[int]:
        return [self.bos_id] + list(text.encode("utf-8"))

    def detokenizer(self) -> "ByteDetokenizer":
        return ByteDetokenizer()


class ByteDetokenizer:
    """Turns byte tokens into text, releasing only complete UTF-8 characters.
    Invalid sequences become U+FFFD, consistently in the stream and the final
    text."""

    def __init__(self) -> None:
        self._dec = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        if not 0 <= token_id < 256:
            return ""
        return self._dec.decode(bytes((token_id,)))

    def flush(self) -> str:
        return self._dec.decode(b"", final=True)


class HFDetokenizer:
    """Incremental detokenizer for Hugging Face tokenizers, whose tokens do not
    map to text one by one: decode a short window and release the new text once
    it no longer ends in a partial character (as TGI and vLLM do)."""

    def __init__(self, tokenizer: Any) -> None:
        # A transformers tokenizer: an optional dependency, typed loosely.
        self._tok = tokenizer
        self._ids: list[int] = []
        self._prefix = 0
        self._read = 0

    def _decode(self, ids: list[int]) -> str:
        text: str = self._tok.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        return text

    def push(self, token_id: int) -> str:
        self._ids.append(token_id)
        before = self._decode(self._ids[self._prefix : self._read])
        now = self._decode(self._ids[self._prefix :])
        if len(now) > len(before) and not now.endswith("\ufffd"):
            self._prefix, self._read = self._read, len(self._ids)
            return now[len(before) :]
        return ""

    def flush(self) -> str:
        before = self._decode(self._ids[self._prefix : self._read])
        now = self._decode(self._ids[self._prefix :])
        self._prefix = self._read = len(self._ids)
        return now[len(before) :] if len(now) > len(before) else ""


class TextStream:
    """A sequence's generated text with stop strings applied. add() appends
    decoded text and reports whether a stop string ended the sequence (the text
    then ends before it); ready() returns the text that is safe to stream."""

    def __init__(self, stop: Iterable[str] = ()) -> None:
        self.stop = [s for s in stop if s]
        self._max_stop = max((len(s) for s in self.stop), default=0)
        self.text = ""
        self.emitted = 0
        self.stopped = False

    def add(self, piece: str) -> bool:
        if self.stopped or not piece:
            return self.stopped
        # A stop string may span pieces: search from where it could start.
        start = max(0, len(self.text) - self._max_stop + 1)
        self.text += piece
        cut = -1
        for s in self.stop:
            i = self.text.find(s, start)
            if i >= 0 and (cut < 0 or i < cut):
                cut = i
        if cut >= 0:
            self.text = self.text[:cut]
            self.stopped = True
        return self.stopped

    def _holdback(self) -> int:
        # Longest tail of the text that is a proper prefix of a stop string.
        best = 0
        for s in self.stop:
            for k in range(min(len(s) - 1, len(self.text)), best, -1):
                if self.text.endswith(s[:k]):
                    best = k
                    break
        return best

    def ready(self, final: bool = False) -> str:
        end = len(self.text)
        if not (final or self.stopped):
            end -= self._holdback()
        end = max(end, self.emitted)
        out = self.text[self.emitted : end]
        self.emitted = end
        return out
