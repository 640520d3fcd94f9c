"""Archive stage: originals and OCR results into preservation storage, verified.

Each object is copied from staging to a content-addressed key in the archive bucket, read
back and compared with its sha256 before a row in `stored_objects` records it. Objects
already recorded are skipped, so a rerun copies nothing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from stages.ocr import ocr_key
from stages.services import Services
from storage.objects import IntegrityError, content_key, put_verified, sha256_hex


@dataclass
class ArchiveResult:
    batch_id: str
    stored: int
    already_stored: int
    bytes_stored: int


def objects_to_preserve(batch_id: str, services: Services, engine_key: str) -> list[tuple[str, str, str, str]]:
    """(sha256, staging key, role, media type) of the batch's accepted originals and their OCR."""
    with services.db.transaction() as cur:
        cur.execute("SELECT sha256, staging_key, role, media_type, status FROM batch_files WHERE batch_id = %s"
                    " AND (role = 'manifest' OR status = 'accepted') ORDER BY path", (batch_id,))
        rows = cur.fetchall()
    out = []
    for r in rows:
        out.append((r["sha256"], r["staging_key"], "original", r["media_type"] or "text/csv"))
        if r["role"] == "page":
            key = ocr_key(engine_key, r["sha256"])
            info = services.store.head(services.staging_bucket, key)
            if info is None or not info.sha256:
                raise LookupError(f"OCR result {key} of {r['staging_key']} is missing: run the ocr stage first")
            out.append((info.sha256, key, "ocr", "application/json"))
    return out


def archive_batch(batch_id: str, services: Services, engine_key: str) -> ArchiveResult:
    bucket = services.archive_bucket
    stored = already = size = 0
    seen: set[str] = set()
    for sha, staging_key, role, media_type in objects_to_preserve(batch_id, services, engine_key):
        key = content_key(sha)
        if key in seen:
            continue
        seen.add(key)
        with services.db.transaction() as cur:
            cur.execute("SELECT 1 FROM stored_objects WHERE bucket = %s AND key = %s", (bucket, key))
            if cur.fetchone():
                already += 1
                continue
        data = services.store.get(services.staging_bucket, staging_key)
        if sha256_hex(data) != sha:
            raise IntegrityError(f"staging object {staging_key} does not match its sha256 {sha}")
        put_verified(services.store, bucket, key, data, media_type)
        with services.db.transaction() as cur:
            cur.execute("INSERT INTO stored_objects (bucket, key, sha256, bytes, role, media_type, verified_at)"
                        " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                        (bucket, key, sha, len(data), role, media_type, dt.datetime.now(dt.UTC)))
        stored += 1
        size += len(data)
    with services.db.transaction() as cur:
        cur.execute("UPDATE batches SET status = 'archived' WHERE batch_id = %s", (batch_id,))
    return ArchiveResult(batch_id, stored, already, size)
