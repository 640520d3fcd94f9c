"""What every stage needs: the database, the object store, the agency's identity and the keys
that protect ID numbers."""

from __future__ import annotations

from dataclasses import dataclass, field

from access.idcipher import IdCipher
from errors import SetupError
from settings import DEMO_AGENCY_CODE, DEMO_AGENCY_NAME, DEMO_ID_HASH_KEY, Settings, StorageSettings
from storage.db import Database
from storage.objects import ObjectStore, open_store


@dataclass
class Services:
    db: Database
    store: ObjectStore
    staging_bucket: str
    archive_bucket: str
    agency: str = DEMO_AGENCY_CODE          # the code of the agency this installation works for
    id_hash_key: bytes = DEMO_ID_HASH_KEY
    settings: Settings = field(default_factory=Settings)
    agency_name: str = DEMO_AGENCY_NAME
    storage: StorageSettings | None = None  # replicas and tuning; None: the environment's

    @classmethod
    def from_settings(cls, storage: StorageSettings, agency: str | None = None, keep_connections: int = 0,
                      settings: Settings | None = None) -> Services:
        """`keep_connections`: idle database connections kept for reuse (a long-lived server)."""
        settings = settings or Settings.from_env()
        return cls(
            db=Database(storage.database_url, keep=keep_connections),
            store=open_store(storage.s3_endpoint_url, storage.object_root, storage.s3_region,
                             **(storage.s3.store_options() if storage.s3_endpoint_url else {})),
            staging_bucket=storage.staging_bucket,
            archive_bucket=storage.archive_bucket,
            agency=agency or settings.agency_code,
            id_hash_key=settings.id_hash_key,
            settings=settings,
            agency_name=settings.agency_name if (agency or settings.agency_code) == settings.agency_code
            else (agency or settings.agency_code),
            storage=storage,
        )

    @classmethod
    def from_env(cls, keep_connections: int = 0) -> Services:
        return cls.from_settings(StorageSettings.from_env(), keep_connections=keep_connections)

    @property
    def storage_settings(self) -> StorageSettings:
        return self.storage or StorageSettings.from_env()

    @property
    def id_cipher(self) -> IdCipher:
        return IdCipher.from_settings(self.settings)

    def prepare(self) -> None:
        """Refuses an unsafe production configuration, migrates the schema, registers this
        installation's agency and creates the buckets; safe to call at every start."""
        if self.settings.production:
            from devservices.production import check_production

            check_production(self)
            if pending := self.db.pending():  # the owner migrates, never the application's role
                raise SetupError(f"数据库尚有 {len(pending)} 个迁移未执行：请以属主角色运行 archive migrate",
                                 f"the database lacks {len(pending)} migrations ({pending[0]} first): run "
                                 "`archive migrate` as the tables' owner (ARCHIVE_MIGRATE_DATABASE_URL)")
        self.db.migrate()
        with self.db.transaction() as cur:
            cur.execute("INSERT INTO agencies (code, name) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                        (self.agency, self.agency_name))
        self.store.ensure_bucket(self.staging_bucket)
        self.store.ensure_bucket(self.archive_bucket, protect=True)
