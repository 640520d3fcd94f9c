"""The inbox sensor on a real PostgreSQL and S3: one hand-in per complete, stable folder (a run of
its own, never the tick's work), then one run per batch, never two."""

import json
import os
import shutil
import time

import dagster as dg
import pytest

from pipeline.definitions import batch_job
from pipeline.failures import known_failure
from pipeline.hand_in import HAND_IN_JOB, hand_in_job
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
    sensor = make_inbox_sensor(batch_job, hand_in_job)
    resources = {"services": ArchiveServicesResource(
        database_url=services.db.url, s3_endpoint_url=services.store.endpoint_url,
        staging_bucket=services.staging_bucket, archive_bucket=services.archive_bucket)}
    instance = dg.DagsterInstance.ephemeral()

    def launch(result: dg.SensorResult) -> None:  # what the daemon does with hand-ins: one run per run key
        for request in hand_ins(result):
            if not instance.get_runs(filters=dg.RunsFilter(tags={"dagster/run_key": request.run_key})):
                hand_in_job.execute_in_process(run_config=request.run_config, instance=instance, resources=resources,
                                               tags={**request.tags, "dagster/run_key": request.run_key},
                                               raise_on_error=False)

    def run(cursor: str | None, launch_hand_ins: bool = True) -> dg.SensorResult:
        result = sensor(dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources))
        for request in result.dynamic_partitions_requests:  # what the daemon does with them
            instance.add_dynamic_partitions(scan_batches.name, list(request.partition_keys))
        if launch_hand_ins:
            launch(result)
        return result

    run.instance, run.resources, run.launch = instance, resources, launch
    return run


def hand_ins(result: dg.SensorResult) -> list[dg.RunRequest]:
    return [r for r in result.run_requests if r.job_name == HAND_IN_JOB]


def batch_runs(result: dg.SensorResult) -> list[dg.RunRequest]:
    return [r for r in result.run_requests if r.job_name == batch_job.name]


def test_a_dropped_batch_is_handed_in_by_a_run_of_its_own_then_launches_exactly_one_run(inbox, tick, services):
    shutil.copytree(SAMPLE_BATCH, inbox / "batch-a")
    first = tick(None)
    assert first.run_requests == []  # first look: not yet known to be stable
    second = tick(first.cursor, launch_hand_ins=False)
    [hand_in] = second.run_requests
    assert hand_in.job_name == HAND_IN_JOB and hand_in.run_key.startswith("inbox:batch-a:")
    assert not _staged(services) and services.db.count("batches") == 0  # the tick copied nothing
    done = hand_in_job.execute_in_process(run_config=hand_in.run_config, instance=tick.instance,
                                          resources=tick.resources).output_for_node("hand_in_folder")
    third = tick(second.cursor)
    assert [(r.run_key, r.partition_key) for r in third.run_requests] == [(done, done)]  # the one path's run
    assert tick.instance.has_dynamic_partition(scan_batches.name, done)
    fourth = tick(third.cursor)
    assert fourth.run_requests == [] and fourth.dynamic_partitions_requests == []


def test_a_folder_that_changed_before_its_hand_in_ran_is_refused_by_name_and_handed_in_once_settled(
        inbox, tick, services):
    folder = inbox / "late"
    shutil.copytree(SAMPLE_BATCH, folder)
    found = tick(tick(None).cursor, launch_hand_ins=False)
    (folder / "pages" / "more.jpg").write_bytes(b"one more page arrived")  # before the hand-in run began
    tick.launch(found)
    [run] = tick.instance.get_runs(filters=dg.RunsFilter(tags={"dagster/run_key": hand_ins(found)[0].run_key}))
    assert run.status == dg.DagsterRunStatus.FAILURE and services.db.count("batches") == 0
    refused = known_failure(tick.instance, run.run_id)  # what the UI and `archive` say: the folder, why
    assert refused.item == "late" and "changed after it was found stable" in refused.message_en
    again = tick(tick(found.cursor).cursor)  # the changed folder, seen twice the same: ready again
    assert len(hand_ins(again)) == 1 and hand_ins(again)[0].run_key != hand_ins(found)[0].run_key
    assert services.db.count("batches") == 1


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
    assert len(hand_ins(third)) == 1


def test_restart_with_lost_cursor_launches_no_duplicate(inbox, tick, services):
    shutil.copytree(SAMPLE_BATCH, inbox / "batch-b")
    handed = tick(tick(None).cursor)
    [launched] = batch_runs(tick(handed.cursor))
    # a restarted daemon that lost the cursor asks for the folder's hand-in again, under the same
    # run key, which the daemon runs once; the batch's claim still stands while its run is made
    again = tick(tick(None).cursor)
    assert [r.run_key for r in again.run_requests] == [r.run_key for r in handed.run_requests]
    assert not batch_runs(tick(again.cursor)) and again.dynamic_partitions_requests == []
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
    assert len(hand_ins(third)) == 1 and json.loads(third.cursor)["handed_in"].keys() == {"fresh"}


def _staged(services) -> set[str]:
    return {key for key, _ in services.store.keys(services.staging_bucket)}


def test_a_folder_handed_in_again_after_its_content_changed_is_a_new_batch_that_resends_only_the_change(
        inbox, tick, services):
    folder = inbox / "batch-c"
    shutil.copytree(SAMPLE_BATCH, folder)
    first = tick(tick(tick(None).cursor).cursor)
    [before] = [r.run_key for r in batch_runs(first)]
    staged = _staged(services)
    assert len(staged) == 10
    page = folder / "pages" / "GZ2026-0070002-0001.jpg"
    page.write_bytes(page.read_bytes() + b"\0rescanned")  # staff replace a page of a folder already handed in
    looked = tick(first.cursor)
    assert looked.run_requests == []  # changed since the last look: it must settle again
    again = tick(tick(looked.cursor).cursor)
    assert [r.run_key for r in batch_runs(again)] == [batch_runs(again)[0].partition_key]
    after = batch_runs(again)[0].run_key
    assert after != before  # other content: another batch and another run, not ignored
    assert tick.instance.has_dynamic_partition(scan_batches.name, after)
    assert services.db.count("batches") == 2
    assert _staged(services) - staged == {content_key(sha256_hex(page.read_bytes()), "originals")}  # only the change
    assert tick(again.cursor).run_requests == []  # and that once


def test_a_folder_touched_without_a_content_change_asks_for_no_second_run(inbox, tick, services):
    folder = inbox / "batch-d"
    shutil.copytree(SAMPLE_BATCH, folder)
    first = tick(tick(tick(None).cursor).cursor)
    [launched] = [r.run_key for r in batch_runs(first)]
    _touch(folder, time.time() - 60)  # a copy tool synced the same files again: new times, same bytes
    handed = tick(tick(first.cursor).cursor)  # handed in again: the same content is the same batch
    again = tick(handed.cursor)
    assert len(hand_ins(handed)) == 1 and not batch_runs(handed) and not batch_runs(again) and launched
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


def test_a_hand_in_reaches_nothing_outside_the_inbox(inbox, tick, services, tmp_path):
    """Whoever may launch runs writes the hand-in's configuration; a link dropped into the inbox
    points wherever its maker likes: neither hands in a folder from elsewhere."""
    outside = tmp_path / "elsewhere"
    shutil.copytree(SAMPLE_BATCH, outside)
    (inbox / "linked").symlink_to(outside, target_is_directory=True)
    assert tick(tick(None).cursor).run_requests == []  # the link is not a batch folder
    for name in ("../elsewhere", "..", "linked", "/etc"):
        run = hand_in_job.execute_in_process(
            run_config={"ops": {"hand_in_folder": {"config": {"folder": name, "signature": "0" * 16}}}},
            instance=tick.instance, resources=tick.resources, raise_on_error=False)
        assert not run.success and known_failure(tick.instance, run.run_id).item == name
    assert services.db.count("batches") == 0 and not _staged(services)


def test_a_failed_hand_in_is_asked_for_again_a_few_times_even_with_the_same_content(inbox, tick, services):
    """A lock file an editor left for a moment made the hand-in refuse; once it is gone the folder
    has the content it was found with, and the next hand-in, under a key of its own, succeeds."""
    folder = inbox / "edited"
    shutil.copytree(SAMPLE_BATCH, folder)
    found = tick(tick(None).cursor, launch_hand_ins=False)
    lock = folder / ".~lock.manifest.csv#"
    lock.write_text("an editor has the manifest open")
    tick.launch(found)  # refused: the folder changed
    lock.unlink()
    cursor, keys, runs = found.cursor, [hand_ins(found)[0].run_key], []
    for _ in range(4):  # the failure seen, the folder settling again, its hand-in, the batch's run
        result = tick(cursor)
        keys += [r.run_key for r in hand_ins(result)]
        runs += batch_runs(result)
        cursor = result.cursor
    assert len(keys) == 2 and keys[1] == keys[0] + ":1", keys
    assert services.db.count("batches") == 1 and len(runs) == 1
    assert json.loads(cursor)["requests"] == {} and json.loads(cursor)["attempts"] == {}  # done with


def test_a_folder_whose_hand_in_keeps_failing_is_given_up_on_until_it_changes(inbox, tick, services, monkeypatch):
    import stages.inbox

    def store_away(*args, **kwargs):
        from storage.objects import ObjectStoreUnavailable
        raise ObjectStoreUnavailable("对象存储不可用", "the object store is unreachable")

    real = stages.inbox.submit_folder
    monkeypatch.setattr(stages.inbox, "submit_folder", store_away)
    shutil.copytree(SAMPLE_BATCH, inbox / "unlucky")
    cursor, keys = None, []
    for _ in range(12):
        result = tick(cursor)
        keys += [r.run_key for r in hand_ins(result)]
        cursor = result.cursor
    assert len(keys) == stages.inbox.MAX_HAND_IN_ATTEMPTS and len(set(keys)) == len(keys)
    assert services.db.count("batches") == 0
    monkeypatch.setattr(stages.inbox, "submit_folder", real)  # the store is back
    (inbox / "unlucky" / "pages" / "GZ2026-0070002-0001.jpg").write_bytes(b"a rescan")  # a change starts again
    for _ in range(3):
        result = tick(cursor)
        keys += [r.run_key for r in hand_ins(result)]
        cursor = result.cursor
    assert len(keys) == stages.inbox.MAX_HAND_IN_ATTEMPTS + 1 and services.db.count("batches") == 1


def _swap_after_listing(monkeypatch, swap) -> None:
    """Runs `swap(folder)` between hand-in's listing of a folder and its first read."""
    from intake.folderread import BatchFolder

    real = BatchFolder.files

    def listed_then_swapped(self):
        files = real(self)
        swap(self.folder)
        return files

    monkeypatch.setattr(BatchFolder, "files", listed_then_swapped)


@pytest.mark.parametrize("what", ["file", "folder on its path", "batch folder"])
def test_a_file_swapped_for_a_link_after_the_listing_is_refused_by_name_and_nothing_outside_is_read(
        inbox, services, tmp_path, monkeypatch, what):
    """Someone who may write to the inbox swaps a listed page, the folder holding it, or the batch
    folder itself for a link to files elsewhere, between the listing and the read."""
    from intake.folderread import FileSwapped
    from stages.inbox import ReadyFolder, hand_in, signature
    from stages.inbox import _digest as digest

    secret = tmp_path / "elsewhere"
    shutil.copytree(SAMPLE_BATCH, secret)
    for page in (secret / "pages").iterdir():
        page.write_bytes(b"SECRET " + page.name.encode())  # what must never reach staging
    shutil.copytree(SAMPLE_BATCH, inbox / "b")
    page = sorted((inbox / "b" / "pages").iterdir())[0]

    def swap(folder):
        if what == "file":
            page.unlink()
            page.symlink_to(secret / "pages" / page.name)
        elif what == "folder on its path":
            shutil.rmtree(folder / "pages")
            (folder / "pages").symlink_to(secret / "pages", target_is_directory=True)
        else:
            shutil.rmtree(folder)
            folder.symlink_to(secret, target_is_directory=True)

    ready = ReadyFolder("b", digest(signature(inbox / "b")[0]))
    if what == "batch folder":  # between hand-in's look at the folder and its opening
        import stages.inbox

        def looked_then_swapped(folder):
            found = signature(folder)
            swap(folder)
            return found

        monkeypatch.setattr(stages.inbox, "signature", looked_then_swapped)
    else:
        _swap_after_listing(monkeypatch, swap)
    with pytest.raises(FileSwapped) as refused:
        hand_in(inbox, ready, services)
    assert refused.value.item == {"file": f"pages/{page.name}", "folder on its path": f"pages/{page.name}",
                                  "batch folder": "b"}[what]
    assert services.db.count("batches") == 0
    staged = [services.store.get(services.staging_bucket, key) for key in _staged(services)]
    assert not any(b"SECRET" in data for data in staged)


def test_an_inbox_page_hard_linked_to_a_file_elsewhere_is_refused_by_name_and_nothing_is_read(
        inbox, services, tmp_path):
    """A hard link is the file it links to: one dropped into the inbox for a file of this service
    (its configuration, its keys) would hand that file in, wherever the kernel lets it be made."""
    from intake.folderread import FileHardLinked
    from stages.inbox import ReadyFolder, hand_in, signature
    from stages.inbox import _digest as digest
    from stages.submit import submit_folder

    secret = tmp_path / "service-config.jpg"
    secret.write_bytes(b"SECRET of the service")
    shutil.copytree(SAMPLE_BATCH, inbox / "b")
    page = sorted((inbox / "b" / "pages").iterdir())[0]
    page.unlink()
    os.link(secret, page)
    with pytest.raises(FileHardLinked) as refused:
        hand_in(inbox, ReadyFolder("b", digest(signature(inbox / "b")[0])), services)
    assert refused.value.item == f"pages/{page.name}" and "hard link" in refused.value.message_en
    assert "硬链接" in refused.value.message_zh
    assert services.db.count("batches") == 0
    assert not any(b"SECRET" in services.store.get(services.staging_bucket, key) for key in _staged(services))

    # a folder named on the command line is its user's own: a hard link there is handed in
    assert submit_folder(inbox / "b", services).files == 10


def test_a_file_changed_between_its_hash_and_its_upload_is_refused_by_name(services, tmp_path, monkeypatch):
    """A page rewritten in place after hand-in hashed it: what would be stored is not what was
    hashed, so it is refused, and no batch registered."""
    import stages.submit
    from intake.folderread import BatchFolder, FileSwapped
    from stages.submit import submit_folder

    folder = tmp_path / "b"
    shutil.copytree(SAMPLE_BATCH, folder)
    page = sorted((folder / "pages").iterdir())[0]
    real = stages.submit.put_stream_if_absent
    calls = []

    def rewritten_first(store, bucket, key, fh, size, digest):
        if not calls:
            page.write_bytes(page.read_bytes()[::-1])  # same size, other bytes, after the hash
            fh.seek(0)
        calls.append(key)
        return real(store, bucket, key, fh, size, digest)

    monkeypatch.setattr(stages.submit, "put_stream_if_absent", rewritten_first)
    monkeypatch.setattr(BatchFolder, "files", lambda self: [f"pages/{page.name}"])
    with pytest.raises(FileSwapped) as refused:
        submit_folder(folder, services)
    assert refused.value.item == f"pages/{page.name}" and services.db.count("batches") == 0
    assert not _staged(services)


def test_a_listing_of_links_and_unreadable_files_hands_in_what_is_the_folders_and_names_the_rest(
        services, tmp_path, monkeypatch):
    """Links in a folder (to a file, to a folder elsewhere) are not its files and are left out,
    as the catalog link check then says; a page the service may not read is refused by name."""
    import errno

    from intake import folderread
    from intake.folderread import BatchFolder, FileUnreadable
    from stages.submit import submit_folder

    folder, outside = tmp_path / "b", tmp_path / "elsewhere"
    shutil.copytree(SAMPLE_BATCH, folder)
    shutil.copytree(SAMPLE_BATCH / "pages", outside)
    (folder / "pages" / "linked.jpg").symlink_to(next(outside.iterdir()))
    (folder / "more").symlink_to(outside, target_is_directory=True)
    with BatchFolder(folder) as handle:
        listed = handle.files()
    assert "pages/linked.jpg" not in listed and not any(p.startswith("more/") for p in listed)
    assert len(listed) == 10  # the manifest and the 9 pages
    page = sorted((folder / "pages").glob("*.jpg"))[0]
    real_open = os.open

    def refusing(path, flags, *args, dir_fd=None, **kwargs):  # the mode a root-run test cannot set
        if path == page.name:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        return real_open(path, flags, *args, dir_fd=dir_fd, **kwargs)

    monkeypatch.setattr(folderread.os, "open", refusing)
    with pytest.raises(FileUnreadable) as refused:
        submit_folder(folder, services)
    assert refused.value.item == f"pages/{page.name}" and services.db.count("batches") == 0
    assert "cannot be read" in refused.value.message_en and "无法读取" in refused.value.message_zh
