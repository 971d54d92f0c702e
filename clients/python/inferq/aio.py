"""The asyncio client: the synchronous client's calls run in a pool of worker
threads the client owns, so it needs nothing beyond the standard library and
keeps one implementation of the wire protocol. The pool bounds how many calls
are in flight at once (a long-poll holds a thread while it waits)."""

from __future__ import annotations

import asyncio
import functools
import ssl
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, AsyncIterator, Callable, Mapping, Sequence, TypeVar

from .client import Client, Deadline, EventStream, Inputs
from .records import Event, InferResult, Job, Model, ModelStats, Replay

__all__ = ["AsyncClient", "AsyncEventStream"]

T = TypeVar("T")


class AsyncClient:
    """The asyncio form of :class:`inferq.Client`, with the same verbs and
    arguments; each verb is a coroutine and ``stream`` an async iterator.
    ``max_concurrency`` calls (and streams being read) run at once; more wait
    for a free thread. ``close()`` (or ``async with``) stops the threads."""

    def __init__(
        self,
        url: str = "http://127.0.0.1:8080",
        *,
        token: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        max_concurrency: int = 64,
    ) -> None:
        self.sync = Client(url, token=token, timeout=timeout, max_retries=max_retries, ssl_context=ssl_context)
        """The synchronous client underneath."""
        self._pool = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="inferq")

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stops the worker threads once the calls in flight have returned."""
        await asyncio.get_running_loop().run_in_executor(None, functools.partial(self._pool.shutdown, wait=True))

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    async def submit(
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
        """See :meth:`inferq.Client.submit`."""
        return await self._run(
            self.sync.submit,
            model,
            inputs,
            text=text,
            parameters=parameters,
            outputs=outputs,
            version=version,
            request_id=request_id,
            idempotency_key=idempotency_key,
            priority=priority,
            deadline=deadline,
            wait=wait,
            binary=binary,
        )

    async def get(self, job_id: str, *, wait: float | None = None, binary: bool = False) -> Job:
        """See :meth:`inferq.Client.get`."""
        return await self._run(self.sync.get, job_id, wait=wait, binary=binary)

    async def wait(self, job_id: str, timeout: float | None = None, *, binary: bool = False) -> Job:
        """See :meth:`inferq.Client.wait`."""
        return await self._run(self.sync.wait, job_id, timeout, binary=binary)

    def stream(
        self,
        job_id: str,
        *,
        last_event_id: str | None = None,
        max_reconnects: int = 5,
        read_timeout: float = 60.0,
    ) -> "AsyncEventStream":
        """See :meth:`inferq.Client.stream`; iterate with ``async for``."""
        return AsyncEventStream(
            self.sync.stream(
                job_id,
                last_event_id=last_event_id,
                max_reconnects=max_reconnects,
                read_timeout=read_timeout,
            ),
            self._pool,
        )

    async def cancel(self, job_id: str) -> str:
        """See :meth:`inferq.Client.cancel`."""
        return await self._run(self.sync.cancel, job_id)

    async def replay(self, job_id: str) -> Replay:
        """See :meth:`inferq.Client.replay`."""
        return await self._run(self.sync.replay, job_id)

    async def replay_model(
        self,
        model: str,
        *,
        since: datetime | str | None = None,
        limit: int | None = None,
    ) -> int:
        """See :meth:`inferq.Client.replay_model`."""
        return await self._run(self.sync.replay_model, model, since=since, limit=limit)

    async def models(self) -> list[Model]:
        """See :meth:`inferq.Client.models`."""
        return await self._run(self.sync.models)

    async def model(self, name: str) -> Model:
        """See :meth:`inferq.Client.model`."""
        return await self._run(self.sync.model, name)

    async def stats(self, name: str) -> ModelStats:
        """See :meth:`inferq.Client.stats`."""
        return await self._run(self.sync.stats, name)

    async def infer(
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
        """See :meth:`inferq.Client.infer`."""
        return await self._run(
            self.sync.infer,
            model,
            inputs,
            outputs=outputs,
            parameters=parameters,
            version=version,
            request_id=request_id,
            binary=binary,
        )


class AsyncEventStream(AsyncIterator[Event]):
    """``async for`` over a job's events, resuming after dropped connections
    as :class:`inferq.EventStream` does. Cancelling the task that iterates,
    or ``aclose()``, closes the connection."""

    def __init__(self, stream: EventStream, pool: ThreadPoolExecutor | None = None) -> None:
        self._stream = stream
        self._pool = pool

    @property
    def last_event_id(self) -> str | None:
        return self._stream.last_event_id

    @property
    def reconnects(self) -> int:
        return self._stream.reconnects

    def __aiter__(self) -> "AsyncEventStream":
        return self

    async def __aenter__(self) -> "AsyncEventStream":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Ends the stream and its connection."""
        self._stream.close()

    def _next(self) -> Event | None:
        # StopIteration cannot cross a Future, so the end is None here.
        return next(self._stream, None)

    async def __anext__(self) -> Event:
        try:
            ev = await asyncio.get_running_loop().run_in_executor(self._pool, self._next)
        except asyncio.CancelledError:
            self._stream.close()
            raise
        if ev is None:
            raise StopAsyncIteration
        return ev
