"""What the live tests share: the server's URL and a TCP proxy that cuts
connections, to drop event streams on purpose."""

from __future__ import annotations

import os
import socket
import threading
import unittest

import numpy as np

import inferq

URL_VAR = "INFERQ_TEST_URL"


def server_url() -> str:
    """The URL of the inferq dev under test; a missing one fails the test
    (never a skip): run the server as clients/python/tests/inferq.yaml says."""
    url = os.environ.get(URL_VAR, "")
    if not url:
        raise unittest.TestCase.failureException(
            f"{URL_VAR} is not set: start `inferq dev --config clients/python/tests/inferq.yaml` "
            f"and set {URL_VAR} to its HTTP API URL"
        )
    return url


def rng_arrays(seed: int = 7) -> dict[str, "np.ndarray"]:
    """One array per numpy dtype that has an OIP datatype, holding the values
    that are easy to get wrong: extremes, negative zero, subnormals and
    non-ASCII UTF-8 bytes. Shape [2, 5]: two rows of the identity model."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {"BOOL": np.array([True, False, True, True, False] * 2).reshape(2, 5)}
    for name in (
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
    ):
        dt = np.dtype(name)
        info = np.iinfo(dt)
        # Random 64-bit patterns cover the whole range of every integer type.
        a = rng.integers(0, 2**64, size=10, dtype=np.uint64, endpoint=False).astype(dt)
        a[0], a[1], a[2] = info.min, info.max, 0
        out[name] = a.reshape(2, 5)
    for name in ("float16", "float32", "float64"):
        dt = np.dtype(name)
        finfo = np.finfo(dt)
        f = (rng.standard_normal(10) * 1000).astype(dt)
        f[0], f[1], f[2], f[3], f[4] = (
            -0.0,
            finfo.max,
            finfo.tiny,
            finfo.smallest_subnormal,
            -finfo.eps,
        )
        out[name] = f.reshape(2, 5)
    words = [
        b"",
        b"a",
        "\u00e9t\u00e9".encode(),
        "\u65e5\u672c".encode(),
        b"x" * 300,
        b"tab\tnew\nline",
        b'"q"\\',
    ]
    b = np.empty(10, dtype=object)
    b[:] = [words[int(i) % len(words)] for i in rng.integers(0, len(words), size=10)]
    out["BYTES"] = b.reshape(2, 5)
    return out


def assert_binary_output(tc: unittest.TestCase, name: str, want: "np.ndarray", out: inferq.Tensor) -> None:
    """Checks that out came in binary form and equals want bit for bit."""
    tc.assertIsNotNone(out.raw, f"{name}: the output did not come in binary form")
    got = out.to_numpy()
    tc.assertEqual((got.dtype, got.shape), (want.dtype, want.shape))
    if want.dtype == object:
        tc.assertEqual(got.tolist(), want.tolist())
    else:
        tc.assertEqual(got.tobytes(), want.tobytes(), name)


class CuttingProxy:
    """A TCP proxy to the server that closes the n-th connection after
    cuts[n] bytes of the server's answer (later connections pass whole), so a
    reader sees its stream drop mid-event."""

    def __init__(self, target_url: str, cuts: list[int]) -> None:
        host_port = target_url.split("://", 1)[1].split("/", 1)[0]
        host, _, port = host_port.rpartition(":")
        self.target = (host, int(port))
        self.cuts = list(cuts)
        self.connections = 0
        self._ln = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._ln.getsockname()[1]}"
        self._threads: list[threading.Thread] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._ln.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._ln.accept()
            except OSError:
                return
            limit = self.cuts[self.connections] if self.connections < len(self.cuts) else None
            self.connections += 1
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self._pipe, args=(client, upstream, None), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, limit), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket, limit: int | None) -> None:
        sent = 0
        try:
            while limit is None or sent < limit:
                want = 4096 if limit is None else min(4096, limit - sent)
                data = src.recv(want)
                if not data:
                    break
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
