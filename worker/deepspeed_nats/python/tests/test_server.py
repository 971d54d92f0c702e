import json
import os
import queue
import struct
import threading
import unittest
from argparse import Namespace

from inferq_runner import inferq_pb2 as pb
from inferq_runner.framing import FrameWriter, read_frame
from inferq_runner.server import Server


def text_batch(batch_id, prompts, params, prefix="j"):
    data = b"".join(struct.pack("<I", len(p.encode())) + p.encode() for p in prompts)
    jobs = [
        pb.BatchJob(id="%s%d" % (prefix, i), row_start=i, row_end=i + 1, parameters_json=json.dumps(pr).encode())
        for i, pr in enumerate(params)
    ]
    return pb.Batch(
        id=batch_id,
        jobs=jobs,
        inputs=[pb.Tensor(name="text_input", datatype="BYTES", shape=[len(prompts), 1], data=data)],
    )


class Harness:
    """A Server on OS pipes, with frames read back on a thread."""

    def __init__(self, model):
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        self._to_runner = os.fdopen(in_w, "wb")
        self.to_runner = FrameWriter(self._to_runner)
        self._out = os.fdopen(out_r, "rb")
        self._runner_in, self._runner_out = os.fdopen(in_r, "rb"), os.fdopen(out_w, "wb")
        args = Namespace(model=model, device="cpu", dtype="fp32", deepspeed=False, tp_size=1)
        self.server = Server(self._runner_in, self._runner_out, args)
        self.frames: queue.Queue[pb.RunnerFrame | None] = queue.Queue()
        self.code = None
        self.ended = False
        threading.Thread(target=self._serve, daemon=True).start()
        threading.Thread(target=self._read, daemon=True).start()

    def _serve(self):
        self.code = self.server.serve()
        self._runner_out.close()

    def _read(self):
        while True:
            f = read_frame(self._out)
            self.frames.put(f)
            if f is None:
                self._out.close()
                return

    def send(self, **kw):
        self.to_runner.write(pb.RunnerFrame(**kw))

    def next(self, timeout=20):
        f = self.frames.get(timeout=timeout)
        self.ended = f is None
        return f

    def close(self):
        self._to_runner.close()
        while not self.ended:
            self.next()
        self._runner_in.close()


class ServerTest(unittest.TestCase):
    def test_generate_cancel_and_health(self):
        h = Harness("builtin:tiny-gpt")
        try:
            opts = b'{"max_batch_size": 8, "continuous": false}'  # static batching
            h.send(load=pb.Load(model="tiny-gpt", device="cpu", options_json=opts))
            f = h.next()
            self.assertEqual(f.WhichOneof("frame"), "ready", f)
            self.assertEqual((f.ready.device, f.ready.capacity, f.ready.continuous), ("cpu", 8, False))

            h.send(batch=text_batch("b1", ["Hi", "long"], [{"max_tokens": 5, "seed": 1}, {"max_tokens": 5000}]))
            texts: dict[str, str] = {}
            cancelled, health = False, False
            while True:
                f = h.next()
                kind = f.WhichOneof("frame")
                if kind == "token":
                    texts[f.token.job_id] = texts.get(f.token.job_id, "") + f.token.text
                    if f.token.job_id == "j1" and f.token.seq == 3 and not cancelled:
                        cancelled = True
                        h.send(health=pb.Health(time_unix_nano=77))  # answered mid-batch
                        h.send(cancel=pb.Cancel(batch_id="b1", job_id="j1"))
                elif kind == "health":
                    self.assertEqual(f.health.time_unix_nano, 77)
                    health = True
                else:
                    break
            self.assertEqual(kind, "result", f)
            self.assertTrue(health)
            j0, j1 = f.result.jobs
            self.assertEqual(j0.job_id, "j0")
            out = j0.outputs[0]
            self.assertEqual((out.name, out.datatype, list(out.shape)), ("text_output", "BYTES", [1, 1]))
            self.assertEqual(out.data[4:].decode(), texts["j0"])
            self.assertEqual(j1.error.code, "cancelled")

            h.send(batch=text_batch("b2", ["x"], [{"max_tokens": "many"}]))
            f = h.next()
            self.assertEqual(f.result.jobs[0].error.code, "invalid_input")
        finally:
            h.close()
        self.assertEqual(h.code, 0)

    def test_continuous_batches_join_and_end_per_job(self):
        h = Harness("builtin:tiny-gpt")
        try:
            h.send(
                load=pb.Load(model="tiny-gpt", device="cpu", options_json=b'{"max_num_seqs": 6, "join_every_steps": 1}')
            )
            f = h.next()
            self.assertEqual((f.ready.capacity, f.ready.continuous), (6, True))
            assert h.server.engine is not None
            self.assertEqual(h.server.engine.join_every_steps, 1)  # batching.join_every_steps from the agent
            h.send(batch=text_batch("b1", ["long one", "short"], [{"max_tokens": 60}, {"max_tokens": 3}]))
            texts: dict[tuple[str, str], str] = {}
            seqs: dict[tuple[str, str], list[int]] = {}
            results: list[tuple[str, str, bool]] = []
            final: dict[str, pb.BatchResult] = {}
            sent_b2 = False
            while len(final) < 2:
                f = h.next()
                kind = f.WhichOneof("frame")
                if kind == "token":
                    key = ("b2" if f.token.job_id.startswith("k") else "b1", f.token.job_id)
                    texts[key] = texts.get(key, "") + f.token.text
                    seqs.setdefault(key, []).append(f.token.seq)
                    if not sent_b2 and f.token.job_id == "j0" and f.token.seq == 10:
                        sent_b2 = True
                        # Joins the running loop: b1's j0 is still decoding.
                        h.send(batch=text_batch("b2", ["x", "y"], [{"max_tokens": "bad"}, {"max_tokens": 4}], "k"))
                elif kind == "result":
                    for jr in f.result.jobs if f.result.partial else []:
                        results.append((f.result.batch_id, jr.job_id, True))
                    if not f.result.partial:
                        final[f.result.batch_id] = f.result
                else:
                    self.fail("unexpected frame %s" % f)
            # b1's short job ended by itself, long before its neighbour.
            self.assertEqual(results[0], ("b1", "j1", True))
            self.assertEqual([j.job_id for j in final["b1"].jobs], ["j0", "j1"])
            self.assertEqual(final["b1"].jobs[0].outputs[0].data[4:].decode(), texts[("b1", "j0")])
            for key, got in seqs.items():
                self.assertEqual(got, list(range(1, len(got) + 1)), key)
            self.assertEqual(final["b2"].jobs[1].outputs[0].data[4:].decode(), texts[("b2", "k1")])
            b2 = final["b2"].jobs
            self.assertEqual(b2[0].error.code, "invalid_input")
            self.assertEqual(len(b2[1].outputs), 1)
            # b2 ended while b1 still decoded: its final result came first.
            self.assertEqual(list(final), ["b2", "b1"])
        finally:
            h.close()
        self.assertEqual(h.code, 0)

    def test_tensor_model(self):
        import torch

        h = Harness("builtin:tiny-mlp")
        try:
            h.send(load=pb.Load(model="mlp"))
            self.assertEqual(h.next().WhichOneof("frame"), "ready")
            x = torch.arange(3 * 16, dtype=torch.float32).reshape(3, 16) / 10
            h.send(
                batch=pb.Batch(
                    id="t",
                    jobs=[pb.BatchJob(id="a", row_start=0, row_end=1), pb.BatchJob(id="b", row_start=1, row_end=3)],
                    inputs=[pb.Tensor(name="INPUT0", datatype="FP32", shape=[3, 16], data=x.numpy().tobytes())],
                )
            )
            f = h.next()
            a, b = f.result.jobs
            self.assertEqual((list(a.outputs[0].shape), list(b.outputs[0].shape)), ([1, 4], [2, 4]))
            self.assertEqual(a.outputs[0].name, "OUTPUT0")
            h.send(
                batch=pb.Batch(
                    id="bad",
                    jobs=[pb.BatchJob(id="a", row_start=0, row_end=1)],
                    inputs=[pb.Tensor(name="INPUT0", datatype="INT32", shape=[1, 1], data=b"\0" * 4)],
                )
            )
            f = h.next()
            self.assertEqual(f.WhichOneof("frame"), "error")
            self.assertFalse(f.error.error.retryable)
        finally:
            h.close()

    def test_load_failure(self):
        h = Harness("builtin:nope")
        try:
            h.send(load=pb.Load(model="x"))
            f = h.next()
            self.assertEqual(f.error.error.code, "load_failed")
            self.assertIsNone(h.next())
        finally:
            h.close()
        self.assertEqual(h.code, 1)


if __name__ == "__main__":
    unittest.main()
