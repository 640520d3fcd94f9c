"""Resources: configuration only; the work is done by `stages/`, `ocr/` and `storage/`."""


import dataclasses
from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr

from errors import SetupError
from ocr import EngineConfig
from settings import Settings, StorageSettings
from stages.archive import COPY_UNIT_FILES, PDF_UNIT_PAGES
from stages.intake import INTAKE_UNIT_FILES
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

    def engine_config(self) -> EngineConfig:
        return EngineConfig(primary=self.primary, fallback=self.fallback, lang=self.lang)


class WorkUnitsResource(dg.ConfigurableResource):
    """How each stage's work is split into units (a step each, on any worker) and how many
    processes one unit uses."""

    processes: int = 0  # worker processes of one unit (intake's checks, OCR); 0: one per core
    intake_files: int = INTAKE_UNIT_FILES  # page files per unit of intake's checks
    ocr_pages: int = UNIT_PAGES  # pages per OCR unit
    copy_files: int = COPY_UNIT_FILES  # page files per unit of the archive's copies (with their OCR results)
    pdf_pages: int = PDF_UNIT_PAGES  # pages per unit of the archive stage's searchable PDFs (text from OCR)

    def checked(self) -> "WorkUnitsResource":
        """This resource, once every value is a count a unit can use; SetupError naming each other
        value (a run's configuration may set any integer: 0 pages a unit would never end)."""
        bad = [f"{name}={value}" for name, value, least in (
            ("processes", self.processes, 0), ("intake_files", self.intake_files, 1), ("ocr_pages", self.ocr_pages, 1),
            ("copy_files", self.copy_files, 1), ("pdf_pages", self.pdf_pages, 1)) if value < least]
        if bad:
            raise BadWorkUnits(", ".join(bad))
        return self

    @classmethod
    def from_settings(cls, settings: Settings, processes: int = 0) -> "WorkUnitsResource":
        return cls(processes=processes, intake_files=settings.intake_unit_files, ocr_pages=settings.ocr_unit_pages,
                   copy_files=settings.copy_unit_files, pdf_pages=settings.pdf_unit_pages)


class BadWorkUnits(SetupError):
    def __init__(self, values: str) -> None:
        super().__init__(f"工作单元配置无效：{values}（processes 须 ≥ 0，其余须 ≥ 1）",
                         f"work units resource: {values} (processes must be 0 or more, every unit size 1 or more)",
                         item="units")


class SignerResource(dg.ConfigurableResource):
    """Ed25519 key of the sending agency: ARCHIVE_SIGNING_KEY (PEM), else a key file."""

    key_file: str | None = None

    def signer(self) -> Signer:
        settings = Settings.from_env()
        path = Path(self.key_file) if self.key_file else settings.keys_dir / "signing.pem"
        return Signer.from_pem_or_file(settings.signing_key_pem, path, generate=not settings.production)


def archive_resources(services: ArchiveServicesResource | None = None, ocr_engine: OcrEngineResource | None = None,
                      signer: SignerResource | None = None,
                      units: WorkUnitsResource | None = None) -> dict[str, dg.ConfigurableResource]:
    """The resources of every entry point (the Dagster definitions, the web server's runs, the
    CLI and the demo), made in one place; unset fields come from the environment (settings)."""
    from pipeline.step_outputs import StepOutputsIOManager  # it depends on the services resource

    services = services or ArchiveServicesResource()
    return {"services": services, "ocr_engine": ocr_engine or OcrEngineResource(),
            "units": units or WorkUnitsResource.from_settings(Settings.from_env()),
            "signer": signer or SignerResource(), "step_outputs": StepOutputsIOManager(services=services)}
