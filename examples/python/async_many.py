"""Submit many jobs at once with the asyncio client, backing off when the
queue is full, and gather their results.

    INFERQ_URL=http://127.0.0.1:8080 PYTHONPATH=clients/python python3 examples/python/async_many.py
"""

import asyncio
import os

import numpy as np

import inferq


async def one(client: inferq.AsyncClient, k: int) -> int:
    job = await client.submit(
        "simple",
        {"INPUT0": np.full((1, 16), k, np.int32), "INPUT1": np.ones((1, 16), np.int32)},
    )
    done = await client.wait(job.id, timeout=60)
    return int(done.outputs()["OUTPUT0"][0, 0])  # k + 1


async def main() -> None:
    # max_retries: a QueueFull (503) is retried after the server's Retry-After.
    # max_concurrency: how many calls (here long-polls) are in flight at once.
    async with inferq.AsyncClient(
        os.environ.get("INFERQ_URL", "http://127.0.0.1:8080"), max_retries=5, max_concurrency=20
    ) as client:
        sums = await asyncio.gather(*(one(client, k) for k in range(20)))
    print("sums", sums)


if __name__ == "__main__":
    asyncio.run(main())
