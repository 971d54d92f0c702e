"""inferq: the Python client of the inferq inference broker.

    from inferq import Client
    c = Client("http://127.0.0.1:8080")
    job = c.submit("identity", {"INPUT0": numpy.arange(4, dtype=numpy.float32).reshape(1, 4)})
    print(c.wait(job.id).outputs()["OUTPUT0"])

:class:`Client` is synchronous (http.client only), :class:`AsyncClient` its
asyncio form. numpy is used when installed and needed only for arrays.
"""

from .aio import AsyncClient, AsyncEventStream
from .client import Client, Deadline, EventStream, Inputs
from .errors import (
    Conflict,
    Expired,
    Forbidden,
    IdempotencyKeyReused,
    InferqError,
    InvalidRequest,
    NotFound,
    NotReplayable,
    QueueFull,
    RateLimited,
    ServerError,
    Timeout,
    TooLarge,
    TransportError,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
    WaitTimeout,
)
from .records import (
    TERMINAL,
    ErrorInfo,
    Event,
    InferResult,
    Job,
    Model,
    ModelStats,
    Replay,
)
from .tensor import DATATYPES, Tensor

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "AsyncEventStream",
    "Client",
    "Conflict",
    "DATATYPES",
    "Deadline",
    "ErrorInfo",
    "Event",
    "EventStream",
    "Expired",
    "Forbidden",
    "IdempotencyKeyReused",
    "InferResult",
    "InferqError",
    "Inputs",
    "InvalidRequest",
    "Job",
    "Model",
    "ModelStats",
    "NotFound",
    "NotReplayable",
    "QueueFull",
    "RateLimited",
    "Replay",
    "ServerError",
    "TERMINAL",
    "Tensor",
    "Timeout",
    "TooLarge",
    "TransportError",
    "Unauthorized",
    "Unavailable",
    "UnsupportedMediaType",
    "WaitTimeout",
]
