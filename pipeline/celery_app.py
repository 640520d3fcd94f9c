"""The Celery app a worker runs (`archive worker`, i.e. `celery -A pipeline.celery_app worker`):
dagster-celery's own tasks, on the broker of ARCHIVE_CELERY_BROKER. A worker needs the same
environment as the daemon (databases, object store, DAGSTER_HOME): it runs the steps itself."""

from dagster_celery.executor import CeleryExecutor
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_execute_job_task, create_resume_job_task, create_task

import pipeline.definitions  # noqa: F401  loaded as the worker starts, not inside its first step
from settings import Settings

_settings = Settings.from_env()
app = make_app(CeleryExecutor.for_cli(broker=_settings.celery_broker, backend=_settings.celery_broker).app_args())
execute_plan = create_task(app)
execute_job = create_execute_job_task(app)
resume_job = create_resume_job_task(app)
