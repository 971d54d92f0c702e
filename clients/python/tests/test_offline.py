"""What the client does without a server: tensor layouts, the binary
extension's request body, error mapping and answer parsing."""

from __future__ import annotations

import json
import struct
import unittest

import numpy as np

import inferq
from inferq import errors
from inferq.client import _Answer, _encode
from inferq.records import InferResult, Job


class TensorTest(unittest.TestCase):
    def test_raw_layout_is_little_endian_row_major(self) -> None:
        t = inferq.Tensor("x", [2, 2], "INT32", [[1, -2], [3, 2**31 - 1]])
        self.assertEqual(t.to_bytes(), struct.pack("<4i", 1, -2, 3, 2**31 - 1))
        a = np.array([[1, 2], [3, 4]], dtype=">i4")  # big-endian in memory
        self.assertEqual(inferq.Tensor.from_numpy("x", a).to_bytes(), t.to_bytes()[:4] + struct.pack("<3i", 2, 3, 4))

    def test_bytes_elements_have_length_prefixes(self) -> None:
        t = inferq.Tensor.from_numpy("s", np.array([b"ab", "\u00e9"], dtype=object))
        self.assertEqual(t.to_bytes(), b"\x02\x00\x00\x00ab\x02\x00\x00\x00\xc3\xa9")
        back = inferq.Tensor("s", [2], "BYTES", raw=t.to_bytes())
        self.assertEqual(back.to_list(), [b"ab", b"\xc3\xa9"])
        self.assertEqual(back.json_data(), ["ab", "\u00e9"])

    def test_every_numpy_dtype_maps_both_ways(self) -> None:
        want = {
            "bool": "BOOL",
            "int8": "INT8",
            "int16": "INT16",
            "int32": "INT32",
            "int64": "INT64",
            "uint8": "UINT8",
            "uint16": "UINT16",
            "uint32": "UINT32",
            "uint64": "UINT64",
            "float16": "FP16",
            "float32": "FP32",
            "float64": "FP64",
        }
        for dtype, oip in want.items():
            with self.subTest(dtype=dtype):
                a = np.arange(6).astype(dtype).reshape(2, 3)
                t = inferq.Tensor.from_numpy("x", a)
                self.assertEqual(t.datatype, oip)
                via_json = inferq.Tensor.from_json(json.loads(json.dumps(t.to_json())))
                self.assertEqual(via_json.to_numpy().dtype, np.dtype(dtype))
                self.assertEqual(via_json.to_numpy().tobytes(), a.tobytes())
                self.assertEqual(via_json.to_bytes(), t.to_bytes())

    def test_json_refuses_what_it_cannot_carry_exactly(self) -> None:
        with self.assertRaisesRegex(ValueError, "binary=True"):
            inferq.Tensor.from_numpy("f", np.array([1.0, np.nan], np.float32)).to_json()
        with self.assertRaisesRegex(ValueError, "binary=True"):
            inferq.Tensor.from_numpy("f", np.array([np.inf])).to_json()
        with self.assertRaisesRegex(ValueError, "not UTF-8"):
            inferq.Tensor.from_numpy("b", np.array([b"\xff"], dtype=object)).to_json()

    def test_bad_tensors_raise_value_error(self) -> None:
        with self.assertRaisesRegex(ValueError, "holds 4 elements"):
            inferq.Tensor("x", [2, 2], "FP32", [1.0, 2.0])
        with self.assertRaisesRegex(ValueError, "unknown datatype"):
            inferq.Tensor("x", [1], "FP8", [1.0])
        with self.assertRaisesRegex(ValueError, "does not fit"):
            inferq.Tensor("x", [1], "UINT8", [300]).to_bytes()
        with self.assertRaisesRegex(ValueError, "runs past"):
            inferq.Tensor("x", [1], "BYTES", raw=b"\x09\x00\x00\x00abc")
        with self.assertRaisesRegex(ValueError, "is 8 bytes"):
            inferq.Tensor("x", [2], "FP32", raw=b"\x00" * 7)

    def test_bf16_rounds_to_nearest_even(self) -> None:
        t = inferq.Tensor("b", [3], "BF16", [1.0, 1.00390625, 1.01171875])
        self.assertEqual(struct.unpack("<3H", t.to_bytes()), (0x3F80, 0x3F80, 0x3F82))
        self.assertEqual(inferq.Tensor("b", [3], "BF16", raw=t.to_bytes()).to_numpy().dtype, np.float32)

    def test_negative_zero_survives_the_servers_json(self) -> None:
        # The broker writes a float32 -0 as "-0".
        res = InferResult.from_json(
            inferq.records.loads(b'{"outputs":[{"name":"o","shape":[2],"datatype":"FP32","data":[-0,0]}]}')
        )
        self.assertEqual(res.as_numpy("o").tobytes(), np.array([-0.0, 0.0], np.float32).tobytes())


class BinaryBodyTest(unittest.TestCase):
    def test_request_is_json_header_then_raw_inputs(self) -> None:
        a = np.array([[1.5, -2.0]], np.float32)
        s = np.array([[b"hi"]], dtype=object)
        body, hdr = _encode(
            {"parameters": {"priority": 0}}, [inferq.Tensor.from_numpy("A", a), inferq.Tensor.from_numpy("S", s)], True
        )
        n = int(hdr["Inference-Header-Content-Length"])
        self.assertEqual(hdr["Content-Type"], "application/octet-stream")
        head = json.loads(body[:n])
        self.assertEqual(
            head["inputs"],
            [
                {"name": "A", "shape": [1, 2], "datatype": "FP32", "parameters": {"binary_data_size": 8}},
                {"name": "S", "shape": [1, 1], "datatype": "BYTES", "parameters": {"binary_data_size": 6}},
            ],
        )
        self.assertEqual(body[n:], a.tobytes() + b"\x02\x00\x00\x00hi")

    def test_binary_answer_is_split_by_its_header(self) -> None:
        out = np.array([[7, 8, 9]], np.int64)
        record = {
            "id": "j",
            "model": "identity",
            "status": "succeeded",
            "result": {
                "model_name": "identity",
                "outputs": [
                    {"name": "T", "shape": [1], "datatype": "BOOL", "data": [True]},
                    {"name": "O", "shape": [1, 3], "datatype": "INT64", "parameters": {"binary_data_size": 24}},
                ],
            },
        }
        head = json.dumps(record).encode()
        ans = _Answer(200, {"inference-header-content-length": str(len(head))}, head + out.tobytes())
        doc, rest = ans.parts()
        job = Job.from_json(doc, rest)
        np.testing.assert_array_equal(job.outputs()["O"], out)
        self.assertEqual(job.outputs()["T"].tolist(), [True])
        with self.assertRaises(ValueError):
            Job.from_json(doc, rest[:-1])


class ErrorsTest(unittest.TestCase):
    def test_codes_map_to_types(self) -> None:
        cases = [
            (400, "invalid", errors.InvalidRequest),
            (401, "unauthenticated", errors.Unauthorized),
            (403, "forbidden", errors.Forbidden),
            (404, "not_found", errors.NotFound),
            (409, "conflict", errors.Conflict),
            (409, "not_replayable", errors.NotReplayable),
            (413, "too_large", errors.TooLarge),
            (415, "unsupported_media_type", errors.UnsupportedMediaType),
            (422, "idempotency_key_reused", errors.IdempotencyKeyReused),
            (429, "rate_limited", errors.RateLimited),
            (503, "queue_full", errors.QueueFull),
            (503, "unavailable", errors.Unavailable),
            (503, "not_ready", errors.Unavailable),
            (504, "timeout", errors.Timeout),
            (504, "expired", errors.Expired),
            (500, "poison_job", errors.ServerError),
        ]
        for status, code, cls in cases:
            with self.subTest(code=code):
                body = json.dumps({"error": {"code": code, "message": "m"}}).encode()
                e = errors.from_response(status, {"retry-after": "2", "x-request-id": "r"}, body)
                self.assertIs(type(e), cls)
                self.assertEqual(
                    (e.status, e.code, e.message, e.retry_after, e.request_id), (status, code, "m", 2, "r")
                )

    def test_oip_form_and_bodies_without_json(self) -> None:
        e = errors.from_response(400, {}, b'{"error":"bad input","code":"invalid"}')
        self.assertIsInstance(e, errors.InvalidRequest)
        self.assertEqual(e.message, "bad input")
        e = errors.from_response(502, {}, b"<html>bad gateway</html>")
        self.assertIsInstance(e, errors.ServerError)
        self.assertIn("bad gateway", str(e))


if __name__ == "__main__":
    unittest.main()
