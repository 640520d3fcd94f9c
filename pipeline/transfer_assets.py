"""The transfer assets: one package per transfer (a dynamic partition per transfer requested),
the watch on receipts that are late, and the delivery of the outbox's records to the national
platform. Each calls one function of `stages/transfer.py` or `crossregion/outbox.py`."""

import dagster as dg

from crossregion import outbox
from crossregion.client import PlatformClient
from pipeline.failures import known_failures
from pipeline.partitions import transfers
from pipeline.resources import ArchiveServicesResource, SignerResource
from stages.transfer import package_transfer, watch_receipts


@dg.asset(name="transfer_package", partitions_def=transfers, group_name="transfer", kinds={"bagit", "s3"})
@known_failures
def transfer_package_asset(context: dg.AssetExecutionContext, services: ArchiveServicesResource,
                           signer: SignerResource) -> dg.MaterializeResult:
    """The BagIt package of one requested transfer, its four-property checks passed, stored and
    verified, and its signed record: the transfer becomes available to the receiving agency."""
    r = package_transfer(services.services(), context.partition_key, signer.signer())
    return dg.MaterializeResult(metadata={
        "file_number": r.file_number, "materials": r.material_count, "pages": r.page_count,
        "package_key": r.package_key, "package_sha256": r.package_sha256, "package_bytes": r.package_bytes,
        "record_key": r.record_key, "made": r.made})


@dg.asset(name="transfer_receipts", group_name="transfer", kinds={"postgres"},
          check_specs=[dg.AssetCheckSpec("receipts_on_time", asset="transfer_receipts",
                                         description="every available transfer has its receipt within "
                                                     "ARCHIVE_RECEIPT_OVERDUE_HOURS")])
@known_failures
def transfer_receipts_asset(context: dg.AssetExecutionContext, services: ArchiveServicesResource):
    """Transfers waiting for a receipt: those late flagged (the staff web shows them too), those
    past their record's expiry expired."""
    w = watch_receipts(services.services())
    late = ", ".join(f"{t.transfer_id} ({t.file_number} → {t.receiving_agency})" for t in w.overdue[:50])
    yield dg.MaterializeResult(metadata={"overdue": len(w.overdue), "newly_overdue": w.newly_overdue,
                                         "expired": w.expired, "overdue_transfers": late or "none"})
    yield dg.AssetCheckResult(check_name="receipts_on_time", passed=not w.overdue,
                              severity=dg.AssetCheckSeverity.WARN,
                              metadata={"overdue": len(w.overdue), "transfers": late or "none"})


@dg.asset(name="platform_deliveries", group_name="transfer", kinds={"http", "postgres"},
          check_specs=[dg.AssetCheckSpec("platform_records_delivered", asset="platform_deliveries",
                                         description="no record refused by the national platform; none waiting "
                                                     "longer than 15 minutes")])
@known_failures
def platform_deliveries_asset(context: dg.AssetExecutionContext, services: ArchiveServicesResource,
                              signer: SignerResource):
    """Every transfer step's record that is due, sent to the national platform (ARCHIVE_PLATFORM_URL)
    exactly once and in each transfer's order; what it refused stays failed, with its reason, until
    `archive platform retry`."""
    svc = services.services()
    client = PlatformClient.from_settings(svc.settings)
    if client is None:
        context.log.warning("ARCHIVE_PLATFORM_URL is not set: the records wait in the outbox")
        run = outbox.DeliveryRun()
    else:
        try:
            run = outbox.deliver_due(svc.db, client, signer.signer(), workers=4, seconds=50,
                                     retry_seconds=float(svc.settings.platform_retry_seconds))
        finally:
            client.close()
    b = outbox.backlog(svc.db)
    d = run.delays
    refused = "; ".join(f"{f['file_number']} {f['status']}: {f['failure_code']} {f['failure']}"[:200]
                        for f in b.failures[:20])
    yield dg.MaterializeResult(metadata={
        "delivered": run.count("delivered"), "duplicates": run.count("duplicate"), "to_retry": run.count("retry"),
        "refused_now": run.count("refused"), "pending": b.pending, "refused": b.failed,
        "delay_p50_s": d[len(d) // 2] if d else 0.0, "delay_max_s": d[-1] if d else 0.0})
    late = b.oldest_pending_seconds is not None and b.oldest_pending_seconds > 15 * 60
    yield dg.AssetCheckResult(check_name="platform_records_delivered", passed=b.healthy and not late,
                              severity=dg.AssetCheckSeverity.ERROR if not b.healthy else dg.AssetCheckSeverity.WARN,
                              metadata={"refused": b.failed, "pending": b.pending,
                                        "oldest_pending_s": b.oldest_pending_seconds or 0.0,
                                        "why": refused or "none"})
