"""`archive demo` and `archive run`: the whole pipeline on a batch, then a summary of that batch's
truth, the same counts as its report (the demo: the committed sample batch)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from devservices import preflight
from devservices.instance import REPO, LocalInstance
from ocr.quality import corpus_cer
from pipeline.resources import ArchiveServicesResource, OcrEngineResource, SignerResource
from pipeline.runner import run_batch
from stages.report import batch_report
from stages.services import Services
from stages.submit import submit_path
from storage.config import StorageSettings
from storage.db import TABLES
from transfer.signing import verify

SAMPLE = REPO / "sample_scans" / "demo"
SAMPLE_BATCH = SAMPLE / "GZ2026-S007"


@dataclass
class RunSummary:
    heading: str
    batch_id: str
    counts: dict[str, int]       # the batch report's counts
    refused: list[str]           # items refused, with the first reason of each
    metadata: dict[str, dict]
    seconds: float
    cer: float | None
    cer_pages: int
    rows: dict[str, int]
    objects: dict[str, int]
    store: str
    transfer_record: dict | None

    @property
    def nothing_goes_on(self) -> bool:
        return self.counts["materials_going_on"] == 0

    def lines(self) -> list[str]:
        m, c = self.metadata, self.counts
        ocr = m.get("ocr", {})
        out = [
            self.heading,
            f"  batch / 批次        {self.batch_id}: {c['materials_going_on']} materials going on "
            f"({c['files_in_catalog']} personnel files), {len(self.refused)} items refused, {c['warnings']} warnings",
        ]
        out += [f"    refused / 拒收     {r}" for r in self.refused[:10]]
        if len(self.refused) > 10:
            out.append(f"    … {len(self.refused) - 10} more: `archive report {self.batch_id}`")
        if self.nothing_goes_on:
            return out
        out += [
            f"  OCR / 识别          {ocr.get('pages_ocred')} pages OCR'd now"
            + (f" at {ocr.get('pages_per_second')} pages/s" if ocr.get("pages_ocred") else "")
            + f", {ocr.get('scans_cached')} scans from cache ({ocr.get('engine')})",
            f"  pipeline / 全流程    {self.seconds:.1f} s",
        ]
        if self.cer is not None:
            out.append(f"  CER / 字符错误率     {self.cer:.2%} over {self.cer_pages} pages against ground truth")
        out.append("  PostgreSQL 行数     " + ", ".join(f"{t} {n}" for t, n in self.rows.items()))
        out.append("  objects / 对象      " + ", ".join(f"{b} {n}" for b, n in self.objects.items())
                   + f" ({self.store})")
        r = self.transfer_record
        if not_ready := m.get("transfer", {}).get("not_ready"):
            out.append(f"  transfer / 转递     not made: {not_ready}")
        if r:
            n = r["notice"]
            ok = "valid" if verify(r) else "INVALID"
            out.append(f"  transfer / 转递     {r['transfer_id']}: {n['file_number']} {n['person_name']} "
                       f"({n['id_number_masked']}) → {n['receiving_agency']}, {n['material_count']} materials, "
                       f"{n['page_count']} pages, {len(r['objects'])} objects listed, signature {ok}")
            out.append(f"                      record transfers/{r['transfer_id']}.json")
        return out


def batch_cer(services: Services, batch_id: str, truth_dir: Path) -> tuple[float | None, int]:
    """Corpus CER of the batch's indexed pages whose ground truth is in truth_dir."""
    with services.db.transaction() as cur:
        cur.execute("SELECT DISTINCT p.source_path, p.ocr_text FROM pages p JOIN batch_files f"
                    " ON f.sha256 = p.source_sha256 AND f.batch_id = %s WHERE p.source_page = 0", (batch_id,))
        rows = cur.fetchall()
    pairs = []
    for r in rows:
        truth = truth_dir / f"{Path(r['source_path']).stem}.txt"
        if truth.exists():
            pairs.append((truth.read_text(encoding="utf-8"), r["ocr_text"] or ""))
    return (corpus_cer(pairs) if pairs else None), len(pairs)


def run_folder(batch_dir: Path, truth_dir: Path | None = None, receiving_agency: str | None = None,
               heading: str = "批次处理完成 / batch processed") -> RunSummary:
    """Hands in a batch folder or zip and runs all five assets (services must be up)."""
    settings = StorageSettings.from_env()
    services = Services.from_settings(settings)
    services.prepare()
    sub = submit_path(batch_dir, services)
    resources = {"services": ArchiveServicesResource(), "ocr_engine": OcrEngineResource(),
                 "signer": SignerResource()}
    # The summary is the output, findings included; Dagster's step logs stay in the UI, and a
    # failed step ends the command with its one sentence (cli/main.py).
    run_config: dict = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
    if receiving_agency:
        run_config["ops"] = {"transfer": {"config": {"receiving_agency": receiving_agency}}}
    t0 = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        result = run_batch(sub.batch_id, resources, instance, run_config)
    seconds = time.perf_counter() - t0
    metadata = {}
    for ev in result.get_asset_materialization_events():
        mat = ev.materialization
        metadata[mat.asset_key.to_user_string()] = {k: v.value for k, v in mat.metadata.items()}
    cer, cer_pages = batch_cer(services, sub.batch_id, truth_dir) if truth_dir else (None, 0)
    rows = {t: services.db.count(t) for t in TABLES}
    objects = {b: services.store.count(b) for b in (services.staging_bucket, services.archive_bucket)}
    record = None
    tid = metadata.get("transfer", {}).get("transfer_id")
    if tid and tid != "none":
        with services.db.transaction() as cur:
            cur.execute("SELECT record FROM transfers WHERE transfer_id = %s", (tid,))
            record = cur.fetchone()["record"]
    report = batch_report(sub.batch_id, services)
    refused = [f"{f['item']}: {f['message_zh']} / {f['message_en']}" for f in report["refused"]]
    return RunSummary(heading, sub.batch_id, report["counts"], refused, metadata, seconds, cer, cer_pages, rows,
                      objects, services.store.description, record)


def demo(keep_running: bool = False) -> RunSummary:
    settings = StorageSettings.from_env()
    preflight.check_all(settings.s3_endpoint_url)
    instance = LocalInstance.from_env()
    instance.export()
    started = instance.start()
    try:
        return run_folder(SAMPLE_BATCH, SAMPLE / "truth", heading="演示完成 / demo finished")
    finally:
        if started and not keep_running:
            instance.stop()
