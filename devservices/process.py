"""A helper server process of the dev services (moto, Redis): stopped politely, then killed."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import IO


def stop(proc: subprocess.Popen | None, log: IO | None, grace: float = 10) -> None:
    """Ends `proc` (SIGTERM, then SIGKILL after `grace` s) and removes its log file."""
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if log is not None:
        log.close()
        Path(log.name).unlink(missing_ok=True)
