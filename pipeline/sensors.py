"""The sensors: one dynamic partition and one run per scan batch, whichever way it came in, and
per transfer requested.

Folders dropped into the inbox are handed in once complete and stable, each by a run of its own
(pipeline/hand_in.py); then, as every batch handed in through the web page or `archive upload`,
their batch only needs its run.
"""

import json
import time

import dagster as dg

from crossregion.outbox import next_due_in, oldest_due
from pipeline.hand_in import hand_in_key, hand_in_request, hand_ins_ended
from pipeline.launch import INBOX_SENSOR, SENSOR, claim_batch_run, has_run, never_launched
from pipeline.partitions import transfers
from pipeline.resources import ArchiveServicesResource
from pipeline.run_failures import record_failed_batches
from settings import Settings
from stages.inbox import MAX_HAND_IN_ATTEMPTS, InboxState, ready_folders
from stages.progress import awaiting_processing
from stages.transfer import transfers as transfers_of


def make_inbox_sensor(job, hand_in_job) -> dg.SensorDefinition:  # the batch job; the hand-in job
    @dg.sensor(name=INBOX_SENSOR, jobs=[job, hand_in_job], minimum_interval_seconds=15,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="Asks for a hand-in run of each complete, settled batch folder of the inbox"
                           " (ARCHIVE_INBOX), and for the run of every batch handed in (inbox, web upload,"
                           " CLI upload)")
    def scan_batch_inbox(context: dg.SensorEvaluationContext, services: ArchiveServicesResource) -> dg.SensorResult:
        state = InboxState.from_dict(json.loads(context.cursor) if context.cursor else None)
        settings = Settings.from_env()
        svc = services.services()
        # a failed hand-in (the store away, the folder changed under it) is asked for again once
        # the folder has settled, a few times; until then the folder counts as handed in
        for name in state.after_runs(*hand_ins_ended(context.instance, state.requests)):
            context.log.warning(f"inbox folder {name}: its hand-in failed {MAX_HAND_IN_ATTEMPTS} times; it is "
                                "handed in again when its content changes (the failed runs say why)")
        ready, new_state = ready_folders(settings.inbox_dir, state, settings.inbox_settle_seconds)
        new_state.requests.update({r.name: hand_in_key(r) for r in ready})
        # a batch with a run (made here, by `archive run` or by the web's runner) has had its turn;
        # the claim keeps two callers at once from both starting one (pipeline/launch.py)
        claimed = [b for b in awaiting_processing(svc)
                   if never_launched(context.instance, b)
                   or (not has_run(context.instance, b)
                       and claim_batch_run(svc, context.instance, b, f"{SENSOR}{b}") is None)]
        return dg.SensorResult(
            # run_key = batch id: the daemon never launches the same batch twice, restarts included
            run_requests=[*map(hand_in_request, ready),
                          *(dg.RunRequest(run_key=b, job_name=job.name, partition_key=b, tags={"batch": b})
                            for b in claimed)],
            cursor=json.dumps(new_state.to_dict(), ensure_ascii=False))

    return scan_batch_inbox


def make_failed_batch_sensor() -> dg.SensorDefinition:
    @dg.sensor(name="failed_batch_runs", minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
               description="Says on the staff web why a batch's newest run failed once no retry is coming, when the"
                           " run ended outside its steps (its worker gone, say): a failed step says so itself")
    def failed_batch_runs(context: dg.SensorEvaluationContext, services: ArchiveServicesResource) -> dg.SkipReason:
        recorded = record_failed_batches(context.instance, services.services())
        return dg.SkipReason(f"recorded for the staff web why the runs of {', '.join(recorded)} failed" if recorded
                             else "no failed batch run without its reason")

    return failed_batch_runs


def make_transfer_sensor(job) -> dg.SensorDefinition:  # job: the transfer package job
    @dg.sensor(name="transfer_requests", job=job, minimum_interval_seconds=15,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="Packages every transfer requested (staff web, CLI, API): one partition and run each")
    def transfer_requests(context: dg.SensorEvaluationContext, services: ArchiveServicesResource) -> dg.SensorResult:
        svc = services.services()
        waiting = [t.transfer_id for t in transfers_of(svc, sender=svc.agency, status=("requested", "packaged"))]
        new = [t for t in waiting if not context.instance.has_dynamic_partition(transfers.name, t)]
        return dg.SensorResult(
            # run_key = transfer id: one run per transfer, restarts included
            run_requests=[dg.RunRequest(run_key=t, partition_key=t, tags={"transfer": t}) for t in waiting],
            dynamic_partitions_requests=[transfers.build_add_request(new)] if new else [])

    return transfer_requests


RELAUNCH_SECONDS = 300  # longer than a delivery run (50 s of sending)


def relaunch_window() -> int:
    return int(time.time() // RELAUNCH_SECONDS)


def make_platform_sensor(job) -> dg.SensorDefinition:  # job: the platform delivery job
    @dg.sensor(name="platform_outbox", job=job, minimum_interval_seconds=10,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="Runs the delivery to the national platform whenever a record is due")
    def platform_outbox(context: dg.SensorEvaluationContext, services: ArchiveServicesResource):
        svc = services.services()
        if not svc.settings.platform_url:
            return dg.SkipReason("ARCHIVE_PLATFORM_URL is not set: records wait in the outbox")
        due = next_due_in(svc.db)
        if due is None or due > 0:
            return dg.SkipReason("nothing due")
        # one key per due head and attempt count: a run in progress is not launched twice, a retry
        # is; and per RELAUNCH_SECONDS, so that a run that died before recording any attempt (the
        # same head, the same count) is followed by another (two at once claim different records)
        head = oldest_due(svc.db)
        return dg.RunRequest(run_key=f"{head}@{relaunch_window()}", tags={"platform": "deliver"})

    return platform_outbox
