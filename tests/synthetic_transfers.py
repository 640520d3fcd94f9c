"""Transfers walked through their states with the columns each real step sets, for files that
exist only as index rows: the national platform's tests and benchmark need many transfers and
every kind of step, not the packages behind them (tests/test_transfer.py makes real ones)."""

from __future__ import annotations

import hashlib
import json
import uuid

from catalog import idnumber
from stages.services import Services
from transfer.receipt import build_receipt
from transfer.record import build_record
from transfer.signing import Signer
from transfer.states import begin, move

WALK = ("packaged", "available", "fetched", "received")


def add_file(services: Services, file_number: str, id_number: str = "520103199001011234", name: str = "李明") -> None:
    with services.db.transaction() as cur:
        cur.execute("INSERT INTO personnel_files (file_number, name, id_hash, id_number_encrypted, id_masked,"
                    " holding_agency) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    (file_number, name, idnumber.lookup_hash(id_number, services.id_hash_key),
                     services.id_cipher.encrypt(id_number, file_number), idnumber.mask(id_number), services.agency))


def request(services: Services, file_number: str, receiver: str, id_number: str = "520103199001011234") -> str:
    """As stages/transfer.request_transfer takes it, without its check that the file is preserved."""
    tid = str(uuid.uuid4())
    with services.db.transaction() as cur:
        cur.execute("INSERT INTO transfers (transfer_id, file_number, sending_agency, receiving_agency, status,"
                    " reason, handler, requested_by, person_ref) VALUES (%s, %s, %s, %s, 'requested', '工作调动',"
                    " '张三', 'test', %s)", (tid, file_number, services.agency, receiver,
                                             idnumber.lookup_hash(id_number, services.settings.platform_id_hash_key)))
        begin(cur, tid, {"by": "test"})
    return tid


def step(services: Services, tid: str, to: str, signer: Signer, receiver_key: Signer | None = None) -> None:
    """One step, with what the real one writes beside the state."""
    sha = hashlib.sha256(tid.encode()).hexdigest()
    with services.db.transaction() as cur:
        cur.execute("SELECT * FROM transfers WHERE transfer_id = %s", (tid,))
        t = cur.fetchone()
        if to == "packaged":
            notice = {"material_count": 3, "page_count": 12, "sending_agency_name": services.agency_name,
                      "receiving_agency_name": t["receiving_agency"], "tagmanifest_sha256": sha,
                      "payload_oxum": "1000.12"}
            move(cur, tid, to, {"package_sha256": sha}, package_key=f"transfers/{tid}/{tid}.tar", package_sha256=sha,
                 package_bytes=123_456, notice=json.dumps(notice, ensure_ascii=False))
        elif to == "available":
            record = signer.sign(build_record(
                transfer_id=tid, sender={"code": t["sending_agency"]}, receiver={"code": t["receiving_agency"]},
                file={"file_number": t["file_number"], "material_count": 3, "page_count": 12}, notice=t["notice"],
                package={"sha256": sha, "bytes": 123_456}, valid_days=15))
            move(cur, tid, to, {"record_id": record["record_id"]}, record=json.dumps(record), record_sha256=sha,
                 record_key=f"transfers/{tid}/record.json", record_id=record["record_id"],
                 expires_at=record["expires_at"])
        elif to in ("received", "rejected"):
            receipt = build_receipt(receiver_key or signer, record=t["record"] or {}, transfer_id=tid,
                                    receiver=t["receiving_agency"], outcome=to, package_sha256=sha,
                                    checks=[] if to == "received" else [
                                        {"property": "integrity", "code": "package_sha256", "passed": False,
                                         "message_zh": "摘要不符", "message_en": "digest differs"}])
            move(cur, tid, to, {"receipt_id": receipt["receipt_id"]}, receipt=json.dumps(receipt, ensure_ascii=False))
        else:
            move(cur, tid, to, {})


def walk(services: Services, tid: str, signer: Signer, upto: str = "received") -> None:
    for to in WALK[:WALK.index(upto) + 1]:
        step(services, tid, to, signer)
