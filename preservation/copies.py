"""The copies of the archive bucket: the primary store's, then each configured replica's."""

from __future__ import annotations

from dataclasses import dataclass

from stages.services import Services
from storage.objects import ObjectStore, open_store

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
        options = {"access_key": r.access_key, "secret_key": r.secret_key, "name": f"replica {r.name}",
                   **settings.s3.store_options()} if r.endpoint_url else {"name": f"replica {r.name}"}
        out.append(Copy(r.name, open_store(r.endpoint_url, r.object_root, r.region, **options), r.bucket))
    return out


def copies(services: Services) -> list[Copy]:
    return [Copy(PRIMARY, services.store, services.archive_bucket), *replicas(services)]
