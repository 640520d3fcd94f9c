"""The run launcher of this project's Dagster instance (dagster_home/dagster.yaml): Dagster's own
launcher, plus the worker health check its run monitoring needs to fail a run whose worker was
killed (the default launcher has none, so such a run stays STARTED and keeps its pool slot)."""

from __future__ import annotations

import dagster as dg
from dagster._core.launcher.base import CheckRunHealthResult, WorkerStatus

from pipeline.run_failures import report_run_error
from pipeline.workers import RunWorkerGone, run_worker


class ArchiveRunLauncher(dg.DefaultRunLauncher):
    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        worker = run_worker(run)
        # no tag yet (the worker is starting: run monitoring's start timeout covers it), or a
        # worker on another machine, which only that machine can check: taken as running
        alive = worker.alive() if worker else None
        if alive is False:
            # run monitoring fails the run on this answer: its known state is left for the staff web,
            # unless the run ended by itself since monitoring looked (its worker then exits too)
            current = self._instance.get_run_by_id(run.run_id)
            if current is not None and not current.is_finished:
                report_run_error(self._instance, current, RunWorkerGone(worker))
            return CheckRunHealthResult(WorkerStatus.FAILED, f"pid {worker.pid} on {worker.host} is gone")
        return CheckRunHealthResult(WorkerStatus.RUNNING)
