"""The local instance under dagster_home/: its PostgreSQL cluster, object folder and settings."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from devservices.postgres import LocalPostgres
from settings.environment import Problems, is_set, text, whole

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PG_PORT = 54329


@dataclass
class LocalInstance:
    home: Path
    port: int

    @classmethod
    def from_env(cls) -> LocalInstance:
        home = Path(text("DAGSTER_HOME") or REPO / "dagster_home").absolute()
        problems = Problems()
        port = whole(problems, "ARCHIVE_PG_PORT", DEFAULT_PG_PORT)
        problems.raise_all()
        return cls(home, port)

    @property
    def postgres(self) -> LocalPostgres:
        return LocalPostgres(self.home / "pgdata", self.port)

    def start(self) -> bool:
        """Starts PostgreSQL if needed; True if this call started it."""
        pg = self.postgres
        was_running = pg.running()
        pg.start()
        for db in ("archive", "dagster"):
            pg.ensure_database(db)
        return not was_running

    def stop(self) -> None:
        self.postgres.stop()

    def environment(self) -> dict[str, str]:
        """Variables the pipeline, the Dagster instance and `dagster dev` read; existing ones win."""
        pg = self.postgres
        env = {
            "DAGSTER_HOME": str(self.home),
            "ARCHIVE_DATABASE_URL": pg.url("archive"),
            # SQLAlchemy 2.1 maps plain postgresql:// to psycopg 3; we ship psycopg2
            "ARCHIVE_DAGSTER_DATABASE_URL": pg.url("dagster").replace("postgresql://", "postgresql+psycopg2://"),
            "ARCHIVE_OBJECT_ROOT": str(self.home / "objects"),
        }
        out = {k: text(k) or v for k, v in env.items()}
        if not is_set("ARCHIVE_REPLICAS"):  # the demo keeps a second copy (ARCHIVE_REPLICAS= : none)
            (self.home / "replica").mkdir(parents=True, exist_ok=True)
            out |= {"ARCHIVE_REPLICAS": "demo-copy",
                    "ARCHIVE_REPLICA_DEMO_COPY_OBJECT_ROOT": str(self.home / "replica")}
        return out

    def export(self) -> None:
        os.environ.update(self.environment())


@contextmanager
def local_database_if_unconfigured() -> Iterator[None]:
    """Without ARCHIVE_DATABASE_URL, the demo's PostgreSQL: started if need be, stopped after
    if this call started it. With it, nothing: production's database is somebody else's."""
    if text("ARCHIVE_DATABASE_URL"):
        yield
        return
    instance = LocalInstance.from_env()
    instance.export()
    started = instance.start()
    try:
        yield
    finally:
        if started:
            instance.stop()
