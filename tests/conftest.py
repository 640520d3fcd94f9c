"""Shared fixtures: one private PostgreSQL server and one moto S3 server per test session,
a fresh database and fresh buckets per test."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from devservices.postgres import LocalPostgres
from devservices.s3 import MotoServer, free_port
from stages.services import Services
from storage.config import StorageSettings

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_scans" / "demo"
SAMPLE_BATCH = SAMPLE / "GZ2026-S007"
SAMPLE_TRUTH = SAMPLE / "truth"


@pytest.fixture(scope="session", autouse=True)
def _clean_environment() -> None:
    # A developer's shell must not point the tests at real services.
    for key in [k for k in os.environ if k.startswith("ARCHIVE_")]:
        del os.environ[key]
    os.environ["AWS_ACCESS_KEY_ID"] = "testing"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
    os.environ["AWS_DEFAULT_REGION"] = "us-east-1"


def searchable_tempdir(prefix: str) -> Path:
    """A temp folder the postgres system user can reach (pytest's tmp_path is 0700 as root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="session")
def pg_server() -> Iterator[LocalPostgres]:
    root = searchable_tempdir("archive-test-pg-")
    pg = LocalPostgres(root / "data", free_port())
    pg.start()
    yield pg
    pg.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def s3_url() -> Iterator[str]:
    server = MotoServer()
    server.start()
    yield server.url
    server.stop()


def new_database(pg: LocalPostgres) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    pg.ensure_database(name)
    return pg.url(name)


@pytest.fixture
def database_url(pg_server: LocalPostgres) -> Iterator[str]:
    url = new_database(pg_server)
    yield url
    name = url.rsplit("/", 1)[1]
    conn = psycopg2.connect(pg_server.url("postgres"))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


def make_services(database_url: str, s3_url: str) -> Services:
    suffix = uuid.uuid4().hex[:8]
    settings = StorageSettings(database_url, s3_url, None, f"staging-{suffix}", f"archive-{suffix}")
    services = Services.from_settings(settings)
    services.prepare()
    return services


@pytest.fixture
def services(database_url: str, s3_url: str) -> Services:
    return make_services(database_url, s3_url)
