"""`archive demo` and `archive run`: the whole pipeline on a batch, then a summary of that batch's
truth, the same counts as its report (the demo: the committed sample batch)."""

from __future__ import annotations

import json
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from access import accounts, audit
from access.audit import Actor
from access.roles import Role
from cli import demo_transfer
from cli.demo_transfer import TransferShown
from devservices import preflight
from devservices.instance import REPO, LocalInstance
from ocr.quality import corpus_cer
from pipeline.resources import SignerResource, archive_resources
from pipeline.runner import run_batch
from settings import Settings, StorageSettings
from stages.ocr import accepted_scans, load_ocr
from stages.report import batch_report
from stages.services import Services
from stages.submit import submit_path
from storage.db import TABLES
from transfer.signing import write_private

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
    logins: list[tuple[str, str, str]] = field(default_factory=list)  # (user, role, password): demo only
    transfer: TransferShown | None = None   # the demo's transfer to a second agency
    preservation: list[str] = field(default_factory=list)   # replicas, fixity, inventories

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
        if self.transfer is not None:
            out += self.transfer.lines()
        out += self.preservation
        if self.logins:
            out.append("  staff web / 员工网页  `.venv/bin/archive serve`, then http://127.0.0.1:8000/login as:")
            out += [f"                      {user:<16} {password}  ({role})" for user, role, password in self.logins]
            out.append(f"                      (demo passwords, kept in {DEMO_LOGINS.name} under DAGSTER_HOME)")
        return out


def batch_cer(services: Services, batch_id: str, truth_dir: Path) -> tuple[float | None, int]:
    """Corpus CER of the first page of each OCR'd scan whose ground truth is in truth_dir, on
    the OCR results as read (the index keeps page text with ID numbers masked)."""
    pairs = []
    for scan in accepted_scans(batch_id, services):
        truth = truth_dir / f"{Path(scan['path']).stem}.txt"
        if truth.exists() and scan["ocr_key"]:
            results, _ = load_ocr(services, scan["ocr_key"])
            pairs.append((truth.read_text(encoding="utf-8"), results[0].text if results else ""))
    return (corpus_cer(pairs) if pairs else None), len(pairs)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_folder(batch_dir: Path, truth_dir: Path | None = None,
               heading: str = "批次处理完成 / batch processed") -> RunSummary:
    """Hands in a batch folder or zip and runs the batch's four assets (services must be up)."""
    settings = StorageSettings.from_env()
    services = Services.from_settings(settings)
    services.prepare()
    sub = submit_path(batch_dir, services)
    resources = archive_resources()
    # The summary is the output, findings included; Dagster's step logs stay in the UI, and a
    # failed step ends the command with its one sentence (cli/main.py).
    run_config: dict = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
    # the clock starts once the instance is open: its first opening in a process imports Dagster's
    # storage classes, a cost of this command's start, not of the run
    with dg.DagsterInstance.get() as instance:
        t0 = time.perf_counter()
        result = run_batch(sub.batch_id, resources, instance, run_config, say=_say)
        seconds = time.perf_counter() - t0
    metadata = {}
    for ev in result.get_asset_materialization_events():
        mat = ev.materialization
        metadata[mat.asset_key.to_user_string()] = {k: v.value for k, v in mat.metadata.items()}
    cer, cer_pages = batch_cer(services, sub.batch_id, truth_dir) if truth_dir else (None, 0)
    rows, objects = rows_and_objects(services)
    report = batch_report(sub.batch_id, services)
    refused = [f"{f['item']}: {f['message_zh']} / {f['message_en']}" for f in report["refused"]]
    return RunSummary(heading, sub.batch_id, report["counts"], refused, metadata, seconds, cer, cer_pages, rows,
                      objects, services.store.description)


def preservation(services: Services) -> list[str]:
    """What the schedules would do next: the replicas caught up, every object written since the
    last audit re-read on each copy, the inventories of changed files written; twice, so the
    inventories the first round wrote are copied and checked too."""
    from preservation import fixity, inventory, replication

    copied: dict[str, int] = {}
    behind: dict[str, str] = {}
    checked = 0
    for _ in range(2):
        for s in replication.replicate(services):
            copied[s.name] = copied.get(s.name, 0) + s.copied
            behind[s.name] = f"{s.behind} behind" + (f" ({s.problem})" if s.problem else "")
        checked += fixity.audit(services, "new").checked
        inventory.refresh(services, inventory.stale(services))
    out = [f"  replica / 副本      {name}: {copied[name]} objects copied and verified now, {behind[name]}"
           for name in copied]
    copies = 1 + len(services.storage_settings.replicas)
    state = "all intact" if not fixity.damaged(services) else "damaged copies: `archive storage status`"
    out.append(f"  fixity / 固定性      {checked} objects re-read now on each of {copies} copies, {state}")
    out.append(f"  inventories / 清单   {services.db.count('inventories')} personnel files described in the store "
               "(`archive rebuild-index` rebuilds the database from them)")
    return out


def rows_and_objects(services: Services) -> tuple[dict[str, int], dict[str, int]]:
    return ({t: services.db.count(t) for t in TABLES},
            {b: services.store.count(b) for b in (services.staging_bucket, services.archive_bucket)})


DEMO_LOGINS = Path("demo-logins.json")
DEMO_ROLES = (("demo-staff", Role.STAFF), ("demo-archivist", Role.ARCHIVIST), ("demo-auditor", Role.AUDITOR),
              ("demo-engineer", Role.ENGINEER), ("demo-admin", Role.ADMIN))


def demo_logins(services: Services) -> list[tuple[str, str, str]]:
    """One user per role for the demo agency, with passwords made once and kept (0600) in
    DAGSTER_HOME, so every demo run prints the same logins."""
    path = Path(Settings.from_env().dagster_home) / DEMO_LOGINS
    known = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    made = {user: known.get(user) or secrets.token_urlsafe(9) for user, _ in DEMO_ROLES}
    with services.db.transaction() as cur:
        for user, role in DEMO_ROLES:
            cur.execute("SELECT 1 FROM users WHERE username = %s", (user,))
            if cur.fetchone() is None:
                accounts.create_user(cur, user, role, made[user],
                                     services.agency if role in (Role.STAFF, Role.ARCHIVIST) else None)
                audit.record(cur, Actor("cli:demo", "cli"), "user.add", target=user, detail={"role": role.value})
            elif user not in known:  # a user left from before the file was lost: its password anew
                accounts.set_password(cur, user, made[user])
    if made != known:
        path.unlink(missing_ok=True)
        write_private(path, json.dumps(made).encode())
    return [(user, role.value, made[user]) for user, role in DEMO_ROLES]


def demo(keep_running: bool = False) -> RunSummary:
    settings = StorageSettings.from_env()
    preflight.check_all(settings.s3_endpoint_url)
    instance = LocalInstance.from_env()
    instance.export()
    started = instance.start()
    try:
        summary = run_folder(SAMPLE_BATCH, SAMPLE / "truth", heading="演示完成 / demo finished")
        services = Services.from_env()
        summary.logins = demo_logins(services)
        if not summary.nothing_goes_on:  # the file goes to a second agency, which imports and finds it
            with dg.DagsterInstance.get() as dagster:
                summary.transfer = demo_transfer.show(services, SignerResource().signer(), instance, dagster)
            summary.preservation = preservation(services)
            summary.rows, summary.objects = rows_and_objects(services)  # with the transfer's and the copies'
        return summary
    finally:
        if started and not keep_running:
            instance.stop()
