"""Frames on the runner's stdio: a 4-byte little-endian length, then a
serialized RunnerFrame."""

import struct
import threading
from typing import Protocol

from . import inferq_pb2 as pb

# Larger than any batch the agent sends (NATS payloads are capped at a few MB,
# bigger batches are claim-checked); guards against a desynchronised stream.
MAX_FRAME = 1 << 30


class ByteReader(Protocol):
    """A stream frames are read from (a pipe opened "rb"); read may return
    fewer bytes than asked for, and b"" at the end."""

    def read(self, n: int, /) -> bytes:
        ...


class ByteWriter(Protocol):
    """A stream frames are written to (a pipe opened "wb")."""

    def write(self, data: bytes, /) -> object:
        ...

    def flush(self) -> object:
        ...


class FrameError(Exception):
    """The stream is corrupt or ended in the middle of a frame."""


def _read_exact(stream: ByteReader, n: int) -> bytes | None:
    """Reads exactly n bytes; pipes may return fewer per read. Returns None on
    a clean EOF before the first byte."""
    buf = bytearray()
    while len(buf) < n:
        chunk = stream.read(n - len(buf))
        if not chunk:
            if not buf:
                return None
            raise FrameError("stream ended inside a frame (%d of %d bytes)" % (len(buf), n))
        buf += chunk
    return bytes(buf)


def read_frame(stream: ByteReader) -> pb.RunnerFrame | None:
    """Returns the next RunnerFrame, or None at end of stream."""
    head = _read_exact(stream, 4)
    if head is None:
        return None
    (n,) = struct.unpack("<I", head)
    if n > MAX_FRAME:
        raise FrameError("frame of %d bytes is larger than %d" % (n, MAX_FRAME))
    body = _read_exact(stream, n) if n else b""
    if body is None:
        raise FrameError("stream ended after a frame header")
    frame = pb.RunnerFrame()
    frame.ParseFromString(body)
    return frame


def encode_frame(frame: pb.RunnerFrame) -> bytes:
    # protobuf has no type information here: say what SerializeToString returns.
    body: bytes = frame.SerializeToString()
    return struct.pack("<I", len(body)) + body


class FrameWriter:
    """Writes whole frames atomically: the main thread (tokens, results) and
    the stdin thread (health echoes) share one stream."""

    def __init__(self, stream: ByteWriter) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def write(self, frame: pb.RunnerFrame) -> None:
        data = encode_frame(frame)
        with self._lock:
            self._stream.write(data)
            self._stream.flush()
