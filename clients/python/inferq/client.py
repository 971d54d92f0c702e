"""The synchronous client, over http.client alone."""

from __future__ import annotations

import http.client
import json
import math
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator, Mapping, Sequence, Union

from . import errors
from .records import Event, InferResult, Job, Model, ModelStats, Replay, loads
from .tensor import Tensor

__all__ = ["Client", "EventStream", "Inputs", "Deadline"]

Inputs = Union[Sequence[Tensor], Mapping[str, Any]]
"""Inputs of a job: Tensors, or a mapping of input name to Tensor or numpy array."""

Deadline = Union[float, int, timedelta, datetime]
"""A job's deadline: seconds from now, a timedelta, or an aware datetime."""

_RETRYABLE = (errors.QueueFull, errors.RateLimited, errors.Unavailable)

# The content type and header of the KServe v2 binary tensor data extension.
_OCTET = "application/octet-stream"
_HEADER_LEN = "Inference-Header-Content-Length"


@dataclass
class _Answer:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    def parts(self) -> tuple[Any, bytes]:
        """The JSON document of the answer and the binary tensor bytes after it."""
        n = self.headers.get(_HEADER_LEN.lower())
        if n is None:
            return loads(self.body), b""
        try:
            size = int(n)
        except ValueError:
            raise errors.InferqError(f"bad {_HEADER_LEN} {n!r} in the answer", status=self.status) from None
        if size < 0 or size > len(self.body):
            raise errors.InferqError(f"{_HEADER_LEN} {size} exceeds the answer's {len(self.body)} bytes")
        return loads(self.body[:size]), self.body[size:]


class _HTTP:
    """One base URL, credential and timeout; a new connection per request, so
    that a Client may be shared by threads."""

    def __init__(
        self,
        url: str,
        token: str | None,
        timeout: float,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"url {url!r}: want http://host[:port] or https://host[:port]")
        self.scheme, self.host, self.port = u.scheme, u.hostname, u.port
        self.base = u.path.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.ssl_context = ssl_context

    def connect(self, timeout: float | None) -> http.client.HTTPConnection:
        t = self.timeout if timeout is None else timeout
        if self.scheme == "https":
            return http.client.HTTPSConnection(self.host, self.port, timeout=t, context=self.ssl_context)
        return http.client.HTTPConnection(self.host, self.port, timeout=t)

    def headers(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        h = {"User-Agent": "inferq-python", "Accept": "application/json"}
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        h.update(extra or {})
        return h

    def send(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        conn = self.connect(timeout)
        try:
            conn.request(method, self.base + path, body=body, headers=self.headers(headers))
            return conn, conn.getresponse()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise errors.TransportError(f"{method} {path}: {e}") from e

    def call(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        ok: tuple[int, ...] = (200,),
    ) -> _Answer:
        """Sends a request and reads the whole answer; an answer not in ok
        raises the typed error of its code."""
        conn, resp = self.send(method, path, body, headers, timeout)
        try:
            data = resp.read()
        except (OSError, http.client.HTTPException) as e:
            raise errors.TransportError(f"{method} {path}: reading the answer: {e}") from e
        finally:
            conn.close()
        ans = _Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
        if ans.status not in ok:
            raise errors.from_response(ans.status, ans.headers, ans.body)
        return ans


def _quote(s: str) -> str:
    return urllib.parse.quote(s, safe="")


def _timeout_ms(deadline: Deadline) -> int:
    if isinstance(deadline, datetime):
        if deadline.tzinfo is None:
            raise ValueError("deadline: give an aware datetime (with tzinfo)")
        seconds = (deadline - datetime.now(timezone.utc)).total_seconds()
    elif isinstance(deadline, timedelta):
        seconds = deadline.total_seconds()
    else:
        seconds = float(deadline)
    return max(1, math.ceil(seconds * 1000))


def _tensors(inputs: Inputs) -> list[Tensor]:
    if isinstance(inputs, Mapping):
        out = []
        for name, v in inputs.items():
            if isinstance(v, Tensor):
                if v.name != name:
                    raise ValueError(f"input {name!r} is a Tensor named {v.name!r}")
                out.append(v)
            else:
                out.append(Tensor.from_numpy(name, v))
        return out
    return list(inputs)


def _encode(doc: dict[str, Any], tensors: list[Tensor], binary: bool) -> tuple[bytes, dict[str, str]]:
    """The request body and its headers: JSON, or the binary extension's JSON
    header followed by each input's raw bytes."""
    if not binary:
        doc["inputs"] = [t.to_json() for t in tensors]
        return json.dumps(doc, allow_nan=False).encode(), {"Content-Type": "application/json"}
    raws, inputs = [], []
    for t in tensors:
        raw = t.to_bytes()
        params = dict(t.parameters)
        params["binary_data_size"] = len(raw)
        inputs.append(
            {
                "name": t.name,
                "shape": t.shape,
                "datatype": t.datatype,
                "parameters": params,
            }
        )
        raws.append(raw)
    doc["inputs"] = inputs
    header = json.dumps(doc, allow_nan=False).encode()
    hdr = {
        "Content-Type": _OCTET,
        _HEADER_LEN: str(len(header)),
        "Accept": _OCTET,
    }
    return header + b"".join(raws), hdr


class Client:
    """A client of one inferq ingress.

    ``url`` is the API's base URL (``http://127.0.0.1:8080``), ``token`` a
    bearer token or API key, ``timeout`` the seconds any one request may take
    (long-polls add their wait). ``max_retries`` resubmits a job refused with
    QueueFull, RateLimited or Unavailable that many times, after the server's
    ``Retry-After`` (or a short backoff); 0 raises at once.

    Every method is safe to call from several threads.
    """

    def __init__(
        self,
        url: str = "http://127.0.0.1:8080",
        *,
        token: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._http = _HTTP(url, token, timeout, ssl_context)
        self.max_retries = max_retries

    # -- jobs --------------------------------------------------------------

    def submit(
        self,
        model: str,
        inputs: Inputs | None = None,
        *,
        text: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        outputs: Sequence[str] | None = None,
        version: str | None = None,
        request_id: str | None = None,
        idempotency_key: str | None = None,
        priority: int | None = None,
        deadline: Deadline | None = None,
        wait: int | None = None,
        binary: bool = False,
    ) -> Job:
        """Queues a job and returns it as accepted (status ``queued``).

        Give ``inputs`` (Tensors, or input name -> numpy array), or ``text``
        for a generate model's shorthand (``text_input``). ``priority`` (0
        first, 2 last) and ``deadline`` (the job expires if not batched by
        then) travel as the parameters ``priority`` and ``timeout_ms``.
        ``idempotency_key`` makes a retried submission return the original job.
        ``wait`` (whole seconds, ``Prefer: wait``) waits that long for the job
        to end and then returns its record. ``binary`` sends the inputs in the
        binary tensor data extension's form (exact for NaN, infinities and
        non-UTF-8 bytes) and asks for binary outputs in a waited answer.
        """
        if (inputs is None) == (text is None):
            raise ValueError("submit: give inputs or text, not both")
        params = dict(parameters or {})
        if priority is not None:
            params["priority"] = int(priority)
        if deadline is not None:
            params["timeout_ms"] = _timeout_ms(deadline)
        doc: dict[str, Any] = {}
        if request_id is not None:
            doc["id"] = request_id
        if text is not None:
            doc["text_input"] = text
            if params:
                doc["parameters"] = params
            body, hdr = json.dumps(doc).encode(), {"Content-Type": "application/json"}
        else:
            assert inputs is not None
            if params:
                doc["parameters"] = params
            if outputs:
                doc["outputs"] = [{"name": o} for o in outputs]
            body, hdr = _encode(doc, _tensors(inputs), binary)
        if idempotency_key is not None:
            hdr["Idempotency-Key"] = idempotency_key
        timeout = None
        if wait is not None:
            hdr["Prefer"] = f"wait={int(wait)}"
            timeout = self._http.timeout + int(wait)
        path = "/v1/models/" + _quote(model)
        if version is not None:
            path += "/versions/" + _quote(version)
        path += "/jobs"
        for attempt in range(self.max_retries + 1):
            try:
                ans = self._http.call("POST", path, body, hdr, timeout, ok=(200, 202))
                break
            except _RETRYABLE as e:
                if attempt >= self.max_retries:
                    raise
                time.sleep(e.retry_after if e.retry_after is not None else min(0.25 * 2**attempt, 5.0))
        doc, rest = ans.parts()
        return Job.from_json(doc, rest, status_code=ans.status)

    def get(self, job_id: str, *, wait: float | None = None, binary: bool = False) -> Job:
        """The job's record; ``wait`` long-polls up to that many seconds (the
        server caps it, 60 s by default) for the job to end. ``binary`` asks
        for the result's outputs in the binary extension's form."""
        path = "/v1/jobs/" + _quote(job_id)
        timeout = None
        if wait is not None and wait > 0:
            path += f"?wait={max(1, round(wait * 1000))}ms"
            timeout = self._http.timeout + wait
        # Errors still come as JSON; a binary answer says so in its header.
        hdr = {"Accept": _OCTET} if binary else None
        ans = self._http.call("GET", path, headers=hdr, timeout=timeout)
        doc, rest = ans.parts()
        return Job.from_json(doc, rest)

    def wait(self, job_id: str, timeout: float | None = None, *, binary: bool = False) -> Job:
        """Long-polls until the job ends and returns its record. With
        ``timeout`` (seconds) it raises WaitTimeout, carrying the last
        record, if the job has not ended by then."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = 60.0 if deadline is None else min(60.0, deadline - time.monotonic())
            job = self.get(job_id, wait=left if left > 0 else None, binary=binary)
            if job.done:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise errors.WaitTimeout(f"job {job_id} still {job.status} after {timeout}s", job)

    def stream(
        self,
        job_id: str,
        *,
        last_event_id: str | None = None,
        max_reconnects: int = 5,
        read_timeout: float = 60.0,
    ) -> "EventStream":
        """The job's events (statuses, tokens, then its result or error) as an
        iterator. A dropped connection is resumed with ``Last-Event-ID``, so
        no event is lost or repeated; ``max_reconnects`` failed reconnects in
        a row raise TransportError. ``last_event_id`` starts after an event
        seen before. The server sends a keepalive every 15 s; ``read_timeout``
        seconds of silence count as a dropped connection."""
        return EventStream(self._http, job_id, last_event_id, max_reconnects, read_timeout)

    def cancel(self, job_id: str) -> str:
        """Cancels a job that has not ended and returns the answer's status
        (``cancelling``); an ended job raises Conflict."""
        ans = self._http.call("DELETE", "/v1/jobs/" + _quote(job_id), ok=(202,))
        return str(ans.parts()[0].get("status", ""))

    def replay(self, job_id: str) -> Replay:
        """Runs an ended job again as a new attempt (scope ``admin``)."""
        ans = self._http.call("POST", "/v1/jobs/" + _quote(job_id) + "/replay", ok=(200, 202))
        doc = ans.parts()[0]
        return Replay(
            id=str(doc.get("id", job_id)),
            attempt=int(doc.get("attempt", 0)),
            status=str(doc.get("status", "")),
        )

    def replay_model(
        self,
        model: str,
        *,
        since: datetime | str | None = None,
        limit: int | None = None,
    ) -> int:
        """Replays the model's failed jobs (found through their dead letters),
        those failed since ``since`` and at most ``limit`` (server default
        100); returns how many went again (scope ``admin``)."""
        req: dict[str, Any] = {"status": "failed"}
        if since is not None:
            req["since"] = since.isoformat() if isinstance(since, datetime) else since
        if limit is not None:
            req["limit"] = int(limit)
        ans = self._http.call(
            "POST",
            "/v1/models/" + _quote(model) + "/replay",
            json.dumps(req).encode(),
            {"Content-Type": "application/json"},
        )
        return int(ans.parts()[0].get("count", 0))

    # -- models ------------------------------------------------------------

    def models(self) -> list[Model]:
        """Every model's configuration and live stats."""
        doc = self._http.call("GET", "/v1/models").parts()[0]
        return [Model.from_json(m) for m in doc.get("models") or []]

    def model(self, name: str) -> Model:
        """One model's configuration and live stats (NotFound if unknown)."""
        return Model.from_json(self._http.call("GET", "/v1/models/" + _quote(name)).parts()[0])

    def stats(self, name: str) -> ModelStats:
        """One model's live stats: queued jobs, pending batches, workers."""
        m = self.model(name)
        return m.stats if m.stats is not None else ModelStats()

    # -- OIP ---------------------------------------------------------------

    def infer(
        self,
        model: str,
        inputs: Inputs,
        *,
        outputs: Sequence[str] | None = None,
        parameters: Mapping[str, Any] | None = None,
        version: str | None = None,
        request_id: str | None = None,
        binary: bool = False,
    ) -> InferResult:
        """Runs one job synchronously through the OIP endpoint
        ``/v2/models/{model}/infer`` and returns its outputs. ``binary`` sends
        inputs and asks for outputs in the binary tensor data extension."""
        doc: dict[str, Any] = {}
        if request_id is not None:
            doc["id"] = request_id
        params = dict(parameters or {})
        if binary:
            params["binary_data_output"] = True
        if params:
            doc["parameters"] = params
        if outputs:
            doc["outputs"] = [{"name": o} for o in outputs]
        body, hdr = _encode(doc, _tensors(inputs), binary)
        path = "/v2/models/" + _quote(model)
        if version is not None:
            path += "/versions/" + _quote(version)
        ans = self._http.call("POST", path + "/infer", body, hdr, self._http.timeout + 60)
        doc, rest = ans.parts()
        return InferResult.from_json(doc, rest)


def _cursor(event_id: str) -> tuple[int, int] | None:
    rank, sep, seq = event_id.partition("-")
    if not sep or not rank.isdigit() or not seq.isdigit():
        return None
    return int(rank), int(seq)


class EventStream(Iterator[Event]):
    """An iterator over a job's Server-Sent Events that reconnects with
    ``Last-Event-ID`` after a dropped connection. It ends after the result or
    error event. ``close()`` (also from another thread) ends it early."""

    def __init__(
        self,
        http_: _HTTP,
        job_id: str,
        last_event_id: str | None,
        max_reconnects: int,
        read_timeout: float,
    ) -> None:
        self._http = http_
        self._path = "/v1/jobs/" + _quote(job_id) + "/events"
        self.last_event_id = last_event_id
        self.reconnects = 0
        """How many times the stream was resumed after a dropped connection."""
        self._max = max_reconnects
        self._timeout = read_timeout
        self._conn: http.client.HTTPConnection | None = None
        self._resp: http.client.HTTPResponse | None = None
        self._failures = 0
        self._done = False
        self._lock = threading.Lock()

    def __iter__(self) -> "EventStream":
        return self

    def __enter__(self) -> "EventStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Ends the stream and its connection."""
        with self._lock:
            self._done = True
            conn = self._conn
        if conn is not None and conn.sock is not None:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)  # wakes a reader blocked in another thread
            except OSError:
                pass
            conn.close()

    def _drop(self, why: BaseException) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn, self._resp = None, None
        if self._done:
            return
        self._failures += 1
        if self._failures > self._max:
            raise errors.TransportError(f"event stream {self._path}: gave up after {self._max} reconnects: {why}")
        self.reconnects += 1
        time.sleep(min(0.05 * 2 ** (self._failures - 1), 2.0))

    def _connect(self) -> None:
        hdr = {"Accept": "text/event-stream"}
        if self.last_event_id:
            hdr["Last-Event-ID"] = self.last_event_id
        conn, resp = self._http.send("GET", self._path, headers=hdr, timeout=self._timeout)
        if resp.status != 200:
            try:
                body = resp.read()
            finally:
                conn.close()
            raise errors.from_response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, body)
        with self._lock:
            if self._done:
                conn.close()
                raise StopIteration
            self._conn, self._resp = conn, resp

    def _read_event(self) -> Event | None:
        """The next complete event, or None at the end of the connection; an
        event cut off by a dropped connection is never returned."""
        assert self._resp is not None
        ev_id, ev_name, data = "", "", list[str]()
        while True:
            line = self._resp.readline()
            if not line or not line.endswith(b"\n"):
                return None
            text = line.decode("utf-8").rstrip("\r\n")
            if not text:
                if ev_name or data:
                    return Event(
                        ev_id,
                        ev_name or "message",
                        loads("\n".join(data)) if data else {},
                    )
                continue
            if text.startswith(":"):
                continue  # keepalive comment
            name, _, value = text.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "id":
                ev_id = value
            elif name == "event":
                ev_name = value
            elif name == "data":
                data.append(value)

    def __next__(self) -> Event:
        while True:
            if self._done:
                raise StopIteration
            try:
                if self._resp is None:
                    self._connect()
                ev = self._read_event()
            except errors.TransportError as e:
                self._drop(e)
                continue
            except (OSError, http.client.HTTPException, ValueError) as e:
                if self._done:
                    raise StopIteration from None
                self._drop(e)
                continue
            except Exception:
                if self._done:  # closed from another thread mid-read
                    raise StopIteration from None
                raise
            if ev is None:
                self._drop(EOFError("connection closed before the job's last event"))
                continue
            last = _cursor(self.last_event_id or "")
            cur = _cursor(ev.id)
            if last is not None and cur is not None and cur <= last:
                continue  # already delivered before a reconnect
            self.last_event_id = ev.id or self.last_event_id
            self._failures = 0
            if ev.final:
                self.close()
            return ev
