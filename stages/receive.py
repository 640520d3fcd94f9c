"""Receiving side: fetch what a sender's pull API holds for us, verify it, post the signed
receipt or rejection, and import a received file into our own archive: its originals, OCR
results and PDFs into preservation storage, its files, materials, pages and text into the
index (searchable at once, no scanning or OCR again), its history carried over and extended.

Every record whose signature is valid is kept in `received_transfers` under its id, received
or rejected, so the same record is never accepted twice.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2.extras

from access import audit
from access.audit import Actor
from catalog import idnumber
from errors import IntegrityFailure, NotFound, NotReady
from ocr.engine import PageResult
from preservation.inventory import keep_current
from stages.index import Chunk, FileRow, MaterialRow, PageRow, formed_on, load_chunks, prepared
from stages.services import Services
from storage import events
from storage.events import Event
from storage.objects import content_key, download, file_sha256, put_file_verified
from storage.stored import StoredObject, record_verified
from transfer.client import Download, PullClient, PullError
from transfer.receipt import build_receipt
from transfer.signing import Signer
from transfer.verify import Verification, extract, verify_transfer


@dataclass
class Fetched:
    transfer_id: str
    sender: str
    file_number: str
    outcome: str                     # received | rejected
    failed: list[dict]               # the checks that failed, as the rejection names them
    download: Download
    seconds: dict[str, float] = field(default_factory=dict)   # step: seconds


def incoming_dir(services: Services) -> Path:
    path = Path(services.settings.transfer_dir) / "incoming"
    path.mkdir(parents=True, exist_ok=True)
    return path


STORERS = 8   # objects written to the store at once
# A sender's history keeps its event types where they are preservation events we know; anything
# else it sends is kept as `carried`, its own name in the detail, never as one of our own kinds.
CARRIED_TYPES = frozenset({"captured", "validated", "ocr", "stored", "superseded", "transfer_requested",
                           "transferred", "transfer_received", "transfer_rejected", "transfer_cancelled",
                           "transfer_expired", "transfer_imported"})


def _received_key(transfer_id: str) -> str:
    return f"received/{transfer_id}/{transfer_id}.tar"


def fetch_one(services: Services, client: PullClient, signer: Signer, listing: dict, actor: Actor,
              progress: Callable[[int], None] | None = None) -> Fetched:
    """Record, package, checks, receipt: one transfer addressed to us. What the sender lists is
    not trusted: its transfer id must be a UUID before it names a folder or a URL."""
    try:
        tid = str(uuid.UUID(str(listing.get("transfer_id"))))
    except ValueError:
        raise PullError(f"发送方列出的转递编号无效：{str(listing.get('transfer_id'))[:60]}",
                        f"the sender listed an invalid transfer id {str(listing.get('transfer_id'))[:60]!r}") from None
    t0 = time.perf_counter()
    seconds: dict[str, float] = {}
    record = client.record(tid)
    work = incoming_dir(services)
    tar = work / f"{tid}.tar"
    size = int(((record.get("package") or {}).get("bytes")) or listing.get("package_bytes") or 0)
    got = client.download(tid, tar, size, str((record.get("package") or {}).get("sha256") or ""), progress)
    seconds["download"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    unpacked = work / f"{tid}.d"
    shutil.rmtree(unpacked, ignore_errors=True)
    unpacked.mkdir()
    try:
        with services.db.transaction() as cur:
            v = verify_transfer(cur, record, tar, tid, services.agency, unpacked,
                                max_days=services.settings.transfer_valid_days)
        seconds["verify"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        outcome = "received" if v.ok else "rejected"
        checks = [c.to_dict() for c in v.checks]
        receipt = build_receipt(signer, record=v.record, transfer_id=tid, receiver=services.agency,
                                outcome=outcome, checks=checks, package_sha256=v.package_sha256)
        _keep(services, v, tar, outcome, checks, actor)
        client.post_receipt(tid, receipt)
        _acknowledged(services, v, outcome)  # importable only once the sender has the receipt
        seconds["receipt"] = time.perf_counter() - t2
    finally:  # the download is kept (it resumes); what was unpacked from it is not
        shutil.rmtree(unpacked, ignore_errors=True)
    tar.unlink(missing_ok=True)
    return Fetched(tid, listing.get("sending_agency", ""), (v.record.get("file") or {}).get("file_number", ""),
                   outcome, [c for c in checks if c["passed"] is False], got, seconds)


def _keep(services: Services, v: Verification, tar: Path, outcome: str, checks: list[dict], actor: Actor) -> None:
    """A received package into our preservation storage (the evidence of what came), and every
    record whose signature holds into received_transfers (what makes a replay visible)."""
    signed = any(c.code == "signature" and c.passed for c in v.checks)
    replay = any(c.code == "replay" and c.passed is False for c in v.checks)
    if outcome == "received":
        put_file_verified(services.store, services.archive_bucket, _received_key(v.transfer_id), tar,
                          v.package_sha256, "application/x-tar")
    with services.db.transaction() as cur:
        if outcome == "received":
            record_verified(cur, [StoredObject(services.archive_bucket, _received_key(v.transfer_id),
                                               v.package_sha256, tar.stat().st_size, "received-package",
                                               "application/x-tar")])
        if signed and not replay:
            r = v.record
            cur.execute("INSERT INTO received_transfers (record_id, transfer_id, sender, file_number, record,"
                        " package_sha256, outcome, checks) VALUES (%s, %s, %s, %s, %s, %s, 'verified', %s)"
                        " ON CONFLICT (record_id) DO UPDATE SET package_sha256 = EXCLUDED.package_sha256,"
                        " checks = EXCLUDED.checks, verified_at = now() WHERE received_transfers.outcome = 'verified'",
                        (r["record_id"], v.transfer_id, r["sender"]["code"], r["file"]["file_number"],
                         json.dumps(r, ensure_ascii=False), v.package_sha256,
                         json.dumps(checks, ensure_ascii=False)))
        audit.record(cur, actor, f"transfer.{outcome}", outcome="ok" if outcome == "received" else "failed",
                     target=v.transfer_id, file_numbers=[str((v.record.get("file") or {}).get("file_number", ""))],
                     detail={"failed": [c["code"] for c in checks if c["passed"] is False]})


def _acknowledged(services: Services, v: Verification, outcome: str) -> None:
    with services.db.transaction() as cur:
        cur.execute("UPDATE received_transfers SET outcome = %s WHERE record_id::text = %s AND outcome = 'verified'",
                    (outcome, str(v.record.get("record_id"))))


@dataclass(frozen=True)
class Imported:
    transfer_id: str
    file_number: str
    materials: int
    pages: int
    objects_stored: int
    events_carried: int
    already: bool      # imported before: nothing done


def _bag(services: Services, row: dict, into: Path) -> Path:
    """The received bag, unpacked from our own preservation copy (checked against its digest)."""
    tar = into / f"{row['transfer_id']}.tar"
    size = services.store.head(services.archive_bucket, _received_key(str(row["transfer_id"])))
    if size is None:
        raise NotReady(f"转递 {row['transfer_id']} 的转递包不在本机构的存储中", f"the package of transfer "
                       f"{row['transfer_id']} is not in our storage", item=str(row["transfer_id"]))
    if download(services.store, services.archive_bucket, _received_key(str(row["transfer_id"])), tar,
                size.bytes) != row["package_sha256"]:
        raise IntegrityFailure(f"本机构保存的转递包 {row['transfer_id']} 与接收时的摘要不符",
                               f"our copy of the package of {row['transfer_id']} differs from what was received",
                               item=str(row["transfer_id"]))
    return extract(tar, into, str(row["transfer_id"]))


def import_transfer(services: Services, transfer_id: str, actor: Actor) -> Imported:
    """A received transfer into our archive; a second import does nothing."""
    with services.db.transaction() as cur:
        cur.execute("SELECT * FROM received_transfers WHERE transfer_id::text = %s AND outcome = 'received'",
                    (str(transfer_id),))
        row = cur.fetchone()
    if row is None:
        raise NotFound(f"没有已接收的转递 {transfer_id}（请先 archive fetch）",
                       f"no received transfer {transfer_id} (run `archive fetch` first)", item=str(transfer_id))
    file_number = row["file_number"]
    if row["imported_at"] is not None:
        return Imported(str(transfer_id), file_number, 0, 0, 0, 0, already=True)
    with services.db.transaction() as cur:  # a file that comes back is a case for staff, not an overwrite
        cur.execute("SELECT holding_agency FROM personnel_files WHERE file_number = %s", (file_number,))
        if held := cur.fetchone():
            raise NotReady(f"本机构已有档号为 {file_number} 的档案（{held['holding_agency']}），转递未导入，请人工核对",
                           f"a file {file_number} is here already (held by {held['holding_agency']}): the transfer "
                           "was not imported; staff must reconcile it", item=file_number)
    work = incoming_dir(services) / f"import-{transfer_id}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        data = _bag(services, row, work) / "data"
        person = json.loads((data / "person.json").read_text(encoding="utf-8"))
        catalog = json.loads((data / "catalog.json").read_text(encoding="utf-8"))
        if person.get("file_number") != file_number or catalog.get("file_number") != file_number:
            raise IntegrityFailure(f"转递包中的档号与签名记录的 {file_number} 不符", f"the bag's file number is not "
                                   f"the signed record's {file_number}", item=str(transfer_id))
        history = json.loads((data / "history.json").read_text(encoding="utf-8"))
        stored = _store_objects(services, data, catalog, str(transfer_id))
        chunk = _chunk(services, data, person, catalog)
        with services.db.transaction() as cur:
            load_chunks(cur, [prepared(chunk)])
            for m in catalog["materials"]:
                cur.execute("UPDATE materials SET pdf_sha256 = %s WHERE file_number = %s AND class_code = %s"
                            " AND seq = %s", (m["pdf_sha256"], file_number, m["class_code"], m["seq"]))
            carried = _carry_events(cur, history, file_number, row["sender"], str(transfer_id))
            events.record(cur, [Event("transfer_imported", file_number=file_number, detail={
                "transfer_id": str(transfer_id), "record_id": str(row["record_id"]), "from": row["sender"],
                "materials": len(catalog["materials"]), "pages": len(chunk.pages)})])
            cur.execute("UPDATE received_transfers SET imported_at = now() WHERE record_id = %s", (row["record_id"],))
            audit.record(cur, actor, "transfer.import", target=str(transfer_id), file_numbers=[file_number],
                         detail={"from": row["sender"]})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    keep_current(services, [file_number])   # the received file is ours to describe now
    return Imported(str(transfer_id), file_number, len(catalog["materials"]), len(chunk.pages), stored, carried,
                    already=False)


def _store_objects(services: Services, data: Path, catalog: dict, transfer_id: str) -> int:
    """Every original, OCR result and PDF of the bag under its content key, verified; those we
    hold already (the same scan sent before) are not stored twice."""
    wanted: dict[str, tuple[str, str, str]] = {}   # sha256: (bag path, role, media type)
    for m in catalog["materials"]:
        wanted[m["pdf_sha256"]] = (m["pdf"], "searchable-pdf", "application/pdf")
        for p in m["pages"]:
            wanted[p["original_sha256"]] = (p["original"], "original", p["media_type"] or "application/octet-stream")
            wanted[p["ocr_sha256"]] = (p["ocr"], "ocr", "application/json")
    with services.db.transaction() as cur:
        cur.execute("SELECT sha256 FROM stored_objects WHERE bucket = %s AND key = ANY(%s)",
                    (services.archive_bucket, [content_key(s) for s in wanted]))
        have = {r["sha256"] for r in cur.fetchall()}
    todo = sorted((sha, *where) for sha, where in wanted.items() if sha not in have)

    def store(sha: str, rel: str, role: str, media: str) -> tuple[StoredObject, str]:
        path = data / rel
        if file_sha256(path) != sha:  # verified at receipt; checked again, the bag is on disk since
            raise IntegrityFailure(f"转递包文件 {rel} 与其摘要不符", f"{rel} of the bag does not match its sha256",
                                   item=rel)
        how = put_file_verified(services.store, services.archive_bucket, content_key(sha), path, sha, media)
        return StoredObject(services.archive_bucket, content_key(sha), sha, path.stat().st_size, role, media), how

    with ThreadPoolExecutor(STORERS) as pool:  # page-sized objects: the store's round trips dominate
        done = [f.result() for f in [pool.submit(store, *t) for t in todo]]
    rows, how = [o for o, _ in done], {o.key: h for o, h in done}
    with services.db.transaction() as cur:
        events.record(cur, [Event("stored", object_sha256=o.sha256, detail={
            "bucket": o.bucket, "key": o.key, "role": o.role, "from_transfer": transfer_id,
            "verified": how[o.key]}) for o in record_verified(cur, rows)])
    return len(rows)


def _chunk(services: Services, data: Path, person: dict, catalog: dict) -> Chunk:
    """The index rows of the file as the sender indexed it, held by us now."""
    number, file_number = person["id_number"], person["file_number"]
    chunk = Chunk([FileRow(file_number, person["name"], idnumber.lookup_hash(number, services.id_hash_key),
                           services.id_cipher.encrypt(number, file_number), idnumber.mask(number), services.agency,
                           None)], [], [])
    ocr: dict[str, list[PageResult]] = {}
    for m in catalog["materials"]:
        chunk.materials.append(MaterialRow(file_number, m["class_code"], m["seq"], m["title"], m["formed"],
                                           formed_on(m["formed"]), m["copies"], m["page_count"], m["remarks"]))
        for p in m["pages"]:
            if p["ocr"] not in ocr:
                doc = json.loads((data / p["ocr"]).read_text(encoding="utf-8"))
                ocr[p["ocr"]] = [PageResult.from_dict(r) for r in doc["pages"]]
            r = ocr[p["ocr"]][p["source_page"]]
            chunk.pages.append(PageRow(file_number, m["class_code"], m["seq"], p["page_no"], p["original_sha256"],
                                       p["source_page"], p.get("source_path") or p["original"], r.dpi, r.width,
                                       r.height, idnumber.mask_ids(r.text), r.confidence, r.engine, p["ocr_sha256"]))
    return chunk


def _carry_events(cur, history: dict, file_number: str, sender: str, transfer_id: str) -> int:
    """The sender's events of the file, at their own times and agents, marked as carried over;
    those we hold already (a file that comes back to us brings our own events along) are not
    written twice."""
    cur.execute("SELECT at, event_type, object_sha256 FROM events WHERE file_number = %s", (file_number,))
    held = {(r["at"], r["event_type"], r["object_sha256"]) for r in cur.fetchall()}
    rows = [(e["at"], e["event_type"] if e["event_type"] in CARRIED_TYPES else "carried", e["outcome"], e["agent"],
             None, file_number, e.get("object_sha256"),
             json.dumps({**(e.get("detail") or {}), "carried_from": sender, "sender_batch": e.get("batch_id"),
                         "transfer_id": transfer_id, "sender_event_type": e["event_type"]},
                        ensure_ascii=False, default=str))
            for e in history.get("events", [])
            if (dt.datetime.fromisoformat(str(e["at"])), e["event_type"], e.get("object_sha256")) not in held]
    if rows:
        psycopg2.extras.execute_values(
            cur, "INSERT INTO events (at, event_type, outcome, agent, batch_id, file_number, object_sha256, detail)"
                 " VALUES %s", rows)
    return len(rows)

