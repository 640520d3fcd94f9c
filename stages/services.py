"""What every stage needs: the database, the object store and the agency's identity."""

from __future__ import annotations

import os
from dataclasses import dataclass

from storage.config import StorageSettings
from storage.db import Database
from storage.objects import ObjectStore, open_store

DEFAULT_AGENCY = "贵州省人才交流服务中心"
# Demo-only key; production sets ARCHIVE_ID_HASH_KEY so ID hashes cannot be recomputed offline.
_DEMO_ID_HASH_KEY = "demo-id-hash-key-not-for-production"


@dataclass
class Services:
    db: Database
    store: ObjectStore
    staging_bucket: str
    archive_bucket: str
    agency: str = DEFAULT_AGENCY
    id_hash_key: bytes = _DEMO_ID_HASH_KEY.encode()

    @classmethod
    def from_settings(cls, settings: StorageSettings, agency: str | None = None, keep_connections: int = 0) -> Services:
        """`keep_connections`: idle database connections kept for reuse (a long-lived server)."""
        return cls(
            db=Database(settings.database_url, keep=keep_connections),
            store=open_store(settings.s3_endpoint_url, settings.object_root, settings.s3_region),
            staging_bucket=settings.staging_bucket,
            archive_bucket=settings.archive_bucket,
            agency=agency or os.environ.get("ARCHIVE_AGENCY", DEFAULT_AGENCY),
            id_hash_key=os.environ.get("ARCHIVE_ID_HASH_KEY", _DEMO_ID_HASH_KEY).encode(),
        )

    @classmethod
    def from_env(cls, keep_connections: int = 0) -> Services:
        return cls.from_settings(StorageSettings.from_env(), keep_connections=keep_connections)

    def prepare(self) -> None:
        """Migrates the schema and creates the buckets; safe to call at every start."""
        self.db.migrate()
        self.store.ensure_bucket(self.staging_bucket)
        self.store.ensure_bucket(self.archive_bucket)
