"""The four assets of a scan batch, partitioned by batch. Each calls one function of `stages/`.
(The transfer assets, partitioned by transfer: pipeline/transfer_assets.py.)"""

from collections.abc import Iterator
from dataclasses import asdict

import dagster as dg

from pipeline.failures import known_failures
from pipeline.partitions import scan_batches
from pipeline.resources import ArchiveServicesResource, OcrEngineResource, WorkUnitsResource
from stages.archive import (
    ObjectsCopied,
    PdfsMade,
    copy_objects,
    finish_archive,
    make_pdfs,
    plan_copy_units,
    plan_pdf_units,
)
from stages.index import index_batch, link_problems
from stages.intake import UnitChecked, check_unit, finish_intake, plan_checks
from stages.ocr import UnitResult, finish_ocr, ocr_unit, plan_units


def _unit_outputs(values: list[list], output_name: str = "result") -> Iterator[dg.DynamicOutput]:
    """One dynamic output per planned unit, numbered in order; one empty unit when none is
    planned, so that the stage's finishing step still runs."""
    for n, value in enumerate(values or [[]]):
        yield dg.DynamicOutput(value, mapping_key=f"unit_{n:05d}", output_name=output_name)


@dg.op(out=dg.DynamicOut(list, io_manager_key="step_outputs"))
@known_failures
def plan_intake_units(context: dg.OpExecutionContext, services: ArchiveServicesResource, units: WorkUnitsResource):
    """Splits the handed-in page files still to check into units of `units.intake_files` (always
    one unit at least, an empty one when all is checked, so that the finishing step runs)."""
    planned = plan_checks(context.partition_key, services.services(), units.checked().intake_files)
    context.log.info(f"{sum(u.files for u in planned)} page files to check, in {len(planned)} units")
    yield from _unit_outputs([u.paths for u in planned])


@dg.op(out=dg.Out(dict, io_manager_key="step_outputs"))
@known_failures
def check_unit_step(context: dg.OpExecutionContext, services: ArchiveServicesResource, units: WorkUnitsResource,
                    paths: list) -> dict:
    """Checks one unit's page files by content: format, resolution, size, blank, skew (a retry
    reads only what is still unchecked)."""
    return asdict(check_unit(context.partition_key, services.services(), paths, units.checked().processes or None))


@dg.op(out=dg.Out(dg.Nothing))
@known_failures
def finish_intake_step(context: dg.OpExecutionContext, services: ArchiveServicesResource, checked: list) -> None:
    """Every page file checked: manifest, catalog-to-image link, each file's verdict recorded."""
    r = finish_intake(context.partition_key, services.services())
    for finding in r.findings:
        (context.log.error if finding.severity == "error" else context.log.warning)(str(finding))
    context.add_output_metadata({
        "accepted_scans": r.accepted, "rejected_scans": r.rejected, "warnings": r.warnings,
        "files": r.files, "materials": r.materials, "findings": len(r.findings), "reused": r.reused,
        "checked_now": sum(UnitChecked(**c).checked for c in checked), "check_units": len(checked)})


@dg.graph_asset(name="intake", partitions_def=scan_batches, group_name="scan_batch", kinds={"postgres", "s3"})
def intake_asset():
    """Validates the handed-in batch: manifest, scan files by content (in units that run in
    parallel on any worker, each retried on its own), catalog-to-image link."""
    return finish_intake_step(plan_intake_units().map(check_unit_step).collect())


@dg.op(ins={"intake": dg.In(dg.Nothing)}, out=dg.DynamicOut(list, io_manager_key="step_outputs"))
@known_failures
def plan_ocr_units(context: dg.OpExecutionContext, services: ArchiveServicesResource,
                   ocr_engine: OcrEngineResource, units: WorkUnitsResource):
    """Splits the scans still to read into units of about `units.ocr_pages` pages. Always one
    unit at least (an empty one when all is cached), so that the finishing step runs."""
    planned = plan_units(context.partition_key, services.services(), ocr_engine.engine_config(),
                         units.checked().ocr_pages)
    context.log.info(f"{sum(u.pages for u in planned)} pages to read, in {len(planned)} units")
    yield from _unit_outputs([u.paths for u in planned])


@dg.op(pool="ocr", out=dg.Out(dict, io_manager_key="step_outputs"))
@known_failures
def ocr_unit_step(context: dg.OpExecutionContext, services: ArchiveServicesResource,
                  ocr_engine: OcrEngineResource, units: WorkUnitsResource, paths: list) -> dict:
    """OCRs one unit's scans (a retry reads only what is still missing)."""
    return asdict(ocr_unit(context.partition_key, services.services(), paths, ocr_engine.engine_config(),
                           units.checked().processes or None))


GATE_CHECKS = {
    "empty": ("no_empty_pages", "no non-blank page came out without text"),
    "too_short_for_ink": ("text_length_plausible", "no page's text is far shorter than its ink suggests"),
    "low_confidence": ("confidence_ok", "no page's mean line confidence is below the gate"),
}
GATE_SPECS = [dg.AssetCheckSpec(name, asset="ocr", description=f"{text}, after the fallback engine")
              for name, text in GATE_CHECKS.values()]


@dg.op(out={"result": dg.Out(dg.Nothing), **{spec.get_python_identifier(): dg.Out(dg.Nothing) for spec in GATE_SPECS}})
@known_failures
def finish_ocr_step(context: dg.OpExecutionContext, services: ArchiveServicesResource,
                    ocr_engine: OcrEngineResource, units: list):
    """Every scan has its result: the batch is OCR'd. Pages failing a quality gate were re-run
    with the fallback engine; those still failing are listed for human review, never passed."""
    r = finish_ocr(context.partition_key, services.services(), ocr_engine.engine_config(),
                   [UnitResult(**u) for u in units])
    context.add_output_metadata({
        "scans_ocred": r.files_ocred, "scans_cached": r.files_cached, "pages_ocred": r.pages_ocred,
        "units": len(units), "fallback_pages": r.fallback_pages,
        "review_pages": ", ".join(r.review_pages[:50]) or "none",
        "pages_per_second": round(r.pages_per_second, 2), "engine": ocr_engine.engine_config().key},
        output_name="result")
    yield dg.Output(None, "result")
    for gate, (name, _) in GATE_CHECKS.items():
        failing = r.gate_failures.get(gate, [])
        yield dg.AssetCheckResult(check_name=name, asset_key="ocr", passed=not failing,
                                  severity=dg.AssetCheckSeverity.ERROR,
                                  metadata={"pages": ", ".join(failing[:50]) or "none", "count": len(failing)})


@dg.graph_asset(name="ocr", ins={"intake": dg.AssetIn(dagster_type=dg.Nothing)}, partitions_def=scan_batches,
                group_name="scan_batch", kinds={"onnx", "tesseract"}, check_specs=GATE_SPECS)
def ocr_asset(intake):
    """OCRs every accepted scan not yet OCR'd by this engine version (cache keyed by sha256), in
    units that run in parallel on any worker, each in the `ocr` pool and retried on its own."""
    return finish_ocr_step(plan_ocr_units(intake).map(ocr_unit_step).collect())


@dg.asset(name="index", deps=["ocr"], partitions_def=scan_batches, group_name="scan_batch", kinds={"postgres"},
          check_specs=[dg.AssetCheckSpec("catalog_image_link", asset="index",
                                         description="数据挂接: every material has its catalogued pages, numbered "
                                                     "1..n, and every listed page file is under one material")])
@known_failures
def index_asset(context: dg.AssetExecutionContext, services: ArchiveServicesResource):
    """Files, materials, pages and OCR text into PostgreSQL, searchable in Chinese."""
    svc = services.services()
    r = index_batch(context.partition_key, svc)
    problems = link_problems(context.partition_key, svc)  # before the materialization: a retry makes one
    yield dg.MaterializeResult(metadata={"files": r.files, "materials": r.materials, "pages": r.pages,
                                         "rows_written": r.rows_written})
    yield dg.AssetCheckResult(check_name="catalog_image_link", passed=not problems,
                              severity=dg.AssetCheckSeverity.ERROR,
                              metadata={"problems": "; ".join(problems[:50]) or "none", "count": len(problems)})


@dg.op(ins={"index": dg.In(dg.Nothing)}, out={"copies": dg.DynamicOut(list, io_manager_key="step_outputs"),
                                               "pdfs": dg.DynamicOut(list, io_manager_key="step_outputs")})
@known_failures
def plan_archive_units(context: dg.OpExecutionContext, services: ArchiveServicesResource, units: WorkUnitsResource):
    """Splits the batch's files to copy into the archive, and its materials still without a
    searchable PDF, into units (always one of each, so that the finish runs)."""
    svc, units = services.services(), units.checked()
    copies = plan_copy_units(context.partition_key, svc, units.copy_files)
    pdfs = plan_pdf_units(context.partition_key, svc, units.pdf_pages)
    context.log.info(f"{sum(u.files for u in copies)} files to copy, in {len(copies)} units; "
                     f"{sum(u.pages for u in pdfs)} PDF pages to make, in {len(pdfs)} units")
    yield from _unit_outputs([u.paths for u in copies], "copies")
    yield from _unit_outputs([u.material_ids for u in pdfs], "pdfs")


@dg.op(out=dg.Out(dict, io_manager_key="step_outputs"))
@known_failures
def copy_unit_step(context: dg.OpExecutionContext, services: ArchiveServicesResource, paths: list) -> dict:
    """Copies one unit's originals and OCR results into preservation storage, verified (a retry
    copies only what is not recorded)."""
    return asdict(copy_objects(context.partition_key, services.services(), paths))


@dg.op(out=dg.Out(dict, io_manager_key="step_outputs"))
@known_failures
def pdf_unit_step(context: dg.OpExecutionContext, services: ArchiveServicesResource, material_ids: list) -> dict:
    """Makes one unit's searchable PDFs (a retry makes only those still missing)."""
    return asdict(make_pdfs(context.partition_key, services.services(), material_ids))


@dg.op(out=dg.Out(dg.Nothing))
@known_failures
def finish_archive_step(context: dg.OpExecutionContext, services: ArchiveServicesResource, copied: list,
                        pdfs: list) -> None:
    """Every object copied, every material with its PDF: the batch is archived and its files'
    inventories written."""
    r = finish_archive(context.partition_key, services.services(), [ObjectsCopied(**c) for c in copied],
                       [PdfsMade(**p) for p in pdfs])
    context.add_output_metadata({"stored": r.stored, "already_stored": r.already_stored,
                                 "bytes_stored": r.bytes_stored, "searchable_pdfs_made": r.pdfs_made,
                                 "copy_units": len(copied), "pdf_units": len(pdfs)})


@dg.graph_asset(name="archive", ins={"index": dg.AssetIn(dagster_type=dg.Nothing)}, partitions_def=scan_batches,
                group_name="scan_batch", kinds={"s3"})
def archive_asset(index):
    """Originals, OCR results and one searchable PDF per material into preservation storage,
    verified; in units of copies and of PDFs that run in parallel on any worker, each retried on
    its own."""
    copies, pdfs = plan_archive_units(index)
    return finish_archive_step(copies.map(copy_unit_step).collect(), pdfs.map(pdf_unit_step).collect())


ASSETS = [intake_asset, ocr_asset, index_asset, archive_asset]
