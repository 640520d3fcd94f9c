"""The inbox sensor on a real PostgreSQL and S3: one run per complete, stable batch, never two."""

import json
import shutil

import dagster as dg
import pytest

from pipeline.definitions import batch_job
from pipeline.partitions import scan_batches
from pipeline.resources import ArchiveServicesResource
from pipeline.sensors import make_inbox_sensor
from tests.conftest import SAMPLE_BATCH


@pytest.fixture
def inbox(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHIVE_INBOX", str(tmp_path / "inbox"))
    monkeypatch.setenv("ARCHIVE_INBOX_SETTLE_SECONDS", "0")
    (tmp_path / "inbox").mkdir()
    return tmp_path / "inbox"


@pytest.fixture
def tick(services):
    sensor = make_inbox_sensor(batch_job)
    resources = {"services": ArchiveServicesResource(
        database_url=services.db.url, s3_endpoint_url=services.store.endpoint_url,
        staging_bucket=services.staging_bucket, archive_bucket=services.archive_bucket)}
    instance = dg.DagsterInstance.ephemeral()

    def run(cursor: str | None) -> dg.SensorResult:
        result = sensor(dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources))
        for request in result.dynamic_partitions_requests:  # what the daemon does with them
            instance.add_dynamic_partitions(scan_batches.name, list(request.partition_keys))
        return result

    run.instance = instance
    return run


def test_a_dropped_batch_launches_exactly_one_run(inbox, tick):
    shutil.copytree(SAMPLE_BATCH, inbox / "batch-a")
    first = tick(None)
    assert first.run_requests == []  # first look: not yet known to be stable
    second = tick(first.cursor)
    assert len(second.run_requests) == 1
    batch_id = second.run_requests[0].partition_key
    assert second.run_requests[0].run_key == batch_id
    assert tick.instance.has_dynamic_partition(scan_batches.name, batch_id)
    third = tick(second.cursor)
    assert third.run_requests == [] and third.dynamic_partitions_requests == []


def test_incomplete_batch_launches_nothing(inbox, tick):
    (inbox / "no-manifest" / "pages").mkdir(parents=True)
    for page in sorted(SAMPLE_BATCH.glob("pages/*"))[:2]:
        shutil.copy(page, inbox / "no-manifest" / "pages" / page.name)
    cursor = None
    for _ in range(3):
        result = tick(cursor)
        assert result.run_requests == []
        cursor = result.cursor


def test_a_batch_still_being_copied_waits(inbox, tick):
    folder = inbox / "copying"
    shutil.copytree(SAMPLE_BATCH, folder)
    first = tick(None)
    (folder / "pages" / "late.jpg").write_bytes(b"more arriving")  # changed since the first look
    second = tick(first.cursor)
    assert second.run_requests == []
    third = tick(second.cursor)
    assert len(third.run_requests) == 1


def test_restart_with_lost_cursor_launches_no_duplicate(inbox, tick, services):
    shutil.copytree(SAMPLE_BATCH, inbox / "batch-b")
    launched = tick(tick(None).cursor).run_requests[0]
    # a restarted daemon that lost the cursor hands the folder in again: same batch, same run key
    again = tick(tick(None).cursor)
    assert [r.run_key for r in again.run_requests] == [launched.run_key]
    assert again.dynamic_partitions_requests == []
    assert services.db.count("batches") == 1
    assert json.loads(again.cursor)["handed_in"].keys() == {"batch-b"}


def test_a_batch_uploaded_elsewhere_launches_exactly_one_run(inbox, tick, services):
    from stages.submit import submit_path

    batch_id = submit_path(SAMPLE_BATCH, services).batch_id  # the web page and `archive upload` do this
    first = tick(None)
    assert [(r.run_key, r.partition_key) for r in first.run_requests] == [(batch_id, batch_id)]
    assert tick(first.cursor).run_requests == []  # its partition exists now: requested once
    assert tick(None).run_requests == []          # a restarted daemon with no cursor neither
