"""Submit a job with a numpy array and wait for its result.

    INFERQ_URL=http://127.0.0.1:8080 PYTHONPATH=clients/python python3 examples/python/submit_and_wait.py
"""

import os

import numpy as np

import inferq


def main() -> None:
    client = inferq.Client(os.environ.get("INFERQ_URL", "http://127.0.0.1:8080"))
    image = np.linspace(0, 1, 12, dtype=np.float32).reshape(1, 12)  # a batch of one row
    job = client.submit("identity", {"INPUT0": image}, priority=0, deadline=30)
    print("queued", job.id)
    done = client.wait(job.id, timeout=60)
    out = done.outputs()["OUTPUT0"]
    print(done.status, out.dtype, out.shape, "equal:", bool((out == image).all()))


if __name__ == "__main__":
    main()
