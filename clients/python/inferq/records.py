"""The API's answers as typed records: jobs, results, events, models."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .tensor import Tensor

if TYPE_CHECKING:
    import numpy as np

TERMINAL = ("succeeded", "failed", "cancelled", "expired")
"""The statuses a job ends in."""


def _parse_int(s: str) -> int | float:
    # The broker writes a negative zero float as "-0"; read as an int it
    # would lose its sign, so it stays a float (ints never have a sign on 0).
    return -0.0 if s == "-0" else int(s)


def loads(body: bytes | str) -> Any:
    """json.loads that keeps the sign of a float's ``-0``."""
    return json.loads(body, parse_int=_parse_int)


@dataclass
class ErrorInfo:
    """Why a job did not succeed: the API's error code and message."""

    code: str
    message: str


@dataclass
class InferResult:
    """An OIP inference response: the outputs of one job."""

    model_name: str
    model_version: str
    id: str
    outputs: list[Tensor]
    parameters: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, doc: dict[str, Any], binary: bytes = b"") -> "InferResult":
        """Reads the response; ``binary`` is what followed its JSON header, the
        bytes of the outputs that carry ``binary_data_size``, in order."""
        outputs: list[Tensor] = []
        off = 0
        for o in doc.get("outputs") or []:
            size = (o.get("parameters") or {}).get("binary_data_size")
            if size is None:
                outputs.append(Tensor.from_json(o))
                continue
            size = int(size)
            if size < 0 or off + size > len(binary):
                raise ValueError(f"output {o.get('name')!r}: binary_data_size {size} runs past the answer")
            outputs.append(Tensor.from_json(o, raw=binary[off : off + size]))
            off += size
        return cls(
            model_name=str(doc.get("model_name", "")),
            model_version=str(doc.get("model_version", "")),
            id=str(doc.get("id", "")),
            outputs=outputs,
            parameters=dict(doc.get("parameters") or {}),
        )

    def output(self, name: str) -> Tensor:
        """The output tensor called name (KeyError if there is none)."""
        for t in self.outputs:
            if t.name == name:
                return t
        raise KeyError(f"no output {name!r}; outputs are {[t.name for t in self.outputs]}")

    def as_numpy(self, name: str) -> "np.ndarray[Any, Any]":
        """The output called name as a numpy array."""
        return self.output(name).to_numpy()

    @property
    def text(self) -> str:
        """The generated text of a generate model (its ``text_output``)."""
        return b"".join(self.output("text_output").to_list()).decode("utf-8", "replace")


@dataclass
class Job:
    """A job as the API describes it: the 202 acceptance, or the record of
    ``GET /v1/jobs/{id}`` (which also has the result or the error).

    ``status_code`` is the HTTP status of the answer it came from: 202 for a
    new job, 200 for a record, for a ``Prefer: wait`` submission that ended in
    time, and for a repeated ``Idempotency-Key`` (the original job).
    """

    id: str
    model: str
    version: str
    status: str
    created_at: str = ""
    tenant: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    attempts: int = 0
    jobs_seq: int | None = None
    error: ErrorInfo | None = None
    result: InferResult | None = None
    links: dict[str, str] = field(default_factory=dict)
    stream_subject: str = ""
    status_code: int = 200
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, doc: dict[str, Any], binary: bytes = b"", status_code: int = 200) -> "Job":
        err = doc.get("error")
        res = doc.get("result")
        return cls(
            id=str(doc["id"]),
            model=str(doc.get("model", "")),
            version=str(doc.get("version", "")),
            status=str(doc.get("status", "")),
            created_at=str(doc.get("created_at", "")),
            tenant=str(doc.get("tenant", "")),
            started_at=doc.get("started_at"),
            finished_at=doc.get("finished_at"),
            attempts=int(doc.get("attempts", 0)),
            jobs_seq=doc.get("jobs_seq"),
            error=ErrorInfo(str(err.get("code", "")), str(err.get("message", ""))) if isinstance(err, dict) else None,
            result=InferResult.from_json(res, binary) if isinstance(res, dict) else None,
            links=dict(doc.get("links") or {}),
            stream_subject=str(doc.get("stream_subject", "")),
            status_code=status_code,
            raw=doc,
        )

    @property
    def done(self) -> bool:
        """Whether the job has ended (succeeded, failed, cancelled or expired)."""
        return self.status in TERMINAL

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    def outputs(self) -> dict[str, "np.ndarray[Any, Any]"]:
        """The result's outputs as numpy arrays by name ({} before the job succeeded)."""
        if self.result is None:
            return {}
        return {t.name: t.to_numpy() for t in self.result.outputs}

    @property
    def text(self) -> str:
        """The generated text of a generate model's finished job."""
        if self.result is None:
            raise ValueError(f"job {self.id} has no result (status {self.status})")
        return self.result.text


@dataclass
class Replay:
    """The answer to replaying one job: its id and new attempt."""

    id: str
    attempt: int
    status: str


@dataclass
class Event:
    """One Server-Sent Event of ``/v1/jobs/{id}/events``.

    ``event`` is ``status``, ``token``, ``result`` or ``error``; ``id`` the
    resume cursor ``<rank>-<seq>``; ``data`` the decoded JSON.
    """

    id: str
    event: str
    data: dict[str, Any]

    @property
    def final(self) -> bool:
        """Whether this is the last event of the stream (result or error)."""
        return self.event in ("result", "error")

    @property
    def text(self) -> str:
        """A token's text ("" for other events)."""
        return str(self.data.get("text", "")) if self.event == "token" else ""

    @property
    def seq(self) -> int:
        """A token's sequence number (0 for other events)."""
        return int(self.data.get("seq", 0)) if self.event == "token" else 0

    @property
    def status(self) -> str:
        """The job status the event reports."""
        if self.event == "result":
            return "succeeded"
        return str(self.data.get("status", ""))

    @property
    def job(self) -> Job | None:
        """The job record a ``result`` event carries."""
        return Job.from_json(self.data) if self.event == "result" else None

    @property
    def error(self) -> ErrorInfo | None:
        """The error an ``error`` event carries."""
        err = self.data.get("error") if self.event == "error" else None
        return ErrorInfo(str(err.get("code", "")), str(err.get("message", ""))) if isinstance(err, dict) else None


@dataclass
class ModelStats:
    """A model's live figures from ``GET /v1/models``."""

    queued: int = 0
    batches_pending: int = 0
    in_flight: int = 0
    live_workers: int = 0
    recent_batch_sizes: list[int] = field(default_factory=list)
    desired_replicas: int = 0
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> "ModelStats":
        def num(k: str) -> int:
            v = doc.get(k)
            return int(v) if isinstance(v, (int, float)) else 0

        return cls(
            queued=num("queued"),
            batches_pending=num("batches_pending"),
            in_flight=num("in_flight"),
            live_workers=num("live_workers"),
            recent_batch_sizes=[int(x) for x in doc.get("recent_batch_sizes") or []],
            desired_replicas=num("desired_replicas"),
            raw=doc,
        )


@dataclass
class Model:
    """A model's configuration and, when the server reports them, its stats."""

    name: str
    version: str
    kind: str
    test_model: bool
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    batching: dict[str, Any]
    queue: dict[str, Any]
    stats: ModelStats | None
    workers: int = 0
    """Workers serving the model (0 when no worker is configured for it)."""
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> "Model":
        st = doc.get("stats")
        return cls(
            name=str(doc.get("name", "")),
            version=str(doc.get("version", "")),
            kind=str(doc.get("kind", "")),
            test_model=bool(doc.get("test_model", False)),
            inputs=list(doc.get("inputs") or []),
            outputs=list(doc.get("outputs") or []),
            batching=dict(doc.get("batching") or {}),
            queue=dict(doc.get("queue") or {}),
            stats=ModelStats.from_json(st) if isinstance(st, dict) else None,
            workers=int(doc.get("workers") or 0),
            raw=doc,
        )
