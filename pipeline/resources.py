"""Resources: configuration only; the work is done by `stages/`, `ocr/` and `storage/`."""


import dataclasses
from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr

from ocr import EngineConfig
from settings import Settings, StorageSettings
from stages.archive import PDF_UNIT_PAGES
from stages.ocr import UNIT_PAGES
from stages.services import Services
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
    workers: int = 0  # OCR processes of one unit; 0: one per core
    unit_pages: int = UNIT_PAGES  # pages per unit of the ocr stage (each one step)
    pdf_unit_pages: int = PDF_UNIT_PAGES  # pages per unit of the archive stage's searchable PDFs (text from OCR)

    def engine_config(self) -> EngineConfig:
        return EngineConfig(primary=self.primary, fallback=self.fallback, lang=self.lang)


class SignerResource(dg.ConfigurableResource):
    """Ed25519 key of the sending agency: ARCHIVE_SIGNING_KEY (PEM), else a key file."""

    key_file: str | None = None

    def signer(self) -> Signer:
        settings = Settings.from_env()
        path = Path(self.key_file) if self.key_file else settings.keys_dir / "signing.pem"
        return Signer.from_pem_or_file(settings.signing_key_pem, path, generate=not settings.production)


def archive_resources(services: ArchiveServicesResource | None = None, ocr_engine: OcrEngineResource | None = None,
                      signer: SignerResource | None = None) -> dict[str, dg.ConfigurableResource]:
    """The resources of every entry point (the Dagster definitions, the web server's runs, the
    CLI and the demo), made in one place; unset fields come from the environment (settings)."""
    from pipeline.step_outputs import StepOutputsIOManager  # it depends on the services resource

    services = services or ArchiveServicesResource()
    settings = Settings.from_env()
    ocr_engine = ocr_engine or OcrEngineResource(unit_pages=settings.ocr_unit_pages,
                                                 pdf_unit_pages=settings.pdf_unit_pages)
    return {"services": services, "ocr_engine": ocr_engine,
            "signer": signer or SignerResource(), "step_outputs": StepOutputsIOManager(services=services)}
