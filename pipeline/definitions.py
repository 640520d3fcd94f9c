"""Entry point loaded by `dagster dev -m pipeline.definitions` and `dagster definitions validate`."""

import dagster as dg

from pipeline.assets import ASSETS
from pipeline.executor import configured_executor
from pipeline.hand_in import hand_in_job
from pipeline.partitions import BATCH_JOB
from pipeline.preservation_assets import PRESERVATION_ASSETS, fixity_audit_asset, inventories_asset, replication_asset
from pipeline.resources import WorkUnitsResource, archive_resources
from pipeline.sensors import make_failed_batch_sensor, make_inbox_sensor, make_platform_sensor, make_transfer_sensor
from pipeline.transfer_assets import platform_deliveries_asset, transfer_package_asset, transfer_receipts_asset
from settings import Settings

# Read once as the code location loads: bad settings stop it there, every problem named, not a run later.
SETTINGS = Settings.from_env()

# A run retry runs every step again, each skipping what is stored: Dagster 1.13's retry "from
# failure" drops a unit step that never started after its plan succeeded, and the batch then fails.
batch_job = dg.define_asset_job(BATCH_JOB, selection=dg.AssetSelection.assets(*ASSETS),
                                tags={"dagster/retry_strategy": "ALL_STEPS"})
transfer_job = dg.define_asset_job("package_transfer", selection=dg.AssetSelection.assets(transfer_package_asset))
receipts_job = dg.define_asset_job("watch_receipts", selection=dg.AssetSelection.assets(transfer_receipts_asset))
platform_job = dg.define_asset_job("deliver_to_platform", selection=dg.AssetSelection.assets(platform_deliveries_asset))
replicate_job = dg.define_asset_job("replicate_archive",
                                    selection=dg.AssetSelection.assets(replication_asset, inventories_asset))
fixity_job = dg.define_asset_job("audit_fixity", selection=dg.AssetSelection.assets(fixity_audit_asset))

defs = dg.Definitions(
    assets=[*ASSETS, transfer_package_asset, transfer_receipts_asset, platform_deliveries_asset, *PRESERVATION_ASSETS],
    jobs=[batch_job, hand_in_job, transfer_job, receipts_job, platform_job, replicate_job, fixity_job],
    sensors=[make_inbox_sensor(batch_job, hand_in_job), make_failed_batch_sensor(),
             make_transfer_sensor(transfer_job), make_platform_sensor(platform_job)],
    schedules=[dg.ScheduleDefinition(name="receipts_every_15_minutes", job=receipts_job,
                                     cron_schedule="*/15 * * * *", default_status=dg.DefaultScheduleStatus.RUNNING,
                                     description="flags transfers whose receipt is late; expires those past their "
                                                 "record's expiry"),
               dg.ScheduleDefinition(name="replicas_every_10_minutes", job=replicate_job, cron_schedule="*/10 * * * *",
                                     default_status=dg.DefaultScheduleStatus.RUNNING,
                                     description="copies to each replica what it lacks; writes the inventories of "
                                                 "files that changed"),
               dg.ScheduleDefinition(name="fixity_daily", job=fixity_job, cron_schedule="30 2 * * *",
                                     default_status=dg.DefaultScheduleStatus.RUNNING,
                                     description="re-reads the day's share of objects on every copy and repairs "
                                                 "what is damaged")],
    # units run side by side (one per core, or per Celery worker): one process each
    resources=archive_resources(units=WorkUnitsResource.from_settings(
        SETTINGS, processes=0 if SETTINGS.executor == "in_process" else 1)),
    executor=configured_executor(SETTINGS),  # ARCHIVE_EXECUTOR; each run's worker recorded for run monitoring
)
