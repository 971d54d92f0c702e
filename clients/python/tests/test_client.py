"""Every verb of the synchronous Client against a live inferq dev (see
live.py and inferq.yaml): submit, get, wait, stream, cancel, replay, models,
stats and infer, the typed errors, and numpy round trips through identity."""

from __future__ import annotations

import time
import unittest
import uuid
from datetime import datetime, timedelta, timezone

import numpy as np

import inferq
from tests.live import CuttingProxy, rng_arrays, server_url


def plug_idle(c: inferq.Client) -> None:
    """Makes sure a batch of idle waits undelivered. With no worker, the
    batcher then holds idle's later jobs in its buffer (it sends no second
    batch while one waits), where their deadlines run out; a job that went
    into that batch would wait for ever instead."""
    c.submit("idle", {"INPUT0": np.zeros((1, 1), np.int8)})
    deadline = time.monotonic() + 20
    while c.stats("idle").batches_pending < 1:
        if time.monotonic() > deadline:
            raise AssertionError("no batch of idle waits after 20s")
        time.sleep(0.1)


class ClientTest(unittest.TestCase):
    def setUp(self) -> None:
        self.c = inferq.Client(server_url(), timeout=30)

    def test_every_datatype_round_trips_bit_for_bit(self) -> None:
        for name, a in rng_arrays().items():
            with self.subTest(dtype=name):
                job = self.c.wait(self.c.submit("identity", {"INPUT0": a}).id, 30)
                self.assertEqual(job.status, "succeeded", job.error)
                assert job.result is not None
                out = job.result.output("OUTPUT0")
                self.assertEqual(out.shape, list(a.shape))
                got = out.to_numpy()
                self.assertEqual(got.dtype, a.dtype)
                self.assertEqual(got.shape, a.shape)
                if a.dtype == object:
                    self.assertEqual(got.tolist(), a.tolist())
                else:
                    self.assertEqual(got.tobytes(), a.tobytes(), f"{name}: {got} != {a}")

    def test_submit_get_wait(self) -> None:
        a = np.arange(16, dtype=np.int32).reshape(1, 16)
        acc = self.c.submit(
            "simple",
            [
                inferq.Tensor("INPUT0", [1, 16], "INT32", a.tolist()),
                inferq.Tensor.from_numpy("INPUT1", a),
            ],
            request_id="req-1",
        )
        self.assertEqual((acc.status, acc.status_code, acc.model), ("queued", 202, "simple"))
        self.assertTrue(acc.links["events"].endswith("/events"))
        self.assertIn(acc.id, acc.stream_subject)
        job = self.c.wait(acc.id, 30)
        self.assertTrue(job.succeeded)
        assert job.result is not None
        self.assertEqual(job.result.id, "req-1")
        np.testing.assert_array_equal(job.outputs()["OUTPUT0"], a * 2)
        np.testing.assert_array_equal(job.outputs()["OUTPUT1"], a * 0)
        self.assertEqual(self.c.get(acc.id).status, "succeeded")
        self.assertEqual(self.c.get(acc.id, wait=1).attempts, 1)

    def test_prefer_wait_and_priority(self) -> None:
        job = self.c.submit(
            "identity",
            {"INPUT0": np.array([[1.5, 2.5]], np.float64)},
            wait=20,
            priority=0,
        )
        self.assertEqual((job.status_code, job.status), (200, "succeeded"))
        np.testing.assert_array_equal(job.outputs()["OUTPUT0"], [[1.5, 2.5]])

    def test_generate_shorthand_and_text(self) -> None:
        job = self.c.wait(self.c.submit("repeat", text="abc", parameters={"max_tokens": 7}).id, 30)
        self.assertEqual(job.text, "abcabca")

    def test_idempotency_key(self) -> None:
        key = str(uuid.uuid4())
        body = {"INPUT0": np.array([[1, 2, 3]], np.int16)}
        first = self.c.submit("identity", body, idempotency_key=key)
        again = self.c.submit("identity", body, idempotency_key=key)
        self.assertEqual((first.status_code, again.status_code, again.id), (202, 200, first.id))
        with self.assertRaises(inferq.IdempotencyKeyReused) as cm:
            self.c.submit("identity", {"INPUT0": np.array([[9]], np.int16)}, idempotency_key=key)
        self.assertEqual((cm.exception.status, cm.exception.code), (422, "idempotency_key_reused"))

    def test_deadline_expires_a_waiting_job(self) -> None:
        plug_idle(self.c)
        deadlines: list[inferq.Deadline] = [
            0.3,
            timedelta(milliseconds=300),
            datetime.now(timezone.utc) + timedelta(seconds=0.3),
        ]
        for deadline in deadlines:
            with self.subTest(deadline=deadline):
                job = self.c.wait(
                    self.c.submit("idle", {"INPUT0": np.zeros((1, 1), np.int8)}, deadline=deadline).id,
                    30,
                )
                self.assertEqual(job.status, "expired")
                assert job.error is not None
                self.assertEqual(job.error.code, "expired")

    def test_wait_timeout(self) -> None:
        plug_idle(self.c)
        acc = self.c.submit("idle", {"INPUT0": np.zeros((1, 1), np.int8)})
        start = time.monotonic()
        with self.assertRaises(inferq.WaitTimeout) as cm:
            self.c.wait(acc.id, 1.0)
        self.assertLess(time.monotonic() - start, 10)
        self.assertEqual(cm.exception.job.status, "queued")
        self.assertEqual(self.c.cancel(acc.id), "cancelling")

    def test_stream_tokens(self) -> None:
        acc = self.c.submit("repeat", text="hey", parameters={"max_tokens": 20})
        events = list(self.c.stream(acc.id))
        tokens = [e for e in events if e.event == "token"]
        self.assertEqual([e.seq for e in tokens], list(range(1, 21)))
        self.assertEqual("".join(e.text for e in tokens), ("hey" * 7)[:20])
        self.assertEqual(events[-1].event, "result")
        job = events[-1].job
        assert job is not None
        self.assertEqual((job.id, job.status), (acc.id, "succeeded"))
        # Starting after an event seen before gives only what came after it.
        rest = list(self.c.stream(acc.id, last_event_id=tokens[9].id))
        self.assertEqual([e.seq for e in rest if e.event == "token"], list(range(11, 21)))

    def test_dropped_stream_resumes_without_loss_or_repeat(self) -> None:
        n = 300
        acc = self.c.submit("repeat", text="inferq!", parameters={"max_tokens": n, "interval_ms": 2})
        # Each cut lands inside the headers, inside an event or between events.
        proxy = CuttingProxy(server_url(), [150, 900, 2222, 4097])
        self.addCleanup(proxy.close)
        stream = inferq.Client(proxy.url).stream(acc.id)
        events = list(stream)
        self.assertEqual(stream.reconnects, 4)
        self.assertGreaterEqual(proxy.connections, 5)
        seqs = [e.seq for e in events if e.event == "token"]
        self.assertEqual(seqs, list(range(1, n + 1)), "lost or repeated tokens")
        text = "".join(e.text for e in events if e.event == "token")
        self.assertEqual(text, ("inferq!" * (n // 7 + 1))[:n])
        ids = [e.id for e in events]
        self.assertEqual(len(ids), len(set(ids)), "repeated events")
        self.assertEqual(events[-1].event, "result")

    def test_stream_of_a_failed_job_ends_with_error(self) -> None:
        acc = self.c.submit("flaky", {"INPUT0": np.array([[13, 0]], np.int32)})
        events = list(self.c.stream(acc.id))
        self.assertEqual(events[-1].event, "error")
        err = events[-1].error
        assert err is not None
        self.assertTrue(err.code)

    def test_cancel(self) -> None:
        acc = self.c.submit("repeat", text="x", parameters={"max_tokens": 4000, "interval_ms": 5})
        self.assertEqual(self.c.cancel(acc.id), "cancelling")
        job = self.c.wait(acc.id, 30)
        self.assertEqual(job.status, "cancelled")
        with self.assertRaises(inferq.Conflict):
            self.c.cancel(acc.id)

    def test_replay(self) -> None:
        acc = self.c.submit("identity", {"INPUT0": np.array([[4, 5]], np.uint8)})
        self.c.wait(acc.id, 30)
        r = self.c.replay(acc.id)
        self.assertEqual((r.id, r.attempt, r.status), (acc.id, 2, "queued"))
        job = self.c.wait(acc.id, 30)
        self.assertEqual((job.status, job.attempts), ("succeeded", 2))
        plug_idle(self.c)
        queued = self.c.submit("idle", {"INPUT0": np.zeros((1, 1), np.int8)})
        with self.assertRaises(inferq.Conflict):
            self.c.replay(queued.id)  # not ended yet
        self.c.cancel(queued.id)

    def test_replay_model(self) -> None:
        since = datetime.now(timezone.utc) - timedelta(seconds=1)
        acc = self.c.submit("flaky", {"INPUT0": np.array([[13, 1]], np.int32)})
        self.assertEqual(self.c.wait(acc.id, 30).status, "failed")
        self.assertGreaterEqual(self.c.replay_model("flaky", since=since, limit=1000), 1)
        inferq_time = datetime.now(timezone.utc) + timedelta(hours=1)
        self.assertEqual(self.c.replay_model("flaky", since=inferq_time), 0)

    def test_models_and_stats(self) -> None:
        models = {m.name: m for m in self.c.models()}
        self.assertTrue({"identity", "repeat", "parked", "idle"} <= set(models))
        self.assertTrue(models["identity"].test_model)
        self.assertEqual(models["repeat"].kind, "generate")
        self.assertEqual(models["parked"].workers, 0)
        self.assertEqual(models["parked"].queue.get("max_queued"), 2)
        m = self.c.model("identity")
        self.assertEqual((m.name, m.version), ("identity", "1"))
        st = self.c.stats("identity")
        self.assertGreaterEqual(st.live_workers, 1)
        self.c.wait(self.c.submit("identity", {"INPUT0": np.zeros((1, 1), np.int8)}).id, 30)
        self.assertTrue(self.c.stats("identity").recent_batch_sizes)

    def test_infer(self) -> None:
        a = np.array([[1.25, -3.5, 7]], np.float32)
        res = self.c.infer("identity", {"INPUT0": a}, request_id="sync-1")
        self.assertEqual((res.model_name, res.id), ("identity", "sync-1"))
        self.assertEqual(res.as_numpy("OUTPUT0").tobytes(), a.tobytes())

    def test_queue_full(self) -> None:
        with self.assertRaises(inferq.QueueFull) as cm:
            for _ in range(20):  # parked holds 2; its depth is cached for 250 ms
                self.c.submit("parked", {"INPUT0": np.zeros((1, 1), np.int8)})
                time.sleep(0.3)
        e = cm.exception
        self.assertEqual((e.status, e.code), (503, "queue_full"))
        assert e.retry_after is not None
        self.assertGreater(e.retry_after, 0)
        # A retry policy waits Retry-After before trying again, then gives up.
        start = time.monotonic()
        with self.assertRaises(inferq.QueueFull):
            inferq.Client(server_url(), max_retries=1).submit("parked", {"INPUT0": np.zeros((1, 1), np.int8)})
        self.assertGreaterEqual(time.monotonic() - start, e.retry_after * 0.9)

    def test_typed_errors(self) -> None:
        with self.assertRaises(inferq.NotFound) as nf:
            self.c.get("0" * 26)
        self.assertEqual((nf.exception.status, nf.exception.code), (404, "not_found"))
        self.assertTrue(nf.exception.request_id)
        with self.assertRaises(inferq.NotFound):
            self.c.submit("no-such-model", {"INPUT0": np.zeros((1, 1))})
        with self.assertRaises(inferq.NotFound):
            list(self.c.stream("0" * 26))
        with self.assertRaises(inferq.InvalidRequest) as bad:
            self.c.submit("identity", {"INPUT0": np.zeros((1, 1))}, parameters={"nope": 1})
        self.assertIn("nope", str(bad.exception))
        with self.assertRaises(inferq.InvalidRequest):
            self.c.submit("simple", {"INPUT0": np.zeros((1, 3), np.int32)})
        with self.assertRaises(inferq.TransportError):
            inferq.Client("http://127.0.0.1:9", timeout=2).models()


if __name__ == "__main__":
    unittest.main()
