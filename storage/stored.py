"""`stored_objects`: what preservation storage holds, a row an object, written once its copy was
read back and its sha256 compared (storage/objects.py's put_*_verified)."""

from __future__ import annotations

from dataclasses import astuple, dataclass

import psycopg2.extras


@dataclass(frozen=True)
class StoredObject:
    bucket: str
    key: str
    sha256: str
    bytes: int
    role: str          # original | ocr | searchable-pdf | transfer-package | transfer-record | received-package
    media_type: str


def record_verified(cur, objects: list[StoredObject]) -> list[StoredObject]:
    """Rows for objects just written and verified, in the caller's transaction; returns those
    not recorded before (a rerun writes nothing twice)."""
    if not objects:
        return []
    new = psycopg2.extras.execute_values(
        cur, "INSERT INTO stored_objects (bucket, key, sha256, bytes, role, media_type, verified_at) VALUES %s"
             " ON CONFLICT DO NOTHING RETURNING bucket, key", [astuple(o) for o in objects],
        template="(%s, %s, %s, %s, %s, %s, now())", fetch=True)
    made = {(r["bucket"], r["key"]) if isinstance(r, dict) else tuple(r) for r in new}
    if made:  # the primary store's copy, verified as it was written (preservation/ adds the replicas')
        psycopg2.extras.execute_values(
            cur, "INSERT INTO object_copies (bucket, key, copy, state, verified_at) VALUES %s ON CONFLICT DO NOTHING",
            sorted(made), template="(%s, %s, 'primary', 'verified', now())")
    return [o for o in objects if (o.bucket, o.key) in made]
