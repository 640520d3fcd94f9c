"""The copies of the archive bucket: the primary store's, then each configured replica's."""

from __future__ import annotations

from dataclasses import dataclass

from stages.services import Services
from storage.objects import ObjectStore

PRIMARY = "primary"


@dataclass(frozen=True)
class Copy:
    name: str
    store: ObjectStore
    bucket: str


def replicas(services: Services) -> list[Copy]:
    settings = services.storage_settings
    out = []
    for r in settings.replicas:
        if r.endpoint_url:
            from storage.s3store import S3ObjectStore

            hint = f"ARCHIVE_REPLICA_{r.name.upper().replace('-', '_')}_ENDPOINT_URL and its credentials"
            store: ObjectStore = S3ObjectStore(r.endpoint_url, r.region, access_key=r.access_key,
                                               secret_key=r.secret_key, name=f"replica {r.name}", hint=hint,
                                               **settings.s3.store_options())
        else:
            from storage.localstore import LocalObjectStore

            store = LocalObjectStore(r.object_root or "", name=f"replica {r.name}", create_root=False)
        out.append(Copy(r.name, store, r.bucket))
    return out


def copies(services: Services) -> list[Copy]:
    return [Copy(PRIMARY, services.store, services.archive_bucket), *replicas(services)]
