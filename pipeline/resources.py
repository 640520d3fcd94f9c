"""Resources: configuration only; the work is done by `stages/`, `ocr/` and `storage/`."""


import dataclasses
import os
from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr

from ocr import EngineConfig
from settings import Settings
from stages.services import Services
from storage.config import StorageSettings
from transfer.signing import Signer


class ArchiveServicesResource(dg.ConfigurableResource):
    """PostgreSQL and object storage. Unset fields come from the ARCHIVE_* environment."""

    database_url: str | None = None
    s3_endpoint_url: str | None = None
    object_root: str | None = None
    staging_bucket: str | None = None
    archive_bucket: str | None = None
    agency: str | None = None

    _services: Services | None = PrivateAttr(default=None)

    def services(self) -> Services:
        if self._services is None:
            overrides = {f.name: getattr(self, f.name) for f in dataclasses.fields(StorageSettings)
                         if getattr(self, f.name, None) is not None}
            settings = dataclasses.replace(StorageSettings.from_env(), **overrides)
            self._services = Services.from_settings(settings, self.agency)
            self._services.prepare()
        return self._services


class OcrEngineResource(dg.ConfigurableResource):
    primary: str = EngineConfig.primary
    fallback: str = EngineConfig.fallback
    lang: str = EngineConfig.lang
    workers: int = 0  # 0: one worker process per core

    def engine_config(self) -> EngineConfig:
        return EngineConfig(primary=self.primary, fallback=self.fallback, lang=self.lang)


class SignerResource(dg.ConfigurableResource):
    """Ed25519 key of the sending agency: ARCHIVE_SIGNING_KEY (PEM), else a key file."""

    key_file: str | None = None

    def signer(self) -> Signer:
        path = self.key_file or os.path.join(os.environ.get("DAGSTER_HOME", "dagster_home"), "keys", "signing.pem")
        return Signer.from_env_or_file(Path(path), generate=not Settings.from_env().production)
