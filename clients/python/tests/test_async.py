"""The AsyncClient's verbs against a live inferq dev, as test_client.py does
for the Client: concurrent submissions, the async event stream and its
resume after dropped connections, and the typed errors."""

from __future__ import annotations

import asyncio
import unittest

import numpy as np

import inferq
from tests.live import CuttingProxy, rng_arrays, server_url


class AsyncClientTest(unittest.IsolatedAsyncioTestCase):
    def setUp(self) -> None:
        self.c = inferq.AsyncClient(server_url(), max_concurrency=8)

    async def asyncTearDown(self) -> None:
        await self.c.close()

    async def test_concurrent_round_trips(self) -> None:
        arrays = rng_arrays(seed=11)

        async def one(a: np.ndarray) -> np.ndarray:
            job = await self.c.wait((await self.c.submit("identity", {"INPUT0": a})).id, 30)
            self.assertEqual(job.status, "succeeded", job.error)
            return job.outputs()["OUTPUT0"]

        outs = await asyncio.gather(*(one(a) for a in arrays.values()))
        for (name, a), got in zip(arrays.items(), outs):
            with self.subTest(dtype=name):
                self.assertEqual(got.dtype, a.dtype)
                if a.dtype == object:
                    self.assertEqual(got.tolist(), a.tolist())
                else:
                    self.assertEqual(got.tobytes(), a.tobytes())

    async def test_stream_resumes(self) -> None:
        n = 200
        acc = await self.c.submit("repeat", text="async", parameters={"max_tokens": n, "interval_ms": 2})
        proxy = CuttingProxy(server_url(), [400, 1300, 3000])
        self.addCleanup(proxy.close)
        seqs, text, last = [], "", None
        async with inferq.AsyncClient(proxy.url).stream(acc.id) as stream:
            async for ev in stream:
                if ev.event == "token":
                    seqs.append(ev.seq)
                    text += ev.text
                last = ev
            self.assertEqual(stream.reconnects, 3)
        self.assertEqual(seqs, list(range(1, n + 1)))
        self.assertEqual(text, ("async" * (n // 5 + 1))[:n])
        assert last is not None
        self.assertEqual(last.event, "result")

    async def test_verbs(self) -> None:
        job = await self.c.submit("identity", {"INPUT0": np.array([[3, 4]], np.int64)}, wait=20)
        self.assertEqual(job.status, "succeeded")
        self.assertEqual((await self.c.get(job.id)).status, "succeeded")
        replay = await self.c.replay(job.id)
        self.assertEqual(replay.attempt, 2)
        self.assertEqual((await self.c.wait(job.id, 30)).attempts, 2)
        long = await self.c.submit("repeat", text="z", parameters={"max_tokens": 4000, "interval_ms": 5})
        self.assertEqual(await self.c.cancel(long.id), "cancelling")
        self.assertEqual((await self.c.wait(long.id, 30)).status, "cancelled")
        self.assertIn("identity", [m.name for m in await self.c.models()])
        self.assertEqual((await self.c.model("repeat")).kind, "generate")
        self.assertGreaterEqual((await self.c.stats("identity")).live_workers, 1)
        self.assertGreaterEqual(await self.c.replay_model("flaky"), 0)
        res = await self.c.infer("identity", {"INPUT0": np.array([[True, False]])})
        self.assertEqual(res.as_numpy("OUTPUT0").tolist(), [[True, False]])

    async def test_errors(self) -> None:
        with self.assertRaises(inferq.NotFound):
            await self.c.get("0" * 26)
        with self.assertRaises(inferq.QueueFull):
            for _ in range(20):
                await self.c.submit("parked", {"INPUT0": np.zeros((1, 1), np.int8)})
                await asyncio.sleep(0.3)

    async def test_cancelling_the_reader_closes_the_stream(self) -> None:
        acc = await self.c.submit("repeat", text="q", parameters={"max_tokens": 4000, "interval_ms": 5})
        stream = self.c.stream(acc.id)

        async def read() -> None:
            async for _ in stream:
                pass

        task = asyncio.create_task(read())
        await asyncio.sleep(0.5)
        task.cancel()
        with self.assertRaises(asyncio.CancelledError):
            await task
        await self.c.cancel(acc.id)


if __name__ == "__main__":
    unittest.main()
