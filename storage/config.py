"""Storage settings from the environment; the same variables in production, demo and tests."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class StorageSettings:
    database_url: str
    s3_endpoint_url: str | None   # None: the local directory store under object_root
    object_root: str | None
    staging_bucket: str = "pa-staging"
    archive_bucket: str = "pa-archive"
    s3_region: str = "us-east-1"

    @classmethod
    def from_env(cls) -> StorageSettings:
        env = os.environ
        return cls(
            database_url=env.get("ARCHIVE_DATABASE_URL", "postgresql://archive@127.0.0.1:54329/archive"),
            s3_endpoint_url=env.get("ARCHIVE_S3_ENDPOINT_URL") or None,
            object_root=env.get("ARCHIVE_OBJECT_ROOT") or None,
            staging_bucket=env.get("ARCHIVE_STAGING_BUCKET", "pa-staging"),
            archive_bucket=env.get("ARCHIVE_BUCKET", "pa-archive"),
            s3_region=env.get("AWS_DEFAULT_REGION", "us-east-1"),
        )
