"""The runner's main loop. A reader thread owns stdin: it answers Health at
once (even while a batch runs), records Cancel, and queues Load and Batch for
the main thread. Tensor batches (and generate batches with continuous
batching off) run one at a time. A continuous generate model has a running
decode loop instead (continuous.Engine): between two steps the main thread
takes every batch that arrived, its sequences join at the next step, and each
job's result is sent as a partial BatchResult the step its sequence ends; the
batch's final BatchResult follows its last job."""

import argparse
import json
import logging
import os
import queue
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING

from . import inferq_pb2 as pb
from .framing import ByteReader, ByteWriter, FrameError, FrameWriter, read_frame

if TYPE_CHECKING:
    # Imported for real only when a model loads, after the reader has started.
    from .continuous import Engine
    from .models import Model

log = logging.getLogger("inferq_runner")


class CancelBook:
    """Cancelled jobs of the batches that are queued or running. An empty
    job id cancels the whole batch."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._batches: dict[str, set[str]] = {}  # batch id -> set of cancelled job ids ("" = all)
        self.closing = False  # stdin ended: stop everything

    def open(self, batch_id: str) -> None:
        with self._lock:
            self._batches.setdefault(batch_id, set())

    def done(self, batch_id: str) -> None:
        with self._lock:
            self._batches.pop(batch_id, None)

    def cancel(self, batch_id: str, job_id: str) -> bool:
        with self._lock:
            jobs = self._batches.get(batch_id)
            if jobs is None:
                return False  # finished already, or never seen
            jobs.add(job_id)
            return True

    def cancel_all(self) -> None:
        with self._lock:
            self.closing = True

    def is_cancelled(self, batch_id: str, job_id: str) -> bool:
        with self._lock:
            if self.closing:
                return True
            jobs = self._batches.get(batch_id, ())
            return "" in jobs or job_id in jobs


class Server:
    """Serves one agent over a pair of byte streams; args are parse_args()'s."""

    def __init__(self, inp: ByteReader, out: ByteWriter, args: argparse.Namespace) -> None:
        self.inp = inp
        self.out = FrameWriter(out)
        self.args = args
        # Load and Batch frames for the main thread; None once stdin has ended.
        self.work: queue.Queue[pb.RunnerFrame | None] = queue.Queue()
        self.cancels = CancelBook()
        self.model: Model | None = None
        self.engine: Engine | None = None  # continuous generate models only
        self.open: dict[str, _OpenBatch] = {}  # batches with sequences in the engine

    def _read_loop(self) -> None:
        try:
            while True:
                f = read_frame(self.inp)
                if f is None:
                    break
                kind = f.WhichOneof("frame")
                if kind == "health":
                    self.out.write(pb.RunnerFrame(health=pb.Health(time_unix_nano=f.health.time_unix_nano)))
                elif kind == "cancel":
                    if self.cancels.cancel(f.cancel.batch_id, f.cancel.job_id):
                        log.info("cancel batch=%s job=%s", f.cancel.batch_id, f.cancel.job_id or "*")
                elif kind == "batch":
                    self.cancels.open(f.batch.id)
                    self.work.put(f)
                elif kind == "load":
                    self.work.put(f)
                else:
                    log.warning("ignoring unexpected %s frame", kind)
        except (FrameError, OSError, ValueError) as e:
            log.error("stdin: %s", e)
        except Exception:  # noqa: BLE001 - the reader must always signal the end
            log.error("stdin reader failed:\n%s", traceback.format_exc())
        finally:
            # The agent closed stdin (or it broke): stop whatever runs, then exit.
            self.cancels.cancel_all()
            self.work.put(None)

    def serve(self) -> int:
        t = threading.Thread(target=self._read_loop, name="stdin", daemon=True)
        t.start()
        ended = False
        while True:
            busy = self.engine is not None and not self.engine.idle()
            frames: list[pb.RunnerFrame | None] = []
            if not busy:
                if ended:
                    log.info("stdin closed; exiting")
                    return 0
                frames.append(self.work.get())
            # Everything that arrived meanwhile joins at the next step.
            while True:
                try:
                    frames.append(self.work.get_nowait())
                except queue.Empty:
                    break
            for f in frames:
                if f is None:
                    ended = True  # the running sequences are cancelled; they end at the next step
                    continue
                kind = f.WhichOneof("frame")
                if kind == "load":
                    if not self._load(f.load):
                        return 1
                elif self.engine is not None:
                    self._join(f.batch)
                else:
                    self._batch(f.batch)
            if self.engine is not None and not self.engine.idle():
                self._step()

    def _load(self, load: pb.Load) -> bool:
        from .continuous import Engine  # noqa: PLC0415 - torch import after the reader starts
        from .models import GenerateModel  # noqa: PLC0415
        from .models import load as load_model  # noqa: PLC0415
        from .sources import LoadError  # noqa: PLC0415

        if self.model is not None:
            self.out.write(pb.RunnerFrame(ready=self._ready(load.model)))
            return True
        a = self.args
        source = load.source or a.model
        try:
            opts = json.loads(load.options_json) if load.options_json else {}
            opts.setdefault("name", load.model)
            params = opts.get("params") or {}
            device = load.device or a.device
            dtype = params.get("dtype") or a.dtype
            t0 = time.monotonic()
            use_deepspeed = bool(a.deepspeed or opts.get("deepspeed"))
            self.model = load_model(source, device, dtype, use_deepspeed, a.tp_size, opts)
            if isinstance(self.model, GenerateModel) and self.model.continuous:
                self.engine = Engine(
                    self.model.lm,
                    self.model.max_num_seqs,
                    self.model.max_step_tokens,
                    join_every_steps=self.model.join_every_steps,
                    join_at_once_below=self.model.join_at_once_below,
                )
            log.info(
                "loaded %s (%s) as %s on %s in %.1fs",
                load.model or source,
                source,
                self.model.kind,
                self.model.device,
                time.monotonic() - t0,
            )
        except Exception as e:  # noqa: BLE001 - reported to the agent
            log.error("load failed:\n%s", traceback.format_exc())
            # The message names the model and the cause: the agent reports it
            # as the reason the worker is not ready.
            cause = str(e) if isinstance(e, LoadError) else "%s: %s" % (type(e).__name__, e)
            msg = "model %s (%s): %s" % (load.model or "?", source, cause)
            self.out.write(
                pb.RunnerFrame(error=pb.RunnerError(error=pb.Error(code="load_failed", message=msg, retryable=False)))
            )
            return False
        self.out.write(pb.RunnerFrame(ready=self._ready(load.model)))
        return True

    def _ready(self, model: str) -> pb.Ready:
        assert self.model is not None
        if self.engine is not None:
            return pb.Ready(
                model=model, device=str(self.model.device), capacity=self.engine.max_num_seqs, continuous=True
            )
        return pb.Ready(model=model, device=str(self.model.device), capacity=self.model.capacity)

    def _fail(self, batch_id: str, e: Exception, retryable: bool) -> None:
        try:
            self.out.write(
                pb.RunnerFrame(
                    error=pb.RunnerError(
                        batch_id=batch_id,
                        error=pb.Error(
                            code="runner_error", message="%s: %s" % (type(e).__name__, e), retryable=retryable
                        ),
                    )
                )
            )
        except OSError:
            pass  # the agent is gone; the reader thread ends the loop

    def _join(self, batch: pb.Batch) -> None:
        """Admits a batch's sequences to the running decode loop."""
        from .models import GenerateModel, InvalidBatch  # noqa: PLC0415

        assert self.engine is not None and isinstance(self.model, GenerateModel)

        def emit(chunk: pb.TokenChunk) -> None:
            self.out.write(pb.RunnerFrame(token=chunk))

        try:
            results, runs = self.model.prepare(batch, emit, lambda job_id: self.cancels.is_cancelled(batch.id, job_id))
        except Exception as e:  # noqa: BLE001 - the whole batch failed
            log.error("batch %s failed:\n%s", batch.id, traceback.format_exc())
            self._fail(batch.id, e, not isinstance(e, (InvalidBatch, ValueError)))
            self.cancels.done(batch.id)
            return
        ob = _OpenBatch(batch, results, len(runs))
        if not runs:
            self._close(ob)
            return
        self.open[batch.id] = ob
        for job, req in runs:
            self.engine.add((batch.id, job.id), req)

    def _step(self) -> None:
        """One decoding step; sends the result of every sequence that ended."""
        from .models import GenerateModel  # noqa: PLC0415

        assert self.engine is not None and isinstance(self.model, GenerateModel)
        try:
            finished, _ = self.engine.step()
        except Exception as e:  # noqa: BLE001 - every running batch failed
            log.error("decoding step failed:\n%s", traceback.format_exc())
            self.engine.abort()
            for bid in list(self.open):
                self._fail(bid, e, True)
                self.cancels.done(bid)
            self.open.clear()
            return
        for f in finished:
            bid, jid = f.key
            ob = self.open.get(bid)
            if ob is None:
                continue
            job = ob.jobs[jid]
            jr = self.model.job_result(job, f.reason, f.text)
            ob.results[jid] = jr
            ob.left -= 1
            if ob.left > 0:
                # Sent at once: the agent ends this job now, not with its batch.
                self._send(pb.RunnerFrame(result=pb.BatchResult(batch_id=bid, jobs=[jr], partial=True)))
            else:
                del self.open[bid]
                self._close(ob)

    def _close(self, ob: "_OpenBatch") -> None:
        b = ob.batch
        self._send(pb.RunnerFrame(result=pb.BatchResult(batch_id=b.id, jobs=[ob.results[j.id] for j in b.jobs])))
        self.cancels.done(b.id)

    def _send(self, f: pb.RunnerFrame) -> None:
        try:
            self.out.write(f)
        except OSError as e:
            log.warning("stdout: %s", e)  # the agent is gone; the reader thread ends the loop

    def _batch(self, batch: pb.Batch) -> None:
        from .models import InvalidBatch  # noqa: PLC0415

        try:
            if self.model is None:
                raise RuntimeError("batch before load")
            t0 = time.monotonic()

            def emit(chunk: pb.TokenChunk) -> None:
                self.out.write(pb.RunnerFrame(token=chunk))

            res = self.model.run(batch, emit, lambda job_id: self.cancels.is_cancelled(batch.id, job_id))
            log.debug("batch %s: %d jobs in %.3fs", batch.id, len(batch.jobs), time.monotonic() - t0)
            self.out.write(pb.RunnerFrame(result=res))
        except Exception as e:  # noqa: BLE001 - the whole batch failed
            retryable = not isinstance(e, (InvalidBatch, ValueError))
            log.error("batch %s failed:\n%s", batch.id, traceback.format_exc())
            try:
                self.out.write(
                    pb.RunnerFrame(
                        error=pb.RunnerError(
                            batch_id=batch.id,
                            error=pb.Error(
                                code="runner_error", message="%s: %s" % (type(e).__name__, e), retryable=retryable
                            ),
                        )
                    )
                )
            except OSError:
                pass  # the agent is gone; the reader thread ends the loop
        finally:
            self.cancels.done(batch.id)


class _OpenBatch:
    """A batch whose sequences are in the engine: results so far, and how
    many sequences are still running."""

    def __init__(self, batch: pb.Batch, results: dict[str, pb.JobResult], left: int) -> None:
        self.batch, self.results, self.left = batch, results, left
        self.jobs = {j.id: j for j in batch.jobs}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python3 -m inferq_runner", description="inferq model runner (stdio frames)")
    p.add_argument(
        "--model",
        default="builtin:tiny-gpt",
        help="model source: builtin:NAME, torchscript:PATH, python:MODULE:FACTORY, hf:PATH "
        "or a local Hugging Face directory (the Load frame's source wins)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"])
    p.add_argument("--deepspeed", action="store_true", help="wrap the model with deepspeed.init_inference")
    p.add_argument("--tp-size", type=int, default=1, help="DeepSpeed tensor-parallel size")
    p.add_argument("--log-level", default=os.environ.get("INFERQ_RUNNER_LOG", "INFO"))
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    # Frames own the real stdout; anything else that prints (libraries,
    # DeepSpeed) goes to stderr instead of corrupting the stream.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    inp = os.fdopen(os.dup(0), "rb")
    return Server(inp, out, args).serve()
