"""OIP (KServe v2) tensors and their conversion to and from numpy.

A :class:`Tensor` keeps its elements either as a flat Python list (the JSON
form) or as raw row-major little-endian bytes (the binary tensor data
extension's form, and how the broker itself holds tensors), and converts
between the two with :mod:`struct`, so numpy is needed only for
:meth:`Tensor.from_numpy` and :meth:`Tensor.to_numpy`.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Sequence

if TYPE_CHECKING:  # numpy is optional at run time
    import numpy as np
    import numpy.typing as npt

# OIP datatype -> struct format character of one element (little-endian).
_STRUCT: dict[str, str] = {
    "BOOL": "?",
    "UINT8": "B",
    "UINT16": "H",
    "UINT32": "I",
    "UINT64": "Q",
    "INT8": "b",
    "INT16": "h",
    "INT32": "i",
    "INT64": "q",
    "FP16": "e",
    "FP32": "f",
    "FP64": "d",
}

# OIP datatype -> numpy dtype (little-endian); BF16 has no numpy type and
# BYTES is an object array of bytes.
_NUMPY: dict[str, str] = {
    "BOOL": "bool",
    "UINT8": "u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}

# numpy dtype kind and item size -> OIP datatype.
_FROM_NUMPY: dict[tuple[str, int], str] = {
    ("b", 1): "BOOL",
    ("u", 1): "UINT8",
    ("u", 2): "UINT16",
    ("u", 4): "UINT32",
    ("u", 8): "UINT64",
    ("i", 1): "INT8",
    ("i", 2): "INT16",
    ("i", 4): "INT32",
    ("i", 8): "INT64",
    ("f", 2): "FP16",
    ("f", 4): "FP32",
    ("f", 8): "FP64",
}

DATATYPES: tuple[str, ...] = tuple(_STRUCT) + ("BF16", "BYTES")
"""Every OIP datatype the broker accepts."""

_FLOATS = ("FP16", "BF16", "FP32", "FP64")


def _count(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        if not isinstance(d, int) or isinstance(d, bool) or d < 0:
            raise ValueError(f"shape {list(shape)}: dimensions must be non-negative integers")
        n *= d
    return n


def _flatten(data: Iterable[Any]) -> list[Any]:
    data = list(data)
    if not data or not isinstance(data[0], (list, tuple)):
        return data  # flat, as the broker always answers: no per-element walk
    out: list[Any] = []
    for v in data:
        if isinstance(v, (list, tuple)):
            out.extend(_flatten(v))
        else:
            out.append(v)
    return out


def _bf16_from_float(f: float) -> int:
    """Rounds f to bfloat16 bits (nearest, ties to even), as the broker does."""
    bits: int = struct.unpack("<I", struct.pack("<f", f))[0]
    if math.isnan(f):
        return (bits >> 16) | 0x40
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) & 0xFFFF


def _bf16_to_float(h: int) -> float:
    value: float = struct.unpack("<f", struct.pack("<I", h << 16))[0]
    return value


def _normalize(datatype: str, data: list[Any]) -> list[Any]:
    """Gives BYTES elements the type bytes and BOOL elements bool; numbers
    stay as they are (struct and numpy take ints and floats alike)."""
    if datatype == "BYTES":
        return [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in data]
    if datatype == "BOOL":
        return [bool(v) for v in data]
    return data


@dataclass
class Tensor:
    """One named OIP tensor: ``shape``, ``datatype`` and its elements.

    Give the elements as ``data`` (a flat or nested list: numbers, bools, or
    bytes/str for BYTES) or as ``raw`` (row-major little-endian bytes; BYTES
    elements each a 4-byte little-endian length and the bytes).
    """

    name: str
    shape: list[int]
    datatype: str
    data: list[Any] | None = None
    raw: bytes | None = None
    parameters: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.shape = [int(d) for d in self.shape]
        self.datatype = self.datatype.upper()
        if self.datatype not in DATATYPES:
            raise ValueError(f"tensor {self.name!r}: unknown datatype {self.datatype!r}")
        if (self.data is None) == (self.raw is None):
            raise ValueError(f"tensor {self.name!r}: give exactly one of data and raw")
        n = _count(self.shape)
        if self.data is not None:
            self.data = _normalize(self.datatype, _flatten(self.data))
            if len(self.data) != n:
                raise ValueError(
                    f"tensor {self.name!r}: shape {self.shape} holds {n} elements, data has {len(self.data)}"
                )
        elif self.raw is not None:
            self.raw = bytes(self.raw)
            if self.datatype == "BYTES":
                got = len(_split_bytes(self.name, self.raw))
                if got != n:
                    raise ValueError(f"tensor {self.name!r}: shape {self.shape} holds {n} elements, raw has {got}")
            elif len(self.raw) != n * _elem_size(self.datatype):
                raise ValueError(
                    f"tensor {self.name!r}: shape {self.shape} of {self.datatype} is "
                    f"{n * _elem_size(self.datatype)} bytes, raw has {len(self.raw)}"
                )

    # -- conversions -------------------------------------------------------

    def to_list(self) -> list[Any]:
        """The elements as a flat list (bytes for BYTES, bool for BOOL, else numbers)."""
        if self.data is not None:
            return list(self.data)
        assert self.raw is not None
        if self.datatype == "BYTES":
            return _split_bytes(self.name, self.raw)
        n = len(self.raw) // _elem_size(self.datatype)
        if self.datatype == "BF16":
            return [_bf16_to_float(h) for h in struct.unpack(f"<{n}H", self.raw)]
        return list(struct.unpack(f"<{n}{_STRUCT[self.datatype]}", self.raw))

    def to_bytes(self) -> bytes:
        """The elements in the binary extension's layout."""
        if self.raw is not None:
            return self.raw
        assert self.data is not None
        if self.datatype == "BYTES":
            return b"".join(struct.pack("<I", len(v)) + v for v in self.data)
        try:
            if self.datatype == "BF16":
                return struct.pack(f"<{len(self.data)}H", *(_bf16_from_float(v) for v in self.data))
            return struct.pack(f"<{len(self.data)}{_STRUCT[self.datatype]}", *self.data)
        except (struct.error, OverflowError) as e:
            raise ValueError(f"tensor {self.name!r}: a value does not fit {self.datatype}: {e}") from None

    def json_data(self) -> list[Any]:
        """The elements as JSON values. JSON has no NaN, infinity or non-UTF-8
        string, so those raise ValueError: send such tensors with binary=True."""
        values = self.to_list()
        if self.datatype in _FLOATS and not all(map(math.isfinite, values)):
            bad = next(v for v in values if not math.isfinite(v))
            raise ValueError(f"tensor {self.name!r}: {bad} has no JSON form; submit with binary=True")
        elif self.datatype == "BYTES":
            try:
                return [v.decode("utf-8") for v in values]
            except UnicodeDecodeError:
                raise ValueError(
                    f"tensor {self.name!r}: an element is not UTF-8 and has no exact JSON form; submit with binary=True"
                ) from None
        return values

    def to_json(self) -> dict[str, Any]:
        """The tensor in OIP JSON form (``data`` flat)."""
        doc: dict[str, Any] = {
            "name": self.name,
            "shape": self.shape,
            "datatype": self.datatype,
        }
        if self.parameters:
            doc["parameters"] = dict(self.parameters)
        doc["data"] = self.json_data()
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any], raw: bytes | None = None) -> "Tensor":
        """Reads an OIP tensor; ``raw`` holds its bytes when it came in binary form."""
        params = dict(doc.get("parameters") or {})
        if raw is not None:
            params.pop("binary_data_size", None)
            return cls(
                doc["name"],
                list(doc["shape"]),
                doc["datatype"],
                raw=raw,
                parameters=params,
            )
        return cls(
            doc["name"],
            list(doc["shape"]),
            doc["datatype"],
            data=list(doc.get("data") or []),
            parameters=params,
        )

    @classmethod
    def from_numpy(cls, name: str, array: "npt.ArrayLike", datatype: str | None = None) -> "Tensor":
        """A tensor of a numpy array (or anything numpy.asarray takes).

        The datatype follows the array's dtype (bool, int8..int64,
        uint8..uint64, float16/32/64); object arrays of bytes or str, and
        numpy bytes or str arrays, are BYTES. ``datatype`` overrides it (e.g.
        BF16 from a float array).
        """
        import numpy as np

        arr = np.asarray(array)
        shape = [int(d) for d in arr.shape]
        dt = datatype.upper() if datatype else _datatype_of(arr)
        if dt == "BYTES":
            return cls(name, shape, dt, data=[_as_bytes(v) for v in arr.reshape(-1).tolist()])
        if dt == "BF16":
            return cls(name, shape, dt, data=arr.astype(np.float32).reshape(-1).tolist())
        if dt not in _NUMPY:
            raise ValueError(f"tensor {name!r}: unknown datatype {dt!r}")
        raw = np.ascontiguousarray(arr, dtype=np.dtype(_NUMPY[dt])).tobytes()
        return cls(name, shape, dt, raw=raw)

    def to_numpy(self) -> "np.ndarray[Any, Any]":
        """The tensor as a numpy array of its shape: the matching dtype, an
        object array of bytes for BYTES, float32 for BF16 (widened exactly)."""
        import numpy as np

        if self.datatype == "BYTES":
            values = self.to_list()
            out = np.empty(len(values), dtype=object)
            out[:] = values
            return out.reshape(self.shape)
        if self.datatype == "BF16":
            return np.array(self.to_list(), dtype=np.float32).reshape(self.shape)
        dtype = np.dtype(_NUMPY[self.datatype])
        if self.raw is not None:
            return np.frombuffer(self.raw, dtype=dtype).reshape(self.shape).copy()
        return np.array(self.to_list(), dtype=dtype).reshape(self.shape)


def _elem_size(datatype: str) -> int:
    if datatype == "BF16":
        return 2
    return struct.calcsize("<" + _STRUCT[datatype])


def _split_bytes(name: str, raw: bytes) -> list[bytes]:
    out: list[bytes] = []
    off = 0
    while off < len(raw):
        if off + 4 > len(raw):
            raise ValueError(f"tensor {name!r}: BYTES data ends inside an element's length")
        (n,) = struct.unpack_from("<I", raw, off)
        off += 4
        if off + n > len(raw):
            raise ValueError(f"tensor {name!r}: BYTES element of {n} bytes runs past the data")
        out.append(raw[off : off + n])
        off += n
    return out


def _as_bytes(v: Any) -> bytes:
    if isinstance(v, bytes):
        return v
    if isinstance(v, str):
        return v.encode("utf-8")
    raise ValueError(f"BYTES elements must be bytes or str, got {type(v).__name__}")


def _datatype_of(arr: "np.ndarray[Any, Any]") -> str:
    kind = arr.dtype.kind
    if kind in ("O", "S", "U"):
        return "BYTES"
    dt = _FROM_NUMPY.get((kind, arr.dtype.itemsize))
    if dt is None:
        raise ValueError(f"numpy dtype {arr.dtype} has no OIP datatype")
    return dt
