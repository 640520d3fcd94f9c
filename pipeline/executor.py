"""Executors of the jobs: Dagster's own, each made to record its run worker first (pipeline/workers.py),
so that run monitoring can tell a killed worker from a slow one."""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg
from dagster._core.executor.base import Executor

from errors import ArchiveError
from pipeline.celery_liveness import WatchedStep
from pipeline.run_failures import report_run_error
from pipeline.workers import worker_tags
from settings import Settings


class _RecordingWorker(Executor):
    def __init__(self, inner: Executor) -> None:
        self._inner = inner

    def execute(self, plan_context, execution_plan) -> Iterator[dg.DagsterEvent]:
        # this runs in the run worker itself, before any step starts
        plan_context.instance.add_run_tags(plan_context.run_id, worker_tags(plan_context.run_id))
        try:
            yield from self._run_steps(plan_context, execution_plan)
        except ArchiveError as ended:  # a known state of the run itself (StepWorkerLost): named for the staff web
            try:
                report_run_error(plan_context.instance, plan_context.dagster_run, ended)
            except Exception as unrecorded:  # the database away: the run's own error still goes up
                plan_context.log.warning(f"the run's failure could not be recorded for the staff web: {unrecorded}")
            raise

    def _run_steps(self, plan_context, execution_plan) -> Iterator[dg.DagsterEvent]:
        yield from self._inner.execute(plan_context, execution_plan)

    def __getattr__(self, name: str):
        # an executor's own loop reads its settings through the run's executor (Celery: app_args)
        return getattr(self._inner, name)

    @property
    def retries(self):
        return self._inner.retries

    @property
    def step_dependency_config(self):
        return self._inner.step_dependency_config


class _WatchingCeleryWorker(_RecordingWorker):
    """The Celery executor's own loop, each step held as a WatchedStep: a step whose worker died
    is sent again rather than waited on for ever (pipeline/celery_liveness.py)."""

    def _run_steps(self, plan_context, execution_plan) -> Iterator[dg.DagsterEvent]:
        from dagster_celery.core_execution_loop import core_celery_execution_loop
        from dagster_celery.executor import _submit_task  # what CeleryExecutor.execute sends each step with

        def send(app, context, step, queue, priority, known_state) -> WatchedStep:
            return WatchedStep(lambda: _submit_task(app, context, step, queue, priority, known_state), step.key,
                               plan_context.log.warning)

        yield from core_celery_execution_loop(plan_context, execution_plan, step_execution_fn=send)


def recording_worker(inner: dg.ExecutorDefinition, wrapper: type[_RecordingWorker] = _RecordingWorker
                     ) -> dg.ExecutorDefinition:
    """`inner` with the same name and configuration, recording its run worker."""
    create = inner.executor_creation_fn
    assert create is not None

    return dg.ExecutorDefinition(name=inner.name, config_schema=inner.config_schema,
                                 requirements=inner.get_requirements, description=inner.description,
                                 executor_creation_fn=lambda init_context: wrapper(create(init_context)))


CELERY_TICK_SECONDS = 0.1

multiprocess = recording_worker(dg.multiprocess_executor)
in_process = recording_worker(dg.in_process_executor)


def configured_executor(settings: Settings) -> dg.ExecutorDefinition:
    """The executor ARCHIVE_EXECUTOR names, recording its run worker: in_process (one process),
    multiprocess (a process per step on this machine), celery (each step a task for the Celery
    workers listening on ARCHIVE_CELERY_BROKER, on any machine: `archive worker`); unset, multiprocess."""
    if settings.executor == "celery":
        import dagster_celery.core_execution_loop
        from dagster_celery import celery_executor

        # the run worker looks for finished steps every second by default: each hand-over from one
        # step to the next waited up to that long (about 1 s a step, measured); Redis answers far faster
        dagster_celery.core_execution_loop.TICK_SECONDS = CELERY_TICK_SECONDS

        return recording_worker(celery_executor.configured(
            {"broker": settings.celery_broker, "backend": settings.celery_broker}, name="celery"),
            _WatchingCeleryWorker)
    return in_process if settings.executor == "in_process" else multiprocess
