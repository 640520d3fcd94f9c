"""A real S3 endpoint over HTTP on loopback: moto's server, for tests and `archive demo --s3`.

moto does not check signatures: authorisation is tested in our own layer, never through it.
It keeps objects in memory only, which is why the demo's default store is a local folder.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from devservices import process
from errors import SetupError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoServer:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> None:
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        # moto logs every request: to a file, never a pipe nobody reads (a full 64 KB pipe
        # blocked the server after ~400 requests and hung the test suite)
        self.log = tempfile.NamedTemporaryFile(prefix="moto-", suffix=".log", delete=False)
        # default signal handlers: a parent that ignores SIGTERM must not make moto immortal
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SetupError("moto S3 服务器启动失败",
                                 f"moto server exited: {Path(self.log.name).read_text(errors='replace')[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise SetupError("moto S3 服务器未能启动", f"moto server did not listen on port {self.port} within {timeout}s")

    def stop(self) -> None:
        process.stop(self.proc, getattr(self, "log", None))
        self.proc, self.log = None, None
