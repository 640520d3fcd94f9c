"""The transfer assets: one package per transfer (a dynamic partition per transfer requested),
and the watch on receipts that are late. Each calls one function of `stages/transfer.py`."""

import dagster as dg

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

