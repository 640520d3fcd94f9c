"""The transfer record: the notice (档案转递通知单), the material list and every object's digest.

Plain data with a schema name and version, so the national platform and receivers can
validate it; the signature is added by transfer.signing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

SCHEMA = "personnel-archive/transfer-record"
SCHEMA_VERSION = 1
_NAMESPACE = uuid.UUID("6f1d2c1e-8f3a-4e59-9a57-2f0b7c1d4e10")


@dataclass(frozen=True)
class StoredObject:
    role: str
    sha256: str
    bytes: int
    bucket: str
    key: str
    media_type: str | None


def transfer_id(file_number: str, receiving_agency: str, object_digests: list[str]) -> str:
    """Same file, same receiver, same content: same transfer (a retry never makes a second one)."""
    name = "\n".join([file_number, receiving_agency, *sorted(object_digests)])
    return str(uuid.uuid5(_NAMESPACE, name))


def build_record(*, transfer: str, created_at: str, sending_agency: str, receiving_agency: str, reason: str,
                 person: dict, materials: list[dict], objects: list[StoredObject]) -> dict:
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "transfer_id": transfer,
        "created_at": created_at,
        "notice": {
            "sending_agency": sending_agency,
            "receiving_agency": receiving_agency,
            "person_name": person["name"],
            "id_number_masked": person["id_masked"],
            "file_number": person["file_number"],
            "volumes": {"original": 1, "copies": 0},
            "material_count": len(materials),
            "page_count": sum(len(m["pages"]) for m in materials),
            "reason": reason,
            "method": "electronic",
        },
        "materials": materials,
        "objects": [o.__dict__ for o in objects],
    }
