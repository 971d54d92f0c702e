"""Typed exceptions, one per error code of inferq's HTTP API.

Every error answer carries a code (``{"error": {"code", "message"}}`` on /v1,
``{"error": "...", "code": "..."}`` on /v2); :func:`from_response` turns it
into the matching exception so callers can ``except QueueFull`` instead of
comparing status numbers.
"""

from __future__ import annotations

import json
from typing import Any, Mapping


class InferqError(Exception):
    """Base of every error the client raises.

    ``status`` is the HTTP status (0 when no answer came), ``code`` the API's
    error code, ``retry_after`` the seconds the server asked to wait (from
    ``Retry-After``) or None, ``request_id`` the answer's ``X-Request-Id``.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        code: str = "",
        retry_after: float | None = None,
        request_id: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.retry_after = retry_after
        self.request_id = request_id

    def __str__(self) -> str:
        if self.status:
            return f"{self.status} {self.code or 'error'}: {self.message}"
        return self.message


class TransportError(InferqError):
    """The server could not be reached, or the connection broke mid-answer."""


class InvalidRequest(InferqError):
    """400 ``invalid``: the request does not match the model or the API."""


class Unauthorized(InferqError):
    """401 ``unauthenticated``: missing or bad credentials."""


class Forbidden(InferqError):
    """403 ``forbidden``: the credential lacks the scope."""


class NotFound(InferqError):
    """404 ``not_found``: unknown model, version or job (or another tenant's job)."""


class Conflict(InferqError):
    """409 ``conflict``: cancel of an ended job, replay of a running one."""


class NotReplayable(Conflict):
    """409 ``not_replayable``: the job never reached a batcher or is too old to replay."""


class TooLarge(InferqError):
    """413 ``too_large``: the body or the job exceeds a limit; retrying does not help."""


class UnsupportedMediaType(InferqError):
    """415 ``unsupported_media_type``: the server refused the body's content type."""


class IdempotencyKeyReused(InferqError):
    """422 ``idempotency_key_reused``: the key was used before with a different request."""


class RateLimited(InferqError):
    """429 ``rate_limited``: too many requests; ``retry_after`` says when to come back."""


class QueueFull(InferqError):
    """503 ``queue_full``: the model already has ``max_queued`` jobs waiting."""


class Unavailable(InferqError):
    """503 ``unavailable`` or ``not_ready``: JetStream or the results store is unreachable."""


class ServerError(InferqError):
    """500: an unexpected error, or a synchronous /v2 call whose job failed."""


class Timeout(InferqError):
    """504 ``timeout``: a synchronous /v2 call outlived the server's wait; the job runs on."""


class Expired(InferqError):
    """504 ``expired``: the job's deadline passed before it ran."""


class WaitTimeout(InferqError, TimeoutError):
    """``wait`` ran out before the job ended; ``job`` is its last record."""

    def __init__(self, message: str, job: Any) -> None:
        super().__init__(message)
        self.job = job


_BY_CODE: dict[str, type[InferqError]] = {
    "invalid": InvalidRequest,
    "unauthenticated": Unauthorized,
    "forbidden": Forbidden,
    "not_found": NotFound,
    "conflict": Conflict,
    "not_replayable": NotReplayable,
    "too_large": TooLarge,
    "unsupported_media_type": UnsupportedMediaType,
    "idempotency_key_reused": IdempotencyKeyReused,
    "rate_limited": RateLimited,
    "queue_full": QueueFull,
    "unavailable": Unavailable,
    "not_ready": Unavailable,
    "timeout": Timeout,
    "expired": Expired,
    "internal": ServerError,
}

_BY_STATUS: dict[int, type[InferqError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: TooLarge,
    415: UnsupportedMediaType,
    422: IdempotencyKeyReused,
    429: RateLimited,
    503: Unavailable,
    504: Timeout,
}


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: inferq never sends one


def from_response(status: int, headers: Mapping[str, str], body: bytes) -> InferqError:
    """Builds the exception for an error answer. ``headers`` has lower-case names."""
    code, message = "", ""
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        err = doc.get("error")
        if isinstance(err, dict):  # /v1: {"error": {"code", "message"}}
            code, message = str(err.get("code", "")), str(err.get("message", ""))
        elif isinstance(err, str):  # /v2: {"error": "...", "code": "..."}
            code, message = str(doc.get("code", "")), err
    if not message:
        message = body.decode("utf-8", "replace").strip() or f"HTTP {status}"
    cls = _BY_CODE.get(code)
    if cls is None:
        cls = _BY_STATUS.get(status, ServerError if status >= 500 else InferqError)
    return cls(
        message,
        status=status,
        code=code,
        retry_after=_retry_after(headers),
        request_id=headers.get("x-request-id", ""),
    )
