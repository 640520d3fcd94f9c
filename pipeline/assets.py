"""The five assets, partitioned by scan batch. Each calls one function of `stages/`."""

import dagster as dg

from errors import BadInput
from pipeline.failures import known_failures
from pipeline.partitions import scan_batches
from pipeline.resources import ArchiveServicesResource, OcrEngineResource, SignerResource
from stages.archive import archive_batch
from stages.index import index_batch, link_problems
from stages.intake import intake_batch, load_catalog
from stages.ocr import ocr_batch
from stages.transfer import TransferNotReady, prepare_transfer

DEFAULT_RECEIVER = "广东省人才交流服务中心"


@dg.asset(name="intake", partitions_def=scan_batches, group_name="scan_batch", kinds={"postgres", "s3"})
@known_failures
def intake_asset(context: dg.AssetExecutionContext, services: ArchiveServicesResource) -> dg.MaterializeResult:
    """Validates the handed-in batch: manifest, scan files by content, catalog-to-image link."""
    r = intake_batch(context.partition_key, services.services())
    for finding in r.findings:
        (context.log.error if finding.severity == "error" else context.log.warning)(str(finding))
    return dg.MaterializeResult(metadata={
        "accepted_scans": r.accepted, "rejected_scans": r.rejected, "warnings": r.warnings,
        "files": r.files, "materials": r.materials, "findings": len(r.findings), "reused": r.reused})


GATE_CHECKS = {
    "empty": ("no_empty_pages", "no non-blank page came out without text"),
    "too_short_for_ink": ("text_length_plausible", "no page's text is far shorter than its ink suggests"),
    "low_confidence": ("confidence_ok", "no page's mean line confidence is below the gate"),
}


@dg.asset(name="ocr", deps=["intake"], partitions_def=scan_batches, group_name="scan_batch", pool="ocr",
          kinds={"onnx", "tesseract"},
          check_specs=[dg.AssetCheckSpec(name, asset="ocr", description=f"{text}, after the fallback engine")
                       for name, text in GATE_CHECKS.values()])
@known_failures
def ocr_asset(context: dg.AssetExecutionContext, services: ArchiveServicesResource,
              ocr_engine: OcrEngineResource):
    """OCRs every accepted scan not yet OCR'd by this engine version (cache keyed by sha256).

    Pages failing a quality gate were re-run with the fallback engine; those still failing are
    listed here for human review, never passed silently."""
    r = ocr_batch(context.partition_key, services.services(), ocr_engine.engine_config(),
                  ocr_engine.workers or None)
    yield dg.MaterializeResult(metadata={
        "scans_ocred": r.files_ocred, "scans_cached": r.files_cached, "pages_ocred": r.pages_ocred,
        "fallback_pages": r.fallback_pages, "review_pages": ", ".join(r.review_pages[:50]) or "none",
        "pages_per_second": round(r.pages_per_second, 2), "engine": ocr_engine.engine_config().key})
    for gate, (name, _) in GATE_CHECKS.items():
        failing = r.gate_failures.get(gate, [])
        yield dg.AssetCheckResult(check_name=name, passed=not failing, severity=dg.AssetCheckSeverity.ERROR,
                                  metadata={"pages": ", ".join(failing[:50]) or "none", "count": len(failing)})


@dg.asset(name="index", deps=["ocr"], partitions_def=scan_batches, group_name="scan_batch", kinds={"postgres"},
          check_specs=[dg.AssetCheckSpec("catalog_image_link", asset="index",
                                         description="数据挂接: every material has its catalogued pages, numbered "
                                                     "1..n, and every listed page file is under one material")])
@known_failures
def index_asset(context: dg.AssetExecutionContext, services: ArchiveServicesResource,
                ocr_engine: OcrEngineResource):
    """Files, materials, pages and OCR text into PostgreSQL, searchable in Chinese."""
    svc = services.services()
    r = index_batch(context.partition_key, svc, ocr_engine.engine_config().key)
    yield dg.MaterializeResult(metadata={"files": r.files, "materials": r.materials, "pages": r.pages,
                                         "rows_written": r.rows_written})
    problems = link_problems(context.partition_key, svc)
    yield dg.AssetCheckResult(check_name="catalog_image_link", passed=not problems,
                              severity=dg.AssetCheckSeverity.ERROR,
                              metadata={"problems": "; ".join(problems[:50]) or "none", "count": len(problems)})


@dg.asset(name="archive", deps=["index"], partitions_def=scan_batches, group_name="scan_batch", kinds={"s3"})
@known_failures
def archive_asset(context: dg.AssetExecutionContext, services: ArchiveServicesResource,
                  ocr_engine: OcrEngineResource) -> dg.MaterializeResult:
    """Originals, OCR results and one searchable PDF per material into preservation storage, verified."""
    r = archive_batch(context.partition_key, services.services(), ocr_engine.engine_config().key)
    return dg.MaterializeResult(metadata={"stored": r.stored, "already_stored": r.already_stored,
                                          "bytes_stored": r.bytes_stored, "searchable_pdfs_made": r.pdfs_made})


class TransferConfig(dg.Config):
    file_number: str = ""  # empty: the batch's first file (the demo's default)
    receiving_agency: str = DEFAULT_RECEIVER
    reason: str = "工作调动"


@dg.asset(name="transfer", deps=["archive"], partitions_def=scan_batches, group_name="scan_batch",
          kinds={"json"})
@known_failures
def transfer_asset(context: dg.AssetExecutionContext, config: TransferConfig, services: ArchiveServicesResource,
                   signer: SignerResource) -> dg.MaterializeResult:
    """A signed transfer record for one file of the batch, addressed to a receiving agency: the
    one configured, else the batch's first file (the demo's), which is skipped with a warning
    when it is not ready, so a problem with one file never fails the batch's run."""
    svc = services.services()
    number = config.file_number
    files = sorted(f.file_number for f in load_catalog(context.partition_key, svc).files)
    if number and number not in files:  # a run transfers a file of its own batch (its agency's), no other
        raise BadInput(f"档案 {number} 不在批次 {context.partition_key} 中",
                       f"file {number} is not in batch {context.partition_key}", item=number)
    if not number:
        if not files:
            context.log.warning("no file of this batch passed intake: nothing to transfer")
            return dg.MaterializeResult(metadata={"transfer_id": "none"})
        number = files[0]
    try:
        r = prepare_transfer(number, config.receiving_agency, svc, signer.signer(), config.reason)
    except TransferNotReady as exc:
        if config.file_number:
            raise
        context.log.warning(str(exc))
        return dg.MaterializeResult(metadata={"transfer_id": "none", "not_ready": str(exc)})
    return dg.MaterializeResult(metadata={
        "transfer_id": r.transfer_id, "file_number": r.file_number, "receiving_agency": r.receiving_agency,
        "record_key": r.record_key, "record_sha256": r.record_sha256, "created": r.created})


ASSETS = [intake_asset, ocr_asset, index_asset, archive_asset, transfer_asset]
