"""Redis from Debian on loopback: the broker and result store of the Celery executor
(ARCHIVE_EXECUTOR=celery), started by the dev services like PostgreSQL. It keeps nothing on disk:
a lost queue costs a run retry, because the runs themselves live in Dagster's PostgreSQL."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from devservices import process
from errors import SetupError


class LocalRedis:
    def __init__(self, port: int) -> None:
        self.port = port
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def start(self, timeout: float = 20) -> bool:
        """Starts the server unless one listens on the port already; True if this call started it."""
        if self.listening():
            return False
        server = shutil.which("redis-server")
        if server is None:
            raise SetupError("未找到 redis-server，请运行 `make setup`（Celery 执行器需要它）",
                             "redis-server not found (the Celery executor's broker): install it with "
                             "`apt-get install redis-server` or run `make setup`")
        self.log = tempfile.NamedTemporaryFile(prefix="redis-", suffix=".log", delete=False)
        self.proc = subprocess.Popen([server, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                                      "--appendonly", "no", "--protected-mode", "yes"],
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SetupError("redis-server 启动失败", "redis-server exited: "
                                 + Path(self.log.name).read_text(errors="replace")[-2000:])
            if self.listening():
                return True
            time.sleep(0.1)
        self.stop()
        raise SetupError("redis-server 未能启动", f"redis-server did not listen on port {self.port} within {timeout}s")

    def stop(self) -> None:
        process.stop(self.proc, getattr(self, "log", None))
        self.proc, self.log = None, None
