"""How long the client takes to turn a numpy array into a request body and an
answer back into an array, as JSON numbers and in the binary tensor data
extension's form (no server needed):

    cd clients/python && /usr/bin/python3 bench_tensors.py [MiB]
"""

from __future__ import annotations

import json
import sys
import time
from typing import Callable

import numpy as np

import inferq
from inferq.client import _encode
from inferq.records import InferResult, loads


def best(f: Callable[[], object], runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    mib = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    x = np.random.default_rng(0).standard_normal(mib * 262144).astype(np.float32).reshape(1, -1)
    json_body, _ = _encode({}, [inferq.Tensor.from_numpy("INPUT0", x)], False)
    answer = json.dumps({"outputs": [json.loads(json_body)["inputs"][0]]}).encode()
    meta = {"name": "INPUT0", "shape": [1, x.size], "datatype": "FP32", "parameters": {"binary_data_size": x.nbytes}}
    rows = [
        ("encode JSON", best(lambda: _encode({}, [inferq.Tensor.from_numpy("INPUT0", x)], False)), len(json_body)),
        ("encode binary", best(lambda: _encode({}, [inferq.Tensor.from_numpy("INPUT0", x)], True)), x.nbytes),
        ("decode JSON", best(lambda: InferResult.from_json(loads(answer)).as_numpy("INPUT0")), len(answer)),
        ("decode binary", best(lambda: InferResult.from_json({"outputs": [meta]}, x.tobytes()).as_numpy("INPUT0")), 0),
    ]
    print(f"FP32 tensor of {mib} MiB ({x.size} elements)")
    for name, seconds, size in rows:
        print(
            f"{name:14s} {seconds * 1000:9.1f} ms {x.nbytes / seconds / 2**20:9.1f} MiB/s"
            + (f"  body {size} B" if size else "")
        )


if __name__ == "__main__":
    main()
