"""The hand-in of a batch folder the inbox sensor found ready: a run of its own, so that the copy
into staging (minutes for a large batch) never runs inside a sensor tick. It only registers the
batch; the sensor's next look asks for the batch's run, as for a batch handed in on the web.
"""

import dagster as dg

from pipeline.executor import in_process
from pipeline.failures import known_failures
from pipeline.resources import ArchiveServicesResource
from settings import Settings
from stages.inbox import ReadyFolder, hand_in

HAND_IN_JOB = "hand_in_inbox_folder"


class FolderConfig(dg.Config):
    folder: str     # the folder's name in the inbox
    signature: str  # the digest of its content when it was found stable


@dg.op
@known_failures
def hand_in_folder(context: dg.OpExecutionContext, config: FolderConfig, services: ArchiveServicesResource) -> str:
    """Copies the folder's files into staging and registers its batch."""
    batch_id = hand_in(Settings.from_env().inbox_dir, ReadyFolder(config.folder, config.signature),
                       services.services())
    context.log.info(f"inbox folder {config.folder} handed in as batch {batch_id}")
    context.add_output_metadata({"batch": batch_id})
    return batch_id


# in the run worker's own process: it runs where the daemon reads the inbox, which a Celery
# worker on another machine may not see
@dg.job(name=HAND_IN_JOB, executor_def=in_process, tags={"dagster/max_retries": "2"})
def hand_in_job():
    hand_in_folder()


def hand_in_request(ready: ReadyFolder) -> dg.RunRequest:
    """One run per folder, content and attempt: the daemon asks for the same one once (its run key)."""
    return dg.RunRequest(run_key=hand_in_key(ready), job_name=HAND_IN_JOB,
                         run_config={"ops": {"hand_in_folder": {"config": {"folder": ready.name,
                                                                           "signature": ready.digest}}}},
                         tags={"inbox_folder": ready.name})


def hand_in_key(ready: ReadyFolder) -> str:
    return f"inbox:{ready.name}:{ready.digest}" + (f":{ready.attempt}" if ready.attempt else "")


def hand_ins_ended(instance: dg.DagsterInstance, requests: dict[str, str]) -> tuple[list[str], list[str]]:
    """(folders whose hand-in run succeeded, those whose run failed or was cancelled)."""
    succeeded, failed = [], []
    for name, key in requests.items():
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/run_key": key}), limit=1)
        if runs and runs[0].status == dg.DagsterRunStatus.SUCCESS:
            succeeded.append(name)
        elif runs and runs[0].status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED) \
                and runs[0].tags.get("dagster/will_retry") != "true":  # a run retry of it is still to come
            failed.append(name)
    return succeeded, failed
