"""Which process runs a Dagster run, and whether it is still alive.

A run worker killed with SIGKILL leaves its run STARTED for ever, holding its concurrency slot
(the `ocr` pool has one): nothing in the worker is left to say it ended. So each run worker
records itself in a run tag (its run, host name and machine id, boot, PID namespace, and PID
with the process's start time, which a reused PID does not share), and run monitoring
(pipeline/launcher.py) and a new in-process run (`dead_runs_failed`) ask the operating system
whether that process still exists.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from errors import NotReady
from pipeline.run_failures import report_run_error

WORKER_TAG = "archive/worker"
UNFINISHED = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
              dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


@dataclass(frozen=True)
class Worker:
    run_id: str
    host: str
    boot: str
    pid_namespace: str  # containers sharing a host name and boot have their own process tables
    pid: int
    started: str  # the process's start time in clock ticks since boot (/proc/PID/stat, field 22)

    def tag(self) -> str:
        return "|".join((self.run_id, self.host, self.boot, self.pid_namespace, str(self.pid), self.started))

    @classmethod
    def parse(cls, tag: str) -> Worker | None:
        parts = tag.split("|")
        if len(parts) != 6 or not parts[4].isdigit():
            return None
        return cls(parts[0], parts[1], parts[2], parts[3], int(parts[4]), parts[5])

    def alive(self) -> bool | None:
        """True or False for a worker this process can see; None where it cannot know."""
        here = this_worker(self.run_id)
        if not (self.boot and self.pid_namespace and self.started and here.boot and here.pid_namespace):
            return None  # no identity could be read, then or now: never guess
        if self.host != here.host:
            return None
        if self.boot != here.boot:
            # the machine restarted since, so every process of the old boot is gone; unless two
            # machines share a host name and no machine id tells them apart
            return False if self.host.partition("#")[2] else None  # the part after "#": the machine id
        if self.pid_namespace != here.pid_namespace:
            return None
        stat = _stat(self.pid)
        if stat is None:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                return None  # there, but /proc hides it (hidepid)
            return None
        return stat[0] != "Z" and stat[1] == self.started


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _pid_namespace() -> str:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return ""


def _stat(pid: int) -> tuple[str, str] | None:
    """(state, start time) of a process, None when there is no such process (or none visible)."""
    text = _read(f"/proc/{pid}/stat")
    if not text:
        return None
    fields = text[text.rindex(")") + 2:].split()  # the command name in parentheses may hold spaces
    return fields[0], fields[19]


def this_worker(run_id: str) -> Worker:
    stat = _stat(os.getpid())
    host = f"{socket.gethostname()}#{_read('/etc/machine-id')}"  # cloned machines may share a host name
    return Worker(run_id, host, _read("/proc/sys/kernel/random/boot_id"), _pid_namespace(),
                  os.getpid(), stat[1] if stat else "")


class RunWorkerGone(NotReady):
    """A run's worker process ended before its run did."""

    def __init__(self, worker: Worker) -> None:
        super().__init__(f"运行进程（{worker.host} 上的 pid {worker.pid}）在运行结束前已不在"
                         "（被杀死、内存不足或机器停止），本次运行未完成；已存的结果保留，请工程人员查看该机器后重新运行该批次",
                         f"run worker (pid {worker.pid} on {worker.host}) is gone: it was killed or its machine "
                         "stopped; the run did not finish (what is stored is kept): see to the machine, then run "
                         "the batch again", item=worker.run_id)


def worker_tags(run_id: str) -> dict[str, str]:
    """The tag a run worker records itself with, as its run starts."""
    return {WORKER_TAG: this_worker(run_id).tag()}


def run_worker(run: dg.DagsterRun) -> Worker | None:
    """The worker the run recorded; None before it did (a re-executed run starts with its
    parent's tags, the parent's worker among them: a tag of another run is not its own)."""
    tag = run.tags.get(WORKER_TAG)
    worker = Worker.parse(tag) if tag else None
    return worker if worker is not None and worker.run_id == run.run_id else None


def fail_if_dead(instance: dg.DagsterInstance, run: dg.DagsterRun, retry: bool = True) -> bool:
    """Marks an unfinished run whose worker is gone as failed and frees its concurrency slots; True
    if it did. `retry=False`: the run retry is not launched (the caller runs the batch itself)."""
    worker = run_worker(run)
    if run.is_finished or worker is None or worker.alive() is not False:
        return False
    current = instance.get_run_by_id(run.run_id)  # it may have ended just before its worker did
    if current is None or current.is_finished:
        return False
    if not retry:
        instance.add_run_tags(run.run_id, {"dagster/max_retries": "0"})
        current = instance.get_run_by_id(run.run_id)
    gone = RunWorkerGone(worker)
    report_run_error(instance, current, gone)
    instance.report_run_failed(current, message=gone.message_en)
    instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
    return True


def dead_runs_failed(instance: dg.DagsterInstance, tags: dict[str, str], retry: bool = True) -> list[dg.DagsterRun]:
    """Fails the unfinished runs with these tags whose workers are gone; those runs."""
    runs = instance.get_runs(filters=dg.RunsFilter(tags=tags, statuses=UNFINISHED))
    return [r for r in runs if fail_if_dead(instance, r, retry)]


def free_slots_of_ended_runs(instance: dg.DagsterInstance, pool: str) -> list[str]:
    """Frees `pool` slots still held by runs that ended or no longer exist; their run ids."""
    freed = []
    for run_id in instance.event_log_storage.get_concurrency_info(pool).active_run_ids:
        run = instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            instance.event_log_storage.free_concurrency_slots_for_run(run_id)
            freed.append(run_id)
    return freed


def live_runs(instance: dg.DagsterInstance, tags: dict[str, str]) -> list[dg.DagsterRun]:
    """Unfinished runs with these tags."""
    return list(instance.get_runs(filters=dg.RunsFilter(tags=tags, statuses=UNFINISHED)))
