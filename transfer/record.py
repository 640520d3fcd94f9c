"""The transfer record: what a sending agency signs so a receiver can prove what it got.

Canonical JSON (RFC 8785) of: record and transfer ids, a nonce, sender and receiver, the file
(number, name, masked ID number, counts), the transfer notice (档案转递通知单), the package
(its bytes, sha256 and the bag's tag-manifest digest, which covers every payload file's
digest), when it was made and until when it may be accepted; then an Ed25519 signature over
all of that, naming the key by id only (transfer/signing.py). The receiver checks it with the
key its registry holds for the sender (transfer/verify.py), never with one the record could carry.
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid

SCHEMA = "personnel-archive/transfer-record"
SCHEMA_VERSION = 2


def build_record(*, transfer_id: str, sender: dict, receiver: dict, file: dict, notice: dict, package: dict,
                 valid_days: int, now: dt.datetime | None = None) -> dict:
    now = now or dt.datetime.now(dt.UTC)
    return {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION,
        "record_id": str(uuid.uuid4()), "transfer_id": transfer_id, "nonce": secrets.token_hex(16),
        "sender": sender, "receiver": receiver, "file": file, "notice": notice, "package": package,
        "created_at": now.isoformat(timespec="seconds"),
        "expires_at": (now + dt.timedelta(days=valid_days)).isoformat(timespec="seconds"),
    }
