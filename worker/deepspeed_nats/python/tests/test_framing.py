import io
import struct
import unittest

from inferq_runner import inferq_pb2 as pb
from inferq_runner.framing import FrameError, FrameWriter, encode_frame, read_frame


class Trickle(io.RawIOBase):
    """Returns at most n bytes per read, as a pipe may."""

    def __init__(self, data, n=1):
        self.data, self.pos, self.n = data, 0, n

    def readable(self):
        return True

    def read(self, size=-1):
        k = self.n if size < 0 else min(size, self.n)
        out = self.data[self.pos : self.pos + k]
        self.pos += len(out)
        return out


def frames():
    return [
        pb.RunnerFrame(load=pb.Load(model="m", source="builtin:tiny-gpt", device="cpu", options_json=b"{}")),
        pb.RunnerFrame(health=pb.Health(time_unix_nano=42)),
        pb.RunnerFrame(token=pb.TokenChunk(job_id="j", seq=3, text="h\u00e9", token_id=169, final=True)),
        pb.RunnerFrame(cancel=pb.Cancel()),  # an empty message encodes to a few bytes
        pb.RunnerFrame(),  # no oneof set: zero-length body
    ]


class FramingTest(unittest.TestCase):
    def test_round_trip(self):
        buf = io.BytesIO()
        w = FrameWriter(buf)
        for f in frames():
            w.write(f)
        buf.seek(0)
        got = []
        while True:
            f = read_frame(buf)
            if f is None:
                break
            got.append(f)
        self.assertEqual(got, frames())

    def test_partial_reads(self):
        data = b"".join(encode_frame(f) for f in frames())
        for n in (1, 2, 3, 7):
            s = Trickle(data, n)
            got = [read_frame(s) for _ in frames()]
            self.assertEqual(got, frames(), "chunk size %d" % n)
            self.assertIsNone(read_frame(s))

    def test_length_is_little_endian(self):
        data = encode_frame(frames()[1])
        (n,) = struct.unpack("<I", data[:4])
        self.assertEqual(n, len(data) - 4)

    def test_truncated_frame(self):
        data = encode_frame(frames()[0])
        for cut in (2, 4, len(data) - 1):
            with self.assertRaises(FrameError):
                read_frame(io.BytesIO(data[:cut]))

    def test_oversized_frame(self):
        with self.assertRaises(FrameError):
            read_frame(io.BytesIO(struct.pack("<I", 0xFFFFFFFF)))


if __name__ == "__main__":
    unittest.main()
