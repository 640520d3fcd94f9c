"""Which process runs a Dagster run, and whether it is still alive.

A run worker killed with SIGKILL leaves its run STARTED for ever, holding its concurrency slot
(the `ocr` pool has one): nothing in the worker is left to say it ended. So each run worker
records itself in a run tag (host, boot and process with its start time, which a reused PID
does not share), and run monitoring (pipeline/launcher.py) and a new in-process run
(`dead_runs_failed`) ask the operating system whether that process still exists.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

WORKER_TAG = "archive/worker"
UNFINISHED = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
              dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


@dataclass(frozen=True)
class Worker:
    host: str
    boot: str
    pid: int
    started: str  # the process's start time in clock ticks since boot (/proc/PID/stat, field 22)

    def tag(self) -> str:
        return f"{self.host}|{self.boot}|{self.pid}|{self.started}"

    @classmethod
    def parse(cls, tag: str) -> Worker | None:
        parts = tag.split("|")
        if len(parts) != 4 or not parts[2].isdigit():
            return None
        return cls(parts[0], parts[1], int(parts[2]), parts[3])

    def alive(self) -> bool | None:
        """True or False for a worker on this machine; None where this machine cannot know."""
        if self.host != socket.gethostname():
            return None
        if self.boot != _boot_id():
            return False  # the machine restarted since: every process of the old boot is gone
        stat = _stat(self.pid)
        return stat is not None and stat[0] != "Z" and stat[1] == self.started


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _stat(pid: int) -> tuple[str, str] | None:
    """(state, start time) of a process, None when there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # the command name in parentheses may hold spaces
    return fields[0], fields[19]


def this_worker() -> Worker:
    stat = _stat(os.getpid())
    return Worker(socket.gethostname(), _boot_id(), os.getpid(), stat[1] if stat else "")


def worker_tags() -> dict[str, str]:
    """The tag a run worker records itself with (in-process runs pass it when they start)."""
    return {WORKER_TAG: this_worker().tag()}


def run_worker(instance: dg.DagsterInstance, run: dg.DagsterRun) -> Worker | None:
    """The worker the run recorded; None before it did, for a re-executed run starts with its
    parent's tags, the parent's worker among them."""
    tag = run.tags.get(WORKER_TAG)
    parent_id = run.tags.get("dagster/parent_run_id")
    parent = instance.get_run_by_id(parent_id) if tag and parent_id else None
    if not tag or (parent is not None and parent.tags.get(WORKER_TAG) == tag):
        return None
    return Worker.parse(tag)


def fail_if_dead(instance: dg.DagsterInstance, run: dg.DagsterRun) -> bool:
    """Marks an unfinished run whose worker is gone as failed and frees its concurrency slots; True if it did."""
    worker = run_worker(instance, run)
    if run.is_finished or worker is None or worker.alive() is not False:
        return False
    instance.report_run_failed(run, message=f"run worker (pid {worker.pid} on {worker.host}) is gone: it was "
                                            "killed or its machine stopped; the run did not finish")
    instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
    return True


def dead_runs_failed(instance: dg.DagsterInstance, tags: dict[str, str]) -> list[dg.DagsterRun]:
    """Fails the unfinished runs with these tags whose workers are gone; those runs."""
    runs = instance.get_runs(filters=dg.RunsFilter(tags=tags, statuses=UNFINISHED))
    return [r for r in runs if fail_if_dead(instance, r)]


def live_runs(instance: dg.DagsterInstance, tags: dict[str, str]) -> list[dg.DagsterRun]:
    """Unfinished runs with these tags (those whose workers are gone failed first)."""
    return list(instance.get_runs(filters=dg.RunsFilter(tags=tags, statuses=UNFINISHED)))
