"""The inbox sensor on a real PostgreSQL and S3: one run per complete, stable batch, never two."""

import json
import os
import shutil
import time

import dagster as dg
import pytest

from pipeline.definitions import batch_job
from pipeline.partitions import scan_batches
from pipeline.resources import ArchiveServicesResource
from pipeline.sensors import make_inbox_sensor
from storage.objects import content_key, sha256_hex
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
    # a restarted daemon that lost the cursor hands the folder in again: the same batch, whose
    # claim still stands while its run is being made
    again = tick(tick(None).cursor)
    assert again.run_requests == [] and again.dynamic_partitions_requests == []
    assert services.db.count("batches") == 1
    assert json.loads(again.cursor)["handed_in"].keys() == {"batch-b"}
    # the run never made (the daemon died in the tick): once the claim lapses it is asked for again,
    # under the same run key, which the daemon launches once
    with services.db.transaction() as cur:
        cur.execute("UPDATE batch_run_claims SET claimed_at = now() - interval '1 hour'")
    assert [r.run_key for r in tick(again.cursor).run_requests] == [launched.run_key]


def test_a_batch_uploaded_elsewhere_launches_exactly_one_run(inbox, tick, services):
    from stages.submit import submit_path

    batch_id = submit_path(SAMPLE_BATCH, services).batch_id  # the web page and `archive upload` do this
    first = tick(None)
    assert [(r.run_key, r.partition_key) for r in first.run_requests] == [(batch_id, batch_id)]
    assert tick(first.cursor).run_requests == []  # its partition exists now: requested once
    assert tick(None).run_requests == []          # a restarted daemon with no cursor neither


def _touch(folder, when: float) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            os.utime(path, (when, when))


def test_a_batch_is_taken_only_once_it_has_stopped_changing_for_the_settle_time(inbox, tick, monkeypatch):
    monkeypatch.setenv("ARCHIVE_INBOX_SETTLE_SECONDS", "3")
    folder = inbox / "fresh"
    shutil.copytree(SAMPLE_BATCH, folder)
    _touch(folder, time.time())  # just copied in (copytree keeps the sample's old times)
    first = tick(None)
    second = tick(first.cursor)  # unchanged since the first look, but newer than the settle time
    assert first.run_requests == [] and second.run_requests == []
    assert json.loads(second.cursor)["handed_in"] == {}
    newest = max(p.stat().st_mtime for p in folder.rglob("*") if p.is_file())
    time.sleep(max(0.0, newest + 3.1 - time.time()))
    third = tick(second.cursor)
    assert len(third.run_requests) == 1 and json.loads(third.cursor)["handed_in"].keys() == {"fresh"}


def _staged(services) -> set[str]:
    return {key for key, _ in services.store.keys(services.staging_bucket)}


def test_a_folder_handed_in_again_after_its_content_changed_is_a_new_batch_that_resends_only_the_change(
        inbox, tick, services):
    folder = inbox / "batch-c"
    shutil.copytree(SAMPLE_BATCH, folder)
    first = tick(tick(None).cursor)
    [before] = [r.run_key for r in first.run_requests]
    staged = _staged(services)
    assert len(staged) == 10
    page = folder / "pages" / "GZ2026-0070002-0001.jpg"
    page.write_bytes(page.read_bytes() + b"\0rescanned")  # staff replace a page of a folder already handed in
    looked = tick(first.cursor)
    assert looked.run_requests == []  # changed since the last look: it must settle again
    again = tick(looked.cursor)
    assert [r.run_key for r in again.run_requests] == [again.run_requests[0].partition_key]
    after = again.run_requests[0].run_key
    assert after != before  # other content: another batch and another run, not ignored
    assert tick.instance.has_dynamic_partition(scan_batches.name, after)
    assert services.db.count("batches") == 2
    assert _staged(services) - staged == {content_key(sha256_hex(page.read_bytes()), "originals")}  # only the change
    assert tick(again.cursor).run_requests == []  # and that once


def test_a_folder_touched_without_a_content_change_asks_for_no_second_run(inbox, tick, services):
    folder = inbox / "batch-d"
    shutil.copytree(SAMPLE_BATCH, folder)
    first = tick(tick(None).cursor)
    [launched] = [r.run_key for r in first.run_requests]
    _touch(folder, time.time() - 60)  # a copy tool synced the same files again: new times, same bytes
    again = tick(tick(first.cursor).cursor)
    assert again.run_requests == [] and launched  # the same batch, its claim standing: no second run asked for
    assert services.db.count("batches") == 1 and len(_staged(services)) == 10


def test_a_page_still_being_written_under_a_hidden_name_keeps_the_folder_waiting(inbox, tick, services,
                                                                                 monkeypatch):
    monkeypatch.setenv("ARCHIVE_INBOX_SETTLE_SECONDS", "3")
    folder = inbox / "rsync"
    shutil.copytree(SAMPLE_BATCH, folder)
    _touch(folder, time.time() - 60)   # the manifest and most pages arrived a minute ago
    partial = folder / "pages" / ".GZ2026-0070003-0001.jpg.Xk3f9a"   # rsync's temporary name
    partial.write_bytes(b"\xff\xd8 half a page")
    first = tick(None)
    second = tick(first.cursor)   # the visible files have settled; the one being written has not
    assert first.run_requests == [] and second.run_requests == [] and services.db.count("batches") == 0
    partial.rename(folder / "pages" / "GZ2026-0070003-0001.jpg")   # rsync finishes: renamed into place
    assert tick(tick(second.cursor).cursor).run_requests == []     # the rename is a change: settle again
