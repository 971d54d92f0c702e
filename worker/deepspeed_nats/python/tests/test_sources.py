"""Model sources: TorchScript files built here with torch.jit.script, the
python: examples of the repository, and each way a load fails."""

import json
import tempfile
import unittest
from pathlib import Path
from typing import Any

import torch

from inferq_runner import inferq_pb2 as pb
from inferq_runner.models import load
from inferq_runner.sources import LoadError, Source, parse
from inferq_runner.tensors import decode_bytes, from_torch, to_torch

from .test_server import Harness, text_batch

EXAMPLES = Path(__file__).resolve().parents[4] / "examples" / "models"


class AddMul(torch.nn.Module):
    """Two named inputs to two outputs, returned as a tuple in config order."""

    def forward(self, INPUT0: torch.Tensor, INPUT1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return INPUT0 + INPUT1, INPUT0 * INPUT1


class Rows(torch.nn.Module):
    """A dict of named outputs; ROWS says how many rows the batch had."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        n = x.shape[0]
        return {"y": x * 2.0 + 1.0, "ROWS": torch.full([n, 1], n, dtype=torch.int64)}


def spec(name: str, datatype: str, dims: list[int]) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "dims": dims}


ADDMUL_CONFIG = {
    "name": "addmul",
    "kind": "tensor",
    "max_batch_size": 8,
    "inputs": [spec("INPUT0", "INT32", [4]), spec("INPUT1", "INT32", [4])],
    "outputs": [spec("OUTPUT0", "INT32", [4]), spec("OUTPUT1", "INT32", [4])],
}


def tensor_batch(batch_id: str, inputs: dict[str, torch.Tensor], rows: list[int]) -> pb.Batch:
    """A batch whose jobs take rows[i] rows each, in order."""
    jobs, start = [], 0
    for i, n in enumerate(rows):
        jobs.append(pb.BatchJob(id="%s-%d" % (batch_id, i), row_start=start, row_end=start + n))
        start += n
    return pb.Batch(id=batch_id, jobs=jobs, inputs=[from_torch(k, v) for k, v in inputs.items()])


def no_emit(chunk: pb.TokenChunk) -> None:
    pass


def never(job_id: str) -> bool:
    return False


class SourceTest(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)

    def script(self, module: torch.nn.Module, name: str = "m.pt") -> str:
        path = str(Path(self.dir.name) / name)
        torch.jit.save(torch.jit.script(module), path)
        return path

    def assertLoadError(self, source: str, options: dict[str, Any], *want: str) -> None:
        with self.assertRaises(LoadError) as cm:
            load(source, "cpu", "fp32", False, 1, options)
        for w in want:
            self.assertIn(w, str(cm.exception))

    def test_parse(self) -> None:
        cases = {
            "builtin:tiny-gpt": Source("builtin", "tiny-gpt"),
            "torchscript:/m/a.pt": Source("torchscript", "/m/a.pt"),
            "python:pkg.mod:make": Source("python", "pkg.mod", "make"),
            "hf:/models/llama": Source("hf", "/models/llama"),
            self.dir.name: Source("hf", self.dir.name),
        }
        for s, want in cases.items():
            self.assertEqual(parse(s), want, s)
        for bad, msg in {
            "python:mod": "want python:MODULE:FACTORY",
            "torchscript:": "needs a path",
            "onnx:m.onnx": "none of builtin:NAME",
            "": "no model source",
        }.items():
            with self.assertRaises(LoadError) as cm:
                parse(bad)
            self.assertIn(msg, str(cm.exception), bad)

    def test_torchscript_exact_outputs_on_a_batch(self) -> None:
        path = self.script(AddMul())
        model = load("torchscript:" + path, "cpu", "fp32", False, 1, ADDMUL_CONFIG)
        self.assertEqual((model.kind, model.capacity, str(model.device)), ("tensor", 8, "cpu"))
        a = torch.arange(12, dtype=torch.int32).reshape(3, 4)
        b = torch.full((3, 4), 3, dtype=torch.int32)
        res = model.run(tensor_batch("b", {"INPUT0": a, "INPUT1": b}, [1, 2]), no_emit, never)
        j0, j1 = res.jobs
        outs = {o.name: to_torch(o) for o in j1.outputs}
        self.assertEqual(sorted(outs), ["OUTPUT0", "OUTPUT1"])
        self.assertTrue(torch.equal(outs["OUTPUT0"], a[1:3] + 3))
        self.assertTrue(torch.equal(outs["OUTPUT1"], a[1:3] * 3))
        self.assertEqual(outs["OUTPUT0"].dtype, torch.int32)
        self.assertEqual([list(o.shape) for o in j0.outputs], [[1, 4], [1, 4]])
        self.assertEqual(to_torch(j0.outputs[0]).tolist(), [[3, 4, 5, 6]])

    def test_torchscript_dict_outputs(self) -> None:
        path = self.script(Rows())
        cfg = {
            "name": "rows",
            "inputs": [spec("x", "FP32", [-1])],
            "outputs": [spec("y", "FP32", [-1]), spec("ROWS", "INT64", [1])],
        }
        model = load("torchscript:" + path, "cpu", "fp32", False, 1, cfg)
        x = torch.tensor([[0.5, 1.0], [2.0, -1.0], [0.0, 0.25]])
        res = model.run(tensor_batch("r", {"x": x}, [2, 1]), no_emit, never)
        got = {o.name: to_torch(o) for o in res.jobs[1].outputs}
        self.assertEqual(got["y"].tolist(), [[1.0, 1.5]])
        self.assertEqual(got["ROWS"].tolist(), [[3]])

    def test_torchscript_load_errors(self) -> None:
        path = self.script(AddMul())
        cases: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
            ("torchscript:/no/such/file.pt", ADDMUL_CONFIG, ("TorchScript file /no/such/file.pt not found",)),
            (
                "torchscript:" + path,
                dict(ADDMUL_CONFIG, inputs=[spec("a", "INT32", [4]), spec("INPUT1", "INT32", [4])]),
                ("forward(INPUT0, INPUT1) does not take the config's inputs ['a', 'INPUT1']",),
            ),
            (
                "torchscript:" + path,
                dict(ADDMUL_CONFIG, outputs=[spec("OUTPUT0", "FP32", [4]), spec("OUTPUT1", "INT32", [4])]),
                ('output "OUTPUT0": config says FP32, the model gives torch.int32',),
            ),
            (
                "torchscript:" + path,
                dict(ADDMUL_CONFIG, outputs=[spec("OUTPUT0", "INT32", [4])]),
                ("the model returned 2 tensors, the config declares ['OUTPUT0']",),
            ),
            (
                "torchscript:" + path,
                dict(ADDMUL_CONFIG, inputs=[spec("INPUT0", "BYTES", [4]), spec("INPUT1", "INT32", [4])]),
                ('input "INPUT0" is BYTES',),
            ),
            (
                "torchscript:" + path,
                dict(ADDMUL_CONFIG, inputs=[spec("INPUT0", "INT32", [4]), spec("INPUT1", "INT32", [5])]),
                ("a one-row batch of the config's inputs (INPUT0 INT32[4], INPUT1 INT32[5]) failed: RuntimeError",),
            ),
            ("torchscript:" + path, dict(ADDMUL_CONFIG, kind="generate"), ("kind tensor, the config says generate",)),
        ]
        not_ts = Path(self.dir.name) / "not.pt"
        not_ts.write_text("hello")
        cases.append(("torchscript:" + str(not_ts), ADDMUL_CONFIG, ("is not a TorchScript file",)))
        for source, cfg, want in cases:
            with self.subTest(want=want[0]):
                self.assertLoadError(source, cfg, *want)

    def test_torchscript_deepspeed(self) -> None:
        path = self.script(AddMul())
        try:
            import deepspeed  # noqa: F401
        except ImportError:
            with self.assertRaises(LoadError) as cm:
                load("torchscript:" + path, "cpu", "fp32", True, 1, ADDMUL_CONFIG)
            self.assertIn("deepspeed: true, but DeepSpeed is not importable", str(cm.exception))
            # The config's deepspeed: true refuses every source, not only TorchScript.
            with self.assertRaises(LoadError):
                load("builtin:tiny-mlp", "cpu", "fp32", True, 1, {"deepspeed": True})
            return
        model = load("torchscript:" + path, "cpu", "fp32", True, 1, ADDMUL_CONFIG)
        self.assertEqual(model.kind, "tensor")

    def test_python_tensor_example(self) -> None:
        cfg = {
            "name": "scale",
            "kind": "tensor",
            "params": {"scale": 3, "bias": 0.5},
            "python_path": [str(EXAMPLES / "python_tensor")],
            "inputs": [spec("INPUT0", "FP32", [4])],
            "outputs": [spec("OUTPUT0", "FP32", [4]), spec("SUM", "FP32", [1])],
        }
        model = load("python:scale_model:build", "cpu", "fp32", False, 1, cfg)
        x = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 1.0]])
        res = model.run(tensor_batch("p", {"INPUT0": x}, [1, 1]), no_emit, never)
        got = [{o.name: to_torch(o).tolist() for o in j.outputs} for j in res.jobs]
        self.assertEqual(got[0], {"OUTPUT0": [[3.5, 6.5, 9.5, 12.5]], "SUM": [[10.0]]})
        self.assertEqual(got[1], {"OUTPUT0": [[0.5, 0.5, 0.5, 3.5]], "SUM": [[1.0]]})

    def test_python_generate_example(self) -> None:
        cfg = {
            "name": "reverse",
            "kind": "generate",
            "params": {"suffix": "!"},
            "python_path": [str(EXAMPLES / "python_generate")],
            "inputs": [spec("text_input", "BYTES", [1])],
            "outputs": [spec("text_output", "BYTES", [1])],
        }
        model = load("python:reverse_words:build", "cpu", "fp32", False, 1, cfg)
        chunks: list[pb.TokenChunk] = []
        batch = text_batch(
            "g",
            ["one two three", "a b c d e f", "x y stop here", "ignored"],
            [{}, {"max_tokens": 3}, {"stop": [" stop"]}, {}],
        )
        res = model.run(batch, chunks.append, lambda job_id: job_id == "j3")
        texts = [decode_bytes(j.outputs[0].data)[0].decode() if j.outputs else j.error.code for j in res.jobs]
        self.assertEqual(texts, ["three two one!", "f e d", "here", "cancelled"])
        streamed: dict[str, str] = {}
        for c in chunks:
            streamed[c.job_id] = streamed.get(c.job_id, "") + c.text
        self.assertEqual(streamed, {"j0": "three two one!", "j1": "f e d", "j2": "here"})
        finals = [c.job_id for c in chunks if c.final]
        self.assertEqual(sorted(finals), ["j0", "j1", "j2"])
        self.assertEqual([c.seq for c in chunks if c.job_id == "j0"], list(range(1, 6)))

    def test_python_load_errors(self) -> None:
        mods = Path(self.dir.name) / "mods"
        mods.mkdir()
        (mods / "broken_factory.py").write_text(
            "def build(ctx):\n    raise RuntimeError('weights missing for ' + ctx.name)\n"
            "class T:\n    def forward(self, inputs):\n        return {'nope': inputs['x']}\n"
            "def wrong_outputs(ctx):\n    return T()\n"
        )
        base = {
            "name": "mine",
            "kind": "tensor",
            "python_path": [str(mods)],
            "inputs": [spec("x", "FP32", [2])],
            "outputs": [spec("y", "FP32", [2])],
        }
        cases = [
            ("python:broken_factory:build", base, "the factory raised RuntimeError: weights missing for mine"),
            ("python:no_such_module:build", base, "module no_such_module not found on python_path"),
            ("python:broken_factory:missing", base, "module broken_factory has no callable missing"),
            (
                "python:broken_factory:wrong_outputs",
                base,
                "the model's outputs are ['nope'], the config declares ['y']",
            ),
            (
                "python:broken_factory:wrong_outputs",
                dict(base, kind="generate"),
                "kind generate wants a model with generate(prompt, params), got T",
            ),
            ("python:m:build", dict(base, python_path=["/no/such/dir"]), "python_path /no/such/dir is not a directory"),
        ]
        for source, cfg, want in cases:
            with self.subTest(want=want):
                self.assertLoadError(source, cfg, want)

    def test_server_reports_load_error_naming_model(self) -> None:
        h = Harness("builtin:tiny-gpt")
        try:
            opts = json.dumps(ADDMUL_CONFIG).encode()
            h.send(load=pb.Load(model="addmul", source="torchscript:/no/such.pt", options_json=opts))
            f = h.next()
            self.assertEqual(f.error.error.code, "load_failed")
            self.assertEqual(
                f.error.error.message,
                "model addmul (torchscript:/no/such.pt): TorchScript file /no/such.pt not found "
                "(relative paths start at %s)" % Path.cwd(),
            )
            self.assertIsNone(h.next())
        finally:
            h.close()
        self.assertEqual(h.code, 1)


if __name__ == "__main__":
    unittest.main()
