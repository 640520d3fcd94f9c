"""The Celery app a worker runs (`archive worker`, i.e. `celery -A pipeline.celery_app worker`):
dagster-celery's own tasks, on the broker of ARCHIVE_CELERY_BROKER. A worker needs the same
environment as the daemon (databases, object store, DAGSTER_HOME): it runs the steps itself."""

import importlib

from celery import signals
from dagster._core.instance.ref import InstanceRef
from dagster_celery.executor import CeleryExecutor
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_execute_job_task, create_resume_job_task, create_task

import pipeline.definitions  # noqa: F401  loaded as the worker starts, not inside its first step
from pipeline.celery_liveness import Heartbeat, worker_token
from settings import Settings


def _load_instance_classes(dagster_home: str) -> None:
    """Imports the instance's storage classes, which each step opens anew (DagsterInstance.from_ref):
    left to the worker's first step, the imports delayed it, and every later step waits on it
    (docs/benchmarks.md, 2026-12-03 evening). Nothing is opened: a worker may start before its database."""
    importlib.import_module("dagster._core.storage.base_storage")
    try:
        ref = InstanceRef.from_dir(dagster_home)
    except Exception:  # noqa: BLE001  no readable instance yet: the first step will say why
        return
    for data in (ref.storage_data, ref.run_storage_data, ref.event_storage_data, ref.schedule_storage_data,
                 ref.compute_logs_data, ref.run_launcher_data, ref.run_coordinator_data):
        if data is not None:
            importlib.import_module(data.module_name)


_settings = Settings.from_env()
_load_instance_classes(_settings.dagster_home)
app = make_app(CeleryExecutor.for_cli(broker=_settings.celery_broker, backend=_settings.celery_broker).app_args())
execute_plan = create_task(app)
execute_job = create_execute_job_task(app)
resume_job = create_resume_job_task(app)

_heartbeat: Heartbeat | None = None  # this worker process's, from worker_init on


@signals.worker_init.connect
def _start_heartbeat(sender, **_kwargs) -> None:
    """The worker's sign of life, from before it takes a step (pipeline/celery_liveness.py)."""
    global _heartbeat
    _heartbeat = Heartbeat(app.backend.client, worker_token(sender.hostname))
    _heartbeat.start()


@signals.task_prerun.connect
def _record_step(task_id, **_kwargs) -> None:
    """Each step names its worker's heartbeat, for the run worker waiting on it."""
    if _heartbeat is not None:
        _heartbeat.record_step(task_id)


@signals.task_postrun.connect
def _step_done(task_id, **_kwargs) -> None:
    if _heartbeat is not None:
        _heartbeat.step_done(task_id)


@signals.worker_shutdown.connect
def _stop_heartbeat(sender, **_kwargs) -> None:
    if _heartbeat is not None:
        _heartbeat.stop()
