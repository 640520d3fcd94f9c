"""Transfer stage: a signed transfer record for one personnel file and a receiving agency.

The record lists every material and page with the sha256 of its preserved original and OCR
result; it is stored in the archive bucket, verified, and the transfer gets a row and a first
status event in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from access import audit
from access.audit import Actor
from errors import NotReady
from stages.services import Services
from storage import events
from storage.events import Event
from storage.objects import content_key, put_verified
from transfer.record import StoredObject, build_record, transfer_id
from transfer.signing import Signer, canonical_json


class TransferNotReady(NotReady):
    """The file is unknown or some of its objects are not yet preserved."""


@dataclass
class TransferResult:
    transfer_id: str
    file_number: str
    receiving_agency: str
    record_key: str
    record_sha256: str
    created: bool  # False when the same transfer existed already
    record: dict


def _materials_and_objects(cur, file_number: str, bucket: str) -> tuple[list[dict], list[StoredObject]]:
    cur.execute("SELECT m.material_id, m.class_code, m.seq, m.title, m.formed, m.pdf_sha256, p.page_no,"
                " p.source_sha256, p.source_page, p.ocr_sha256 FROM materials m JOIN pages p USING (material_id)"
                " WHERE m.file_number = %s ORDER BY m.class_code, m.seq, p.page_no", (file_number,))
    materials: dict[int, dict] = {}
    digests: dict[str, str] = {}
    for r in cur.fetchall():
        m = materials.setdefault(r["material_id"], {
            "code": f"{r['class_code']}-{r['seq']}", "class_code": r["class_code"], "seq": r["seq"],
            "title": r["title"], "formed": r["formed"], "searchable_pdf_sha256": r["pdf_sha256"], "pages": []})
        m["pages"].append({"page_no": r["page_no"], "original_sha256": r["source_sha256"],
                           "source_page": r["source_page"], "ocr_sha256": r["ocr_sha256"]})
        digests[r["source_sha256"]] = "original"
        digests[r["ocr_sha256"]] = "ocr"
        if r["pdf_sha256"] is None:
            raise TransferNotReady(f"档案 {file_number} 的材料 {m['code']} 尚无可检索 PDF",
                                   f"file {file_number}: material {m['code']} has no searchable PDF yet",
                                   item=file_number)
        digests[r["pdf_sha256"]] = "searchable-pdf"
    objects = []
    for sha, role in sorted(digests.items()):
        cur.execute("SELECT sha256, bytes, bucket, key, media_type FROM stored_objects WHERE bucket = %s AND key = %s",
                    (bucket, content_key(sha)))
        row = cur.fetchone()
        if row is None:
            raise TransferNotReady(f"档案 {file_number} 的对象 {sha} 尚未归档保存",
                                   f"file {file_number}: {role} object {sha} is not in preservation storage yet",
                                   item=file_number)
        objects.append(StoredObject(role, row["sha256"], row["bytes"], row["bucket"], row["key"], row["media_type"]))
    return list(materials.values()), objects


def prepare_transfer(file_number: str, receiving_agency: str, services: Services, signer: Signer,
                     reason: str = "工作调动") -> TransferResult:
    with services.db.transaction() as cur:
        cur.execute("SELECT file_number, name, id_masked FROM personnel_files WHERE file_number = %s", (file_number,))
        person = cur.fetchone()
        if person is None:
            raise TransferNotReady(f"档案 {file_number} 尚未入库", f"file {file_number} is not indexed",
                                   item=file_number)
        materials, objects = _materials_and_objects(cur, file_number, services.archive_bucket)
        if not materials:
            raise TransferNotReady(f"档案 {file_number} 没有已入库的页面", f"file {file_number} has no indexed pages",
                                   item=file_number)
        tid = transfer_id(file_number, receiving_agency, [o.sha256 for o in objects])
        cur.execute("SELECT record, record_key, record_sha256 FROM transfers WHERE transfer_id = %s", (tid,))
        existing = cur.fetchone()
    if existing:
        return TransferResult(tid, file_number, receiving_agency, existing["record_key"], existing["record_sha256"],
                              False, existing["record"])

    record = signer.sign(build_record(
        transfer=tid, created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        sending_agency=services.agency, receiving_agency=receiving_agency, reason=reason,
        person=dict(person), materials=materials, objects=objects))
    body = canonical_json(record)
    key = f"transfers/{tid}.json"
    digest = put_verified(services.store, services.archive_bucket, key, body, "application/json")
    with services.db.transaction() as cur:
        cur.execute("INSERT INTO transfers (transfer_id, file_number, sending_agency, receiving_agency, status,"
                    " record, record_sha256, record_key) VALUES (%s, %s, %s, %s, 'prepared', %s, %s, %s)"
                    " ON CONFLICT DO NOTHING",
                    (tid, file_number, services.agency, receiving_agency, json.dumps(record, ensure_ascii=False),
                     digest, key))
        if cur.rowcount:
            cur.execute("INSERT INTO transfer_events (transfer_id, status, detail) VALUES (%s, 'prepared', %s)",
                        (tid, json.dumps({"record_sha256": digest, "signed_by": signer.key_id})))
            audit.record(cur, Actor("pipeline", "dagster", services.agency), "transfer.prepare", target=tid,
                         file_numbers=[file_number], detail={"receiving_agency": receiving_agency})
            events.record(cur, [Event("transferred", file_number=file_number, object_sha256=digest, detail={
                "transfer_id": tid, "status": "prepared", "receiving_agency": receiving_agency,
                "signed_by": signer.key_id})])
            cur.execute("INSERT INTO stored_objects (bucket, key, sha256, bytes, role, media_type, verified_at)"
                        " VALUES (%s, %s, %s, %s, 'transfer-record', 'application/json', now())"
                        " ON CONFLICT DO NOTHING", (services.archive_bucket, key, digest, len(body)))
    return TransferResult(tid, file_number, receiving_agency, key, digest, True, record)
