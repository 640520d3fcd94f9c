"""Whether the Celery worker running a step is still alive, and a lost step sent again.

dagster-celery's run worker waits on each step's Celery result for ever. A worker killed with
SIGKILL (or its machine lost) never writes that result, and Celery has already taken the step's
message off the queue (it acknowledges a task as it starts). So the run would wait for ever,
holding its `ocr` slot. Two parts close that:

- each worker (pipeline/celery_app.py) keeps a key of its own in the broker's Redis alive from a
  thread, every HEARTBEAT_SECONDS, expiring after HEARTBEAT_TTL. The key is this process's own
  (its node name and a token drawn as it starts), so a worker restarted under the same name
  (a container restarted in its pod) does not keep its predecessor's steps alive; and each step
  it starts records which key is its worker's;
- the run worker (pipeline/executor.py) holds each step as a `WatchedStep`: a step started by a
  worker whose key has expired is sent again, at most RESENDS times; then it fails with
  `StepWorkerLost`, and so does the run, saying which workers died.

The stages are keyed by content, so a step sent again redoes only what did not commit. A worker
that was only frozen (stopped, or its machine paused) and ends the step later leaves the data as
one attempt would; its events still reach the run's Dagster log. Not covered: a worker killed
between taking a step off the queue and recording it (a moment), and steps a `--concurrency N`
worker had reserved but not started, which Redis gives back after its visibility timeout.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from errors import NotReady

HEARTBEAT_SECONDS = 3.0
HEARTBEAT_TTL = 15     # s without a beat before a worker counts as gone: five beats missed
CHECK_SECONDS = 2.0    # how often the run worker asks after one running step
RESENDS = 2            # sendings of a step after the first, before the run fails
TASK_RECORD_SECONDS = 24 * 3600  # a lost step's record of its worker, for a run worker slow to ask

_log = logging.getLogger(__name__)


def _key(worker: str) -> str:
    return f"archive:celery-worker:{worker}"


def _task_key(task_id: str) -> str:
    return f"archive:celery-task:{task_id}"


def worker_token(node: str) -> str:
    """This worker process's own name for its heartbeat: its Celery node name and a random token."""
    return f"{node}#{uuid.uuid4().hex}"


def node_of(worker: str) -> str:
    return worker.rpartition("#")[0] or worker


def _tried(what: str, call: Callable[[], Any]) -> None:
    """A Redis write a worker can do without: Redis away for a moment is logged, not raised."""
    try:
        call()
    except Exception as exc:  # noqa: BLE001
        _log.warning("%s: %s", what, exc)


class Heartbeat:
    """A worker's sign of life: its key in Redis, renewed from a thread while the worker runs
    (a step runs in the worker's main thread, or its OCR in a child process)."""

    def __init__(self, client: Any, worker: str) -> None:
        self.client, self.worker = client, worker
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="archive-heartbeat", daemon=True)

    def beat(self) -> None:
        """Renews the key; one not written is tried again at the next beat."""
        _tried(f"heartbeat of {self.worker} not written",
               lambda: self.client.set(_key(self.worker), str(time.time()), ex=HEARTBEAT_TTL))

    def start(self) -> None:
        self.beat()  # before the worker takes its first step
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            self.beat()

    def record_step(self, task_id: str) -> None:
        """As a step starts in this worker: the step's worker is this one (unrecorded, the step
        runs unwatched rather than not at all)."""
        _tried(f"worker of step {task_id} not recorded",
               lambda: self.client.set(_task_key(task_id), self.worker, ex=TASK_RECORD_SECONDS))

    def step_done(self, task_id: str) -> None:
        """After the step's result is stored: only running steps keep a record (or it expires)."""
        _tried(f"record of step {task_id} not removed", lambda: self.client.delete(_task_key(task_id)))

    def stop(self) -> None:
        """On a worker's warm shutdown, after its last step: it is gone, say so at once (or the
        key expires by itself)."""
        self._stop.set()
        self._thread.join(HEARTBEAT_SECONDS + 1)
        _tried(f"heartbeat of {self.worker} not removed", lambda: self.client.delete(_key(self.worker)))


def worker_alive(client: Any, worker: str) -> bool:
    return bool(client.exists(_key(worker)))


class StepWorkerLost(NotReady):
    """A step's Celery worker died every time the step was sent."""

    def __init__(self, step_key: str, workers: list[str]) -> None:
        super().__init__(f"步骤 {step_key} 的 Celery 工作进程 {len(workers)} 次意外终止（{', '.join(workers)}；"
                         "被杀死、内存不足或机器失联），本次运行失败；请先检查这些工作进程所在的机器，再重新运行该批次"
                         "（已存的结果保留）",
                         f"the Celery worker running step {step_key} died each of the {len(workers)} times it was "
                         f"sent ({', '.join(workers)}: killed, out of memory or its machine lost), so the run "
                         "fails; see to those workers' machines, then run the batch again (what is stored is kept)",
                         item=step_key)


class WatchedStep:
    """What dagster-celery's execution loop holds for a step in place of its Celery result
    (`ready`, `get`, `revoke`): the result of the step's latest sending, sent again when the
    worker that started it is gone."""

    def __init__(self, send: Callable[[], Any], step_key: str, warn: Callable[[str], None]) -> None:
        self._send, self.step_key, self._warn = send, step_key, warn
        self.result = send()
        self._lost: list[str] = []      # node names of the workers that died with the step
        self._error: StepWorkerLost | None = None
        self._revoked = False           # the run is stopping: nothing is sent any more
        self._next_check = time.monotonic() + CHECK_SECONDS

    def ready(self) -> bool:
        if self._error is not None or self.result.ready():
            return True
        if self._revoked or time.monotonic() < self._next_check:
            return False
        self._next_check = time.monotonic() + CHECK_SECONDS
        try:
            return self._lost_step_handled()
        except Exception as exc:  # noqa: BLE001  Redis away for a moment: ask again at the next check
            _log.warning("step %s: its worker could not be asked after: %s", self.step_key, exc)
            return False

    def _lost_step_handled(self) -> bool:
        client = self.result.backend.client
        worker = client.get(_task_key(self.result.id))  # None while the step waits in the queue
        if worker is None:
            return False
        worker = worker.decode() if isinstance(worker, bytes) else worker
        if worker_alive(client, worker) or self.result.ready():  # ready: it ended meanwhile
            return False
        self._lost.append(node_of(worker))
        if len(self._lost) > RESENDS:
            self._error = StepWorkerLost(self.step_key, self._lost)
            self._warn(self._error.message_en)
            return True
        self._warn(f"step {self.step_key}: its Celery worker {node_of(worker)} is gone (no sign of life for "
                   f"{HEARTBEAT_TTL} s); sending the step again ({len(self._lost)} of {RESENDS})")
        self.result = self._send()
        return False

    def get(self, *args: Any, **kwargs: Any) -> Any:
        if self._error is not None:
            raise self._error
        return self.result.get(*args, **kwargs)

    def revoke(self, *args: Any, **kwargs: Any) -> None:
        self._revoked = True
        self.result.revoke(*args, **kwargs)
