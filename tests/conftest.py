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
from settings import StorageSettings
from stages.services import Services

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


def make_services(database_url: str, s3_url: str, settings=None) -> Services:
    suffix = uuid.uuid4().hex[:8]
    storage = StorageSettings(database_url, s3_url, None, f"staging-{suffix}", f"archive-{suffix}")
    services = Services.from_settings(storage, settings=settings)
    services.prepare()
    return services


@pytest.fixture
def services(database_url: str, s3_url: str) -> Services:
    return make_services(database_url, s3_url)


def pipeline_resources(services: Services, s3_url: str | None = None, **others) -> dict:
    """The pipeline's resources (pipeline.resources.archive_resources) on these test services."""
    from pipeline.resources import ArchiveServicesResource, archive_resources

    return archive_resources(ArchiveServicesResource(
        database_url=services.db.url, s3_endpoint_url=s3_url or services.store.endpoint_url,
        staging_bucket=services.staging_bucket, archive_bucket=services.archive_bucket), **others)


# People and clients of the staff web, for the tests that talk to it.
PASSWORD = "correct-horse-battery-9"
WEB = "https://127.0.0.1"  # TestClient speaks ASGI, not TLS: https so the Secure session cookie is sent


def add_user(services: Services, username: str, role: str, agency: str | None = None) -> None:
    from access import accounts

    with services.db.transaction() as cur:
        if agency:
            cur.execute("INSERT INTO agencies (code, name) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                        (agency, f"机构{agency}"))
        accounts.create_user(cur, username, role, PASSWORD, agency)


def token(services: Services, scopes: list[str], agency: str | None = None, days: int = 1) -> str:
    from access import accounts

    with services.db.transaction() as cur:
        return accounts.create_token(cur, "test", scopes, days, "test", agency)[1]


def web_client(services: Services, secret: str | None = None, **app_options):
    """A TestClient of the staff web as this site's own pages call it (Origin set), with an API
    token when `secret` is given."""
    from fastapi.testclient import TestClient

    from web.app import create_app

    headers = {"Origin": WEB}
    if secret:
        headers["Authorization"] = f"Bearer {secret}"
    return TestClient(create_app(services, **app_options), base_url=WEB, headers=headers)


def logged_in(services: Services, username: str, **app_options):
    client = web_client(services, **app_options)
    res = client.post("/api/login", data={"username": username, "password": PASSWORD})
    assert res.status_code == 200, res.text
    return client
