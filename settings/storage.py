"""Storage settings: the database, the object stores (primary and replicas) and how they are
written; the same variables in production, demo and tests, read by settings.environment."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from settings.environment import Problems, choice, text, whole

WRITE_ONCE = ("off", "versioning", "object-lock")


@dataclass(frozen=True)
class ReplicaSettings:
    """One more copy of the archive bucket: another S3 endpoint (its own bucket and credentials)
    or a folder on another disk. ARCHIVE_REPLICA_<NAME>_* for each name in ARCHIVE_REPLICAS."""

    name: str
    endpoint_url: str | None
    object_root: str | None
    bucket: str
    region: str = "us-east-1"
    access_key: str | None = None
    secret_key: str | None = None


@dataclass(frozen=True)
class S3Tuning:
    part_mb: int = 16               # multipart part size; memory held is about (4 + 1) parts
    multipart_mb: int = 16          # objects above this go in parts
    timeout_seconds: float = 60.0   # a request that stalls longer is retried
    attempts: int = 8               # tries per request (botocore's standard retry mode, backoff with jitter)
    write_once: str = "off"         # archive bucket protection: off | versioning | object-lock
    lock_days: int = 0              # object-lock retention in compliance mode
    verify: str = "digest"          # digest: the endpoint's MD5 of what it received; read-back: every write read back

    def store_options(self) -> dict:
        return {"part_size": self.part_mb * 1024**2, "multipart_threshold": self.multipart_mb * 1024**2,
                "timeout": self.timeout_seconds, "attempts": self.attempts, "write_once": self.write_once,
                "lock_days": self.lock_days, "verify": self.verify}


@dataclass(frozen=True)
class StorageSettings:
    database_url: str
    s3_endpoint_url: str | None   # None: the local directory store under object_root
    object_root: str | None
    staging_bucket: str = "pa-staging"
    archive_bucket: str = "pa-archive"
    s3_region: str = "us-east-1"
    replicas: tuple[ReplicaSettings, ...] = ()
    s3: S3Tuning = field(default_factory=S3Tuning)
    fixity_period_days: int = 90    # every copy of every object re-read at least this often
    migrate_database_url: str = ""  # ARCHIVE_MIGRATE_DATABASE_URL: the schema owner's connection, for migrations

    @classmethod
    def from_env(cls) -> StorageSettings:
        """The storage part of the configuration alone (what the storage tools need)."""
        problems = Problems()
        settings = storage_from_env(problems)
        problems.raise_all()
        return settings


def storage_from_env(problems: Problems) -> StorageSettings:
    archive_bucket = text("ARCHIVE_BUCKET", "pa-archive")
    region = text("AWS_DEFAULT_REGION", "us-east-1")
    return StorageSettings(
        database_url=text("ARCHIVE_DATABASE_URL", "postgresql://archive@127.0.0.1:54329/archive"),
        s3_endpoint_url=text("ARCHIVE_S3_ENDPOINT_URL") or None,
        object_root=text("ARCHIVE_OBJECT_ROOT") or None,
        staging_bucket=text("ARCHIVE_STAGING_BUCKET", "pa-staging"),
        archive_bucket=archive_bucket,
        s3_region=region,
        replicas=replicas_from_env(problems, archive_bucket, region),
        s3=S3Tuning(part_mb=whole(problems, "ARCHIVE_S3_PART_MB", 16, 5),
                    multipart_mb=whole(problems, "ARCHIVE_S3_MULTIPART_MB", 16, 5),
                    timeout_seconds=float(whole(problems, "ARCHIVE_S3_TIMEOUT_SECONDS", 60, 1)),
                    attempts=whole(problems, "ARCHIVE_S3_ATTEMPTS", 8, 1),
                    write_once=choice(problems, "ARCHIVE_S3_WRITE_ONCE", WRITE_ONCE),
                    lock_days=whole(problems, "ARCHIVE_S3_LOCK_DAYS", 0, 0),
                    verify=choice(problems, "ARCHIVE_S3_VERIFY", ("digest", "read-back"))),
        fixity_period_days=whole(problems, "ARCHIVE_FIXITY_PERIOD_DAYS", 90, 1),
        migrate_database_url=text("ARCHIVE_MIGRATE_DATABASE_URL"),
    )


def replicas_from_env(problems: Problems, archive_bucket: str, region: str) -> tuple[ReplicaSettings, ...]:
    out = []
    for name in filter(None, (n.strip() for n in text("ARCHIVE_REPLICAS").split(","))):
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,30}", name) or name == "primary":
            problems.add(f"副本名 {name!r} 无效（小写字母、数字、连字符，且不能是 primary）",
                         f"replica name {name!r} is invalid (lowercase letters, digits and '-', not 'primary')",
                         item=name)
            continue
        var = f"ARCHIVE_REPLICA_{name.upper().replace('-', '_')}_"
        endpoint, root = text(var + "ENDPOINT_URL") or None, text(var + "OBJECT_ROOT") or None
        if bool(endpoint) == bool(root):
            problems.add(f"副本 {name} 须设置 {var}ENDPOINT_URL 或 {var}OBJECT_ROOT 之一",
                         f"replica {name} needs exactly one of {var}ENDPOINT_URL and {var}OBJECT_ROOT", item=name)
            continue
        out.append(ReplicaSettings(name, endpoint, root, text(var + "BUCKET") or archive_bucket,
                                   text(var + "REGION") or region, text(var + "ACCESS_KEY_ID") or None,
                                   text(var + "SECRET_ACCESS_KEY") or None))
    return tuple(out)
