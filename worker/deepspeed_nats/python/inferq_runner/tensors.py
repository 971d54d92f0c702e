"""OIP tensors in raw form (row-major little-endian; BYTES elements are a
4-byte little-endian length then the bytes) <-> torch tensors."""

import struct
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt
import torch

from . import inferq_pb2 as pb

_NUMPY: dict[str, npt.DTypeLike] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "INT8": np.int8,
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
    # torch has no unsigned 16/32/64-bit types (before 2.3): widen to int64.
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
}
_TORCH: dict[torch.dtype, str] = {
    torch.bool: "BOOL",
    torch.uint8: "UINT8",
    torch.int8: "INT8",
    torch.int16: "INT16",
    torch.int32: "INT32",
    torch.int64: "INT64",
    torch.float16: "FP16",
    torch.bfloat16: "BF16",
    torch.float32: "FP32",
    torch.float64: "FP64",
}


class TensorError(ValueError):
    """A tensor is malformed; retrying cannot help."""


def decode_bytes(data: bytes) -> list[bytes]:
    """Splits raw BYTES data into its elements."""
    out: list[bytes] = []
    off, n = 0, len(data)
    while off < n:
        if off + 4 > n:
            raise TensorError("BYTES data ends inside an element length")
        (ln,) = struct.unpack_from("<I", data, off)
        off += 4
        if off + ln > n:
            raise TensorError("BYTES element of %d bytes overruns the data" % ln)
        out.append(bytes(data[off : off + ln]))
        off += ln
    return out


def encode_bytes(elems: Iterable[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(e)) + e for e in elems)


def bytes_tensor(name: str, elems: Iterable[bytes], shape: Sequence[int]) -> pb.Tensor:
    return pb.Tensor(name=name, datatype="BYTES", shape=list(shape), data=encode_bytes(elems))


def to_torch(t: pb.Tensor) -> torch.Tensor:
    """A numeric wire tensor as a CPU torch tensor (a copy)."""
    shape = tuple(t.shape)
    if t.datatype == "BF16":
        raw = np.frombuffer(t.data, dtype="<i2").copy()
        return torch.from_numpy(raw).view(torch.bfloat16).reshape(shape)
    dt = _NUMPY.get(t.datatype)
    if dt is None:
        raise TensorError("tensor %s: datatype %r has no torch form" % (t.name, t.datatype))
    arr = np.frombuffer(t.data, dtype=dt)
    if arr.size != int(np.prod(shape, dtype=np.int64)):
        raise TensorError("tensor %s: %d elements do not fill shape %s" % (t.name, arr.size, list(shape)))
    if t.datatype in ("UINT16", "UINT32", "UINT64"):
        arr = arr.astype(np.int64)
    return torch.from_numpy(arr.copy()).reshape(shape)


def from_torch(name: str, x: torch.Tensor) -> pb.Tensor:
    x = x.detach().to("cpu").contiguous()
    dt = _TORCH.get(x.dtype)
    if dt is None:
        raise TensorError("output %s: torch dtype %s has no OIP datatype" % (name, x.dtype))
    if x.dtype == torch.bfloat16:
        data = x.view(torch.int16).numpy().astype("<i2").tobytes()
    else:
        arr = x.numpy()
        data = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
    return pb.Tensor(name=name, datatype=dt, shape=list(x.shape), data=data)
