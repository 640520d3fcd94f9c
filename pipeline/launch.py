"""The one way a batch's run is asked for, by whichever caller: the inbox sensor (for batches
handed in through the inbox, the web page or `archive upload`), `archive run` and the demo, and
the web server's own runner (`archive serve --process`). Hand-in only registers a batch.

Two callers at the same moment (the daemon's sensor and the web's runner, say) start one run:
each takes the batch's claim under a per-batch lock, and a claim stands while its run is
unfinished, or for CLAIM_SECONDS while that run is being created.
"""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from pipeline.partitions import scan_batches
from pipeline.workers import live_runs
from stages.services import Services
from storage.db import xact_lock

CLAIM_SECONDS = 120  # longer than a sensor tick's run takes to appear after the tick
INBOX_SENSOR = "scan_batch_inbox"
SENSOR = "sensor:"  # the prefix of the inbox sensor's claims


@dataclass(frozen=True)
class Holder:
    """What holds a batch another caller asked to run: a live run, or a claim whose run is being made."""
    run_id: str
    state: str


def claim_batch_run(services: Services, instance: dg.DagsterInstance, batch_id: str, by: str) -> Holder | None:
    """Registers the batch's partition and claims its next run for `by` (a run id, or the
    sensor's name); None if the claim was taken, else what holds the batch, and the caller must
    not start a run. (Runs whose workers are gone were failed before: by run monitoring in the
    daemon, by `runner.fail_dead_runs` in a process of its own.)"""
    if not instance.has_dynamic_partition(scan_batches.name, batch_id):
        instance.add_dynamic_partitions(scan_batches.name, [batch_id])
    tags = {"batch": batch_id}
    with services.db.transaction() as cur:
        xact_lock(cur, f"batch-run:{batch_id}")
        if running := live_runs(instance, tags):
            return Holder(running[0].run_id, running[0].status.value)
        cur.execute("SELECT claimed_by FROM batch_run_claims WHERE batch_id = %s"
                    " AND claimed_at > now() - make_interval(secs => %s)", (batch_id, CLAIM_SECONDS))
        fresh = cur.fetchone()
        if fresh is not None and not _claim_spent(instance, batch_id, fresh["claimed_by"]):
            return Holder(fresh["claimed_by"], "being started")
        cur.execute("INSERT INTO batch_run_claims (batch_id, claimed_by) VALUES (%s, %s) ON CONFLICT (batch_id)"
                    " DO UPDATE SET claimed_by = EXCLUDED.claimed_by, claimed_at = now()", (batch_id, by))
    return None


def release_claim(services: Services, batch_id: str, by: str) -> None:
    """Drops `by`'s claim once its run was made and ended (or could not be made): from then on the
    run's own state, not the claim, says whether the batch is busy."""
    with services.db.transaction() as cur:
        cur.execute("DELETE FROM batch_run_claims WHERE batch_id = %s AND claimed_by = %s", (batch_id, by))


def has_run(instance: dg.DagsterInstance, batch_id: str) -> bool:
    """Whether a run of the batch was ever started (by the sensor, or in a process of its own); a
    run the daemon made but never launched (NOT_STARTED) does not count: it is asked for again."""
    return any(r.status != dg.DagsterRunStatus.NOT_STARTED
               for r in instance.get_runs(filters=dg.RunsFilter(tags={"batch": batch_id}), limit=20))


def never_launched(instance: dg.DagsterInstance, batch_id: str) -> bool:
    """The sensor's run of the batch was made but never launched (the daemon stopped in between);
    asked for again under its run key, Dagster launches that same run."""
    runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/run_key": batch_id}), limit=5)
    return bool(runs) and all(r.status == dg.DagsterRunStatus.NOT_STARTED for r in runs)


def run_key_tags(batch_id: str) -> dict[str, str]:
    """Tags that make a run made outside the daemon count as the inbox sensor's run of the batch,
    so that a request of the sensor's still pending (a tick resumed after a restart) is skipped."""
    return {"dagster/run_key": batch_id, "dagster/sensor_name": INBOX_SENSOR}


def _claim_spent(instance: dg.DagsterInstance, batch_id: str, claimed_by: str) -> bool:
    """Whether the run a fresh claim was taken for was made and has ended."""
    if claimed_by.startswith(SENSOR):
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/run_key": batch_id}), limit=20)
        return bool(runs) and all(r.is_finished for r in runs)
    run = instance.get_run_by_id(claimed_by)
    return run is not None and run.is_finished

