"""The national record of one state change, made from what the sending agency's own tables say
in the transaction that takes the step (crossregion/outbox.py enqueues it there)."""

from __future__ import annotations

import datetime as dt
import uuid

from crossregion.schema import SCHEMA, VERSION
from transfer.client import PREFIX as PULL_PREFIX

PACKAGE_FORMAT = "BagIt 1.0, tar"
MAX_CHECKS, MAX_CODE = 50, 60   # a rejection's failed checks a record names, and their codes' length


def _time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="microseconds")


def build(cur, transfer_id: str, status: str, sequence: int) -> dict:
    """The unsigned record saying `transfer_id` became `status`, its `sequence`th step."""
    cur.execute("SELECT t.*, now() AS changed_at, f.name AS person_name, f.id_masked,"
                " s.name AS sender_name, s.endpoint AS sender_endpoint, r.name AS receiver_name"
                " FROM transfers t JOIN personnel_files f USING (file_number)"
                " JOIN agencies s ON s.code = t.sending_agency JOIN agencies r ON r.code = t.receiving_agency"
                " WHERE t.transfer_id = %s", (transfer_id,))
    t = cur.fetchone()
    notice = t["notice"] or {}
    record: dict = {
        "schema": SCHEMA, "schema_version": VERSION, "record_id": str(uuid.uuid4()),
        "transfer_id": str(t["transfer_id"]), "sequence": sequence, "status": status,
        "changed_at": _time(t["changed_at"]), "requested_at": _time(t["created_at"]),
        "sender": {"code": t["sending_agency"], "name": t["sender_name"]},
        "receiver": {"code": t["receiving_agency"], "name": t["receiver_name"]},
        "person": {"name": t["person_name"], "id_masked": t["id_masked"], "id_hash": t["person_ref"] or ""},
        "file": {"file_number": t["file_number"], "material_count": notice.get("material_count"),
                 "page_count": notice.get("page_count")},
        "package": None, "transfer_record": None, "receipt": None,
    }
    if t["package_sha256"]:
        url = f"{t['sender_endpoint'].rstrip('/')}{PULL_PREFIX}/transfers/{t['transfer_id']}/package" \
            if t["sender_endpoint"] else None
        record["package"] = {"sha256": t["package_sha256"], "bytes": t["package_bytes"], "format": PACKAGE_FORMAT,
                             "fetch_url": url}
    if t["record"]:
        record["transfer_record"] = {"record_id": str(t["record_id"]), "sha256": t["record_sha256"],
                                     "expires_at": _time(t["expires_at"]),
                                     "signature": t["record"]["signature"]["value"]}
    if t["receipt"]:  # the receiver wrote it: its time in our own form, its list of checks bounded
        r = t["receipt"]
        codes = [str(c.get("code", ""))[:MAX_CODE] for c in r.get("failed_checks", [])]
        record["receipt"] = {"receipt_id": str(r["receipt_id"])[:100], "outcome": r["outcome"],
                             "at": _time(dt.datetime.fromisoformat(r["at"])), "failed_checks": codes[:MAX_CHECKS]}
    return record
