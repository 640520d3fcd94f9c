"""Preservation storage that loses nothing, on real S3 endpoints over HTTP (two moto servers: a
primary and a replica), a fault-injecting proxy in front of them, real PostgreSQL and the
sample batch through the real stages."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
import dagster as dg
import pytest

from devservices.s3 import MotoServer
from errors import NotReady
from preservation import fixity, inventory, replication
from preservation.rebuild import latest, rebuild
from search.query import search
from settings import ReplicaSettings, S3Tuning, StorageSettings
from stages.archive import (
    ObjectsNotCopied,
    PdfsNotDone,
    archive_batch,
    copy_objects,
    finish_archive,
    make_pdfs,
    objects_to_preserve,
    plan_copy_units,
    plan_pdf_units,
)
from stages.history import file_history
from stages.index import index_batch
from stages.intake import intake_batch
from stages.ocr import ocr_batch
from stages.services import Services
from stages.submit import submit_folder
from storage import events
from storage.events import Event
from storage.objects import content_key, put_file_verified, put_verified, sha256_hex
from storage.s3store import S3ObjectStore
from storage.stored import StoredObject, record_verified
from tests.conftest import REPO, SAMPLE_BATCH, new_database
from tests.faultproxy import FaultProxy
from transfer.package import catalog_of

SMALL = S3Tuning(part_mb=5, multipart_mb=5, timeout_seconds=2, attempts=10)
MB = 1024**2


@pytest.fixture(scope="module")
def replica_url():
    server = MotoServer()
    server.start()
    yield server.url
    server.stop()


def storage_for(database_url: str, primary: str, replicas: dict[str, str], tuning: S3Tuning = SMALL,
                suffix: str | None = None) -> StorageSettings:
    suffix = suffix or os.urandom(4).hex()
    return StorageSettings(database_url, primary, None, f"staging-{suffix}", f"archive-{suffix}",
                           replicas=tuple(ReplicaSettings(name, url, None, f"copy-{suffix}")
                                          for name, url in replicas.items()), s3=tuning)


def services_for(storage: StorageSettings) -> Services:
    services = Services.from_settings(storage)
    services.prepare()
    return services


def raw(url: str):
    return boto3.client("s3", endpoint_url=url, region_name="us-east-1")


def preserve(services: Services, blobs: list[bytes]) -> list[str]:
    """Objects into the primary archive bucket as the archive stage leaves them; their keys."""
    keys = []
    for data in blobs:
        sha = sha256_hex(data)
        key = content_key(sha)
        put_verified(services.store, services.archive_bucket, key, data)
        with services.db.transaction() as cur:
            if record_verified(cur, [StoredObject(services.archive_bucket, key, sha, len(data), "original",
                                                  "application/octet-stream")]):
                events.record(cur, [Event("stored", object_sha256=sha, detail={"key": key})])
        keys.append(key)
    return keys


def blobs(n: int, big: int = 0, seed: int = 1) -> list[bytes]:
    rnd = random.Random(seed)
    return [rnd.randbytes(rnd.randint(1_000, 60_000)) for _ in range(n)] + [rnd.randbytes(12 * MB) for _ in range(big)]


def event_types(services: Services, sha: str) -> list[tuple[str, str]]:
    with services.db.transaction() as cur:
        cur.execute("SELECT event_type, outcome FROM events WHERE object_sha256 = %s ORDER BY event_id", (sha,))
        return [(r["event_type"], r["outcome"]) for r in cur.fetchall()]


def test_replicas_written_audited_and_repaired_from_each_other(database_url, s3_url, replica_url, tmp_path):
    storage = storage_for(database_url, s3_url, {"r1": replica_url})
    services = services_for(storage)
    originals = blobs(20, big=1)
    keys = preserve(services, originals)
    [state] = replication.replicate(services)
    assert (state.copied, state.behind, state.problem) == (21, 0, "")
    primary, copy = raw(s3_url), raw(replica_url)
    archive, replica_bucket = services.archive_bucket, storage.replicas[0].bucket
    for key, data in zip(keys, originals, strict=True):  # each copy holds the bytes handed in
        assert copy.get_object(Bucket=replica_bucket, Key=key)["Body"].read() == data
    assert [s.copied for s in replication.replicate(services)] == [0]   # a rerun copies nothing

    flipped, deleted, lost, big = keys[0], keys[1], keys[2], keys[20]
    body = bytearray(originals[0])
    body[len(body) // 2] ^= 0x01                       # one bit, behind our back, on the replica
    copy.put_object(Bucket=replica_bucket, Key=flipped, Body=bytes(body), Metadata={"sha256": sha256_hex(originals[0])})
    primary.delete_object(Bucket=archive, Key=deleted)  # gone from the primary
    primary.put_object(Bucket=archive, Key=big, Body=originals[20][:-1])   # the large one truncated
    for client, bucket in ((primary, archive), (copy, replica_bucket)):   # both copies of one ruined
        client.put_object(Bucket=bucket, Key=lost, Body=b"ruined")

    run = fixity.audit(services, "all")
    assert run.checked == 21
    assert sorted((k, c, src) for k, c, src in run.repaired) == sorted(
        [(flipped, "r1", "primary"), (deleted, "primary", "r1"), (big, "primary", "r1")])
    assert sorted((k, c) for k, c, _ in run.unrepairable) == [(lost, "primary"), (lost, "r1")]
    assert primary.get_object(Bucket=archive, Key=deleted)["Body"].read() == originals[1]
    assert copy.get_object(Bucket=replica_bucket, Key=flipped)["Body"].read() == originals[0]
    assert primary.get_object(Bucket=archive, Key=big)["Body"].read() == originals[20]
    sha = sha256_hex(originals[0])
    assert event_types(services, sha) == [("stored", "success"), ("replicated", "success"),
                                          ("fixity_checked", "failure"), ("repaired", "success")]
    with services.db.transaction() as cur:
        cur.execute("SELECT detail FROM events WHERE object_sha256 = %s AND event_type = 'fixity_checked'", (sha,))
        assert cur.fetchone()["detail"]["copies"] == {"primary": "verified", "r1": "corrupt"}
    assert ("repair_failed", "failure") in event_types(services, sha256_hex(originals[2]))

    again = fixity.audit(services, "all")            # repaired copies now pass; the ruined one stays
    assert not again.repaired and sorted(c for _, c, _ in again.unrepairable) == ["primary", "r1"]
    assert {(d["key"], d["copy"]) for d in fixity.damaged(services)} == {(lost, "primary"), (lost, "r1")}

    from pipeline.preservation_assets import fixity_audit_asset
    from pipeline.resources import ArchiveServicesResource

    os.environ.update({"ARCHIVE_REPLICAS": "r1", "ARCHIVE_REPLICA_R1_ENDPOINT_URL": replica_url,
                       "ARCHIVE_REPLICA_R1_BUCKET": replica_bucket})
    try:
        result = dg.materialize([fixity_audit_asset], resources={"services": ArchiveServicesResource(
            database_url=database_url, s3_endpoint_url=s3_url, staging_bucket=services.staging_bucket,
            archive_bucket=archive)})
    finally:
        for k in ("ARCHIVE_REPLICAS", "ARCHIVE_REPLICA_R1_ENDPOINT_URL", "ARCHIVE_REPLICA_R1_BUCKET"):
            os.environ.pop(k)
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == "fixity_intact" and not check.passed
    assert lost in check.metadata["copies"].value


def test_daily_share_reaches_every_object_within_the_period(database_url, s3_url):
    import datetime as dt

    storage = dataclasses.replace(storage_for(database_url, s3_url, {}), fixity_period_days=5)
    services = services_for(storage)
    preserve(services, blobs(23, seed=2))
    now, seen = dt.datetime.now(dt.UTC), set()
    for day in range(5):
        rows = fixity.due(services, "due", now + dt.timedelta(days=day))
        assert len(rows) == 5                            # ceil(23 / 5)
        seen |= {r["key"] for r in rows}
        fixity.audit(services, "due", now + dt.timedelta(days=day))
    assert len(seen) == 23


def test_replica_down_delays_only_the_replica_and_is_caught_up(database_url, s3_url, replica_url):
    proxy = FaultProxy(replica_url)
    try:
        storage = storage_for(database_url, s3_url, {"far": proxy.url},
                              dataclasses.replace(SMALL, attempts=2, timeout_seconds=1))
        services = services_for(storage)
        proxy.down()
        keys = preserve(services, blobs(12, seed=3))     # the primary takes every write meanwhile
        [state] = replication.replicate(services)
        assert state.copied == 0 and state.behind == 12 and "replica far" in state.problem
        assert [s.behind for s in replication.status(services)] == [12]
        proxy.up()
        [state] = replication.replicate(services)
        assert (state.copied, state.behind) == (12, 0)
        copy = raw(replica_url)
        for key in keys:
            assert copy.head_object(Bucket=storage.replicas[0].bucket, Key=key)["ContentLength"] > 0
    finally:
        proxy.close()


def test_every_object_stored_once_and_verified_through_faults(database_url, s3_url, tmp_path):
    rnd = random.Random(17)
    kinds = ["fail_before", "fail_after", "slow_down", "reset_before", "reset_after", "cut", "stall:3"]

    faults = []

    def plan(method: str, path: str, n: int) -> str:
        if n < 4 or rnd.random() >= 0.3:                # a share of requests, not the buckets made first
            return "pass"
        faults.append(kinds[len(faults) % len(kinds)])  # each kind in turn
        return faults[-1]

    proxy = FaultProxy(s3_url, plan)
    try:
        storage = storage_for(database_url, proxy.url, {}, dataclasses.replace(SMALL, timeout_seconds=1.5))
        services = services_for(storage)
        originals = blobs(30, big=2, seed=4)
        keys = preserve(services, originals[:30])
        for data in originals[30:]:                      # the large ones in parts, from files
            path = tmp_path / sha256_hex(data)
            path.write_bytes(data)
            put_file_verified(services.store, services.archive_bucket, content_key(path.name), path, path.name)
            with services.db.transaction() as cur:
                record_verified(cur, [StoredObject(services.archive_bucket, content_key(path.name), path.name,
                                                   len(data), "original", "application/octet-stream")])
            keys.append(content_key(path.name))
        direct = raw(s3_url)
        for key, data in zip(keys, originals, strict=True):
            assert direct.get_object(Bucket=services.archive_bucket, Key=key)["Body"].read() == data
        assert not direct.list_multipart_uploads(Bucket=services.archive_bucket).get("Uploads")
        listed = direct.list_objects_v2(Bucket=services.archive_bucket)["KeyCount"]
        assert listed == services.db.count("stored_objects") == len(set(keys))
        done = {action for _, _, action in proxy.done}
        assert set(kinds) <= done, done                  # every kind of fault happened
        parts = {action for _, path, action in proxy.done if "partNumber" in path}
        assert parts - {"pass"}, parts                   # some of them to parts of the large objects
    finally:
        proxy.close()


@pytest.mark.parametrize("verify", ["digest", "read-back"])
def test_bytes_damaged_on_the_way_are_caught_and_written_again(database_url, s3_url, verify, tmp_path):
    """The endpoint's MD5 of what it received (digest) or the read-back differs: written again."""
    flipped: list[str] = []

    def plan(method: str, path: str, n: int) -> str:
        key = path.split("?")[0]
        if method == "PUT" and "/damaged/" in path and key not in {p.split("?")[0] for p in flipped}:
            flipped.append(path)   # the first PUT of each object (for the large one, a part) damaged
            return "flip"
        return "pass"

    proxy = FaultProxy(s3_url, plan)
    try:
        store = S3ObjectStore(proxy.url, part_size=5 * MB, multipart_threshold=5 * MB, verify=verify)
        store.ensure_bucket("damaged")
        small, large = b"scan" * 5000, random.Random(8).randbytes(11 * MB)
        path = tmp_path / "large"
        path.write_bytes(large)
        from storage.objects import BY_ENDPOINT, READ_BACK, put_bytes_verified, put_file_verified

        how = put_bytes_verified(store, "damaged", "small", small)
        assert how == (BY_ENDPOINT if verify == "digest" else READ_BACK)
        put_file_verified(store, "damaged", "large", path, hashlib.sha256(large).hexdigest())
        assert len(flipped) == 2 and "partNumber" in flipped[1]   # each damaged once on the way, a part of the large
        client = raw(s3_url)
        assert client.get_object(Bucket="damaged", Key="small")["Body"].read() == small
        assert client.get_object(Bucket="damaged", Key="large")["Body"].read() == large
    finally:
        proxy.close()


def test_a_request_the_endpoint_finds_damaged_is_sent_again(s3_url):
    """Real S3 checks Content-MD5 and answers 400 BadDigest (moto does not): sent again, not a failure."""
    refused = []

    def plan(method: str, path: str, n: int) -> str:
        if method == "PUT" and "/baddigest/" in path and not refused:
            refused.append(path)
            return "bad_digest"
        return "pass"

    proxy = FaultProxy(s3_url, plan)
    try:
        store = S3ObjectStore(proxy.url)
        store.ensure_bucket("baddigest")
        put_verified(store, "baddigest", "k", b"scan bytes")
        assert refused and raw(s3_url).get_object(Bucket="baddigest", Key="k")["Body"].read() == b"scan bytes"
    finally:
        proxy.close()


def test_stale_files_are_those_changed_since_last_described(archived, monkeypatch):
    services = archived["services"]
    monkeypatch.setattr(inventory, "STALE_MARGIN", "0 seconds")
    inventory.refresh(services, inventory.stale(services, limit=1000))
    assert inventory.stale(services) == []                 # looked at, unchanged: left alone
    file_number = _first_file(services)
    with services.db.transaction() as cur:
        events.record(cur, [Event("note", file_number=file_number, detail={"why": "a change"})])
    assert inventory.stale(services) == [file_number]
    [written] = inventory.refresh(services, [file_number])
    assert inventory.stale(services) == []
    assert inventory.refresh(services, [file_number]) == []   # no change: no version
    doc = json.loads(services.store.get(services.archive_bucket, written.key))
    assert any(e["event_type"] == "note" for e in doc["tables"]["events"])


def _first_file(services: Services) -> str:
    with services.db.transaction() as cur:
        cur.execute("SELECT file_number FROM personnel_files ORDER BY 1 LIMIT 1")
        return cur.fetchone()["file_number"]


def test_store_that_stays_down_is_one_sentence(database_url, s3_url):
    proxy = FaultProxy(s3_url)
    try:
        services = services_for(storage_for(database_url, proxy.url, {}, dataclasses.replace(SMALL, attempts=2)))
        proxy.plan = lambda method, path, n: "fail_before"
        from storage.objects import ObjectStoreUnavailable

        with pytest.raises(ObjectStoreUnavailable) as exc:
            put_verified(services.store, services.archive_bucket, "k", b"data")
        message = exc.value.message_en
        assert message.startswith(f"the object store S3 at {proxy.url} failed with {services.archive_bucket}/k "
                                  "(HTTP 500")
        assert "ARCHIVE_S3_ENDPOINT_URL" in message and "run again" in message
        assert "\n" not in message and message.count(". ") == 0     # one sentence, no botocore text
    finally:
        proxy.close()


UPLOAD = """
import sys
from storage.s3store import S3ObjectStore
store = S3ObjectStore(sys.argv[1], part_size=5 * 1024**2, multipart_threshold=5 * 1024**2)
store.put_file("resume", sys.argv[4], sys.argv[2], sys.argv[3])
"""


def test_multipart_upload_killed_resumes_from_its_parts(s3_url, tmp_path):
    data = random.Random(5).randbytes(40 * MB)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    parts = []
    proxy = FaultProxy(s3_url, lambda method, path, n: (parts.append(path), "delay:0.4")[1]
                       if "partNumber" in path else "pass")
    S3ObjectStore(s3_url).ensure_bucket("resume")
    try:
        key = content_key(sha)   # content-addressed: an upload of it is resumed, whoever began it
        child = subprocess.Popen([sys.executable, "-c", UPLOAD, proxy.url, str(path), sha, key], cwd=REPO,
                                 env={**os.environ, "PYTHONPATH": str(REPO)})
        deadline = time.monotonic() + 60
        while len(parts) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait()
        client = raw(s3_url)
        assert "Contents" not in client.list_objects_v2(Bucket="resume")   # nothing looks complete
        time.sleep(1)                                    # the proxy forwards what it took before the kill
        [upload] = client.list_multipart_uploads(Bucket="resume")["Uploads"]
        kept = len(client.list_parts(Bucket="resume", Key=key, UploadId=upload["UploadId"])["Parts"])
        assert 0 < kept < 8
        before = len(parts)
        S3ObjectStore(proxy.url, part_size=5 * MB, multipart_threshold=5 * MB).put_file("resume", key, path, sha)
        assert len(parts) - before == 8 - kept           # only the parts not already there were sent
        assert client.get_object(Bucket="resume", Key=key)["Body"].read() == data
        assert not client.list_multipart_uploads(Bucket="resume").get("Uploads")
    finally:
        proxy.close()


def test_wrong_bytes_never_become_an_object(s3_url, tmp_path):
    from storage.objects import IntegrityError

    store = S3ObjectStore(s3_url, part_size=5 * MB, multipart_threshold=5 * MB)
    store.ensure_bucket("wrong")
    path = tmp_path / "f"
    path.write_bytes(b"x" * (11 * MB))
    for size in (11 * MB, 100):
        with pytest.raises(IntegrityError):
            store.put_stream("wrong", f"k{size}", open(path, "rb"), "0" * 64, size)
    client = raw(s3_url)
    assert "Contents" not in client.list_objects_v2(Bucket="wrong")
    assert not client.list_multipart_uploads(Bucket="wrong").get("Uploads")


def test_large_object_streams_in_bounded_memory(s3_url):
    """6 GiB up in parts and read back, generated as it is sent; the process stays under 300 MB."""
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "large_object.py"), s3_url, "6"],
                         capture_output=True, text=True, check=True, cwd=REPO, timeout=1200)
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    assert probe["bytes"] >= 6 * 1024**3
    assert probe["peak_rss_mb"] < 300, probe


# -- the sample batch through the stages: a crash in the archive step, then the store alone ---------

KILLED = """
import sys
from stages.archive import archive_batch
from stages.services import Services
from settings import StorageSettings, S3Tuning
storage = StorageSettings(sys.argv[1], sys.argv[2], None, sys.argv[3], sys.argv[4])
archive_batch(sys.argv[5], Services.from_settings(storage))
"""


@pytest.fixture(scope="module")
def archived(pg_server, s3_url, tmp_path_factory):
    """The sample batch OCR'd and indexed, its archive step killed with SIGKILL mid-write, then run again."""
    from ocr import EngineConfig

    url = new_database(pg_server)
    services = services_for(storage_for(url, s3_url, {}))
    batch = submit_folder(SAMPLE_BATCH, services).batch_id
    intake_batch(batch, services)
    engine = EngineConfig()
    ocr_batch(batch, services, engine)
    index_batch(batch, services)
    stored = []
    proxy = FaultProxy(s3_url, lambda method, path, n: (stored.append(path), "delay:0.15")[1]
                       if method == "PUT" else "pass")
    try:
        child = subprocess.Popen([sys.executable, "-c", KILLED, url, proxy.url, services.staging_bucket,
                                  services.archive_bucket, batch], cwd=REPO,
                                 env={**os.environ, "PYTHONPATH": str(REPO)})
        deadline = time.monotonic() + 120
        while services.db.count("stored_objects") < 5 and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait()
    finally:
        proxy.close()
    at_kill = services.db.count("stored_objects")
    result = archive_batch(batch, services)
    return {"services": services, "batch": batch, "at_kill": at_kill, "result": result}


def test_archive_killed_mid_write_then_rerun_is_whole_and_once(archived):
    services, batch = archived["services"], archived["batch"]
    wanted = {content_key(o.sha256): o for o in objects_to_preserve(batch, services)}
    assert 5 <= archived["at_kill"] < len(wanted)        # killed part way
    with services.db.transaction() as cur:
        cur.execute("SELECT key, sha256, role FROM stored_objects WHERE role IN ('original', 'ocr')")
        rows = cur.fetchall()
        cur.execute("SELECT object_sha256, count(*) AS n FROM events WHERE event_type = 'stored' GROUP BY 1")
        stored_events = {r["object_sha256"]: r["n"] for r in cur.fetchall()}
    assert sorted(r["key"] for r in rows) == sorted(wanted)          # every object, one row each
    client = raw(services.store.endpoint_url)
    on_disk = {hashlib.sha256(p.read_bytes()).hexdigest(): p for p in SAMPLE_BATCH.rglob("*") if p.is_file()}
    for r in rows:
        body = client.get_object(Bucket=services.archive_bucket, Key=r["key"])["Body"].read()
        if r["role"] == "original":   # byte for byte the file handed in, not only the hash we recorded
            assert body == on_disk[r["sha256"]].read_bytes()
        assert hashlib.sha256(body).hexdigest() == r["sha256"]
    assert all(stored_events.get(r["sha256"]) == 1 for r in rows)
    with services.db.transaction() as cur:
        cur.execute("SELECT count(*) AS n FROM materials WHERE pdf_sha256 IS NULL")
        assert cur.fetchone()["n"] == 0
        cur.execute("SELECT count(*) AS n FROM personnel_files f LEFT JOIN inventories i USING (file_number)"
                    " WHERE i.file_number IS NULL")
        assert cur.fetchone()["n"] == 0                                # every file described in the store
    assert archive_batch(batch, services).stored == 0   # a rerun does nothing


def _histories(services: Services) -> dict:
    with services.db.transaction() as cur:
        cur.execute("SELECT file_number FROM personnel_files ORDER BY 1")
        files = [r["file_number"] for r in cur.fetchall()]
    return {f: dataclasses.asdict(file_history(f, services)) for f in files}


def _answers(services: Services, queries: list[str]) -> dict:
    return {q: [dataclasses.asdict(h) for h in search(services.db, q, limit=50).hits] for q in queries}


TABLES = {"personnel_files": "*", "materials": "*", "material_versions": "*", "pages": "*", "events": "*",
          "batches": "batch_id, name, content_sha256, holding_agency, status, submitted_at, intake_version",
          # an inventory's own row is verified when the rebuild read it
          "stored_objects": "bucket, key, sha256, bytes, role, media_type,"
                            " CASE WHEN role <> 'inventory' THEN verified_at END AS verified_at",
          "object_copies": "bucket, key, copy, state", "agencies": "code, name, province, endpoint",
          "inventories": "file_number, version, sha256, key"}


def _rows(services: Services, table: str, columns: str) -> list[str]:
    with services.db.transaction() as cur:
        cur.execute(f"SELECT {columns} FROM {table}")
        return sorted(json.dumps(r, default=str, sort_keys=True) for r in cur.fetchall())


def test_rebuild_index_from_the_store_alone(archived, pg_server):
    services = archived["services"]
    with services.db.transaction() as cur:
        cur.execute("SELECT f.name, p.ocr_text FROM personnel_files f JOIN materials m USING (file_number)"
                    " JOIN pages p USING (material_id) ORDER BY p.page_id")
        rows = cur.fetchall()
    queries = sorted({r["name"] for r in rows} | {r["name"][:2] for r in rows}
                     | {t[i:i + 4] for r in rows[::5] if (t := (r["ocr_text"] or "").replace(" ", "")) for i in (0, 9)})
    before = _answers(services, queries)
    assert sum(1 for hits in before.values() if hits) >= 0.8 * len(queries)   # the queries do find things
    histories = _histories(services)
    ready = {f: catalog_of(services, f) for f in histories}

    storage = dataclasses.replace(services.storage, database_url=new_database(pg_server))
    fresh = services_for(storage)          # the database lost: an empty one, the same store
    result = rebuild(fresh)
    assert result.files == len(histories) and not result.refused
    assert _answers(fresh, queries) == before
    assert _histories(fresh) == histories
    assert {f: catalog_of(fresh, f) for f in histories} == ready
    for table, columns in TABLES.items():    # row for row, but what is not carried (the fixity schedule, intake state)
        assert _rows(fresh, table, columns) == _rows(services, table, columns), table
    with fresh.db.transaction() as cur:     # the sequences moved past the ids the rows brought
        events.record(cur, [Event("note", file_number=next(iter(histories)))])
        cur.execute("INSERT INTO materials (file_number, class_code, seq, title, formed, formed_on, page_count)"
                    " VALUES (%s, '9', 99, 't', '2000', '2000-01-01', 0)", (next(iter(histories)),))
    with pytest.raises(NotReady, match="empty"):
        rebuild(fresh)                      # never merged into what is there
    assert rebuild(fresh, resume=True).files == 0   # --resume skips what is there


def test_tampered_inventory_is_refused_and_the_previous_version_used(archived, pg_server):
    services = archived["services"]
    assert inventory.refresh(services, ["no-such-file"]) == []
    file_number, key, _ = latest(services)[0]
    doc = json.loads(services.store.get(services.archive_bucket, key))
    doc["tables"]["personnel_files"][0]["name"] = "某某"     # changed behind the digest's back
    bad = json.dumps(doc, ensure_ascii=False).encode()
    newer = inventory.inventory_key(file_number, doc["version"] + 1)
    services.store.put(services.archive_bucket, newer, bad, sha256_hex(bad))
    try:
        fresh = services_for(dataclasses.replace(services.storage, database_url=new_database(pg_server)))
        result = rebuild(fresh)
        assert len(result.refused) == 1 and newer in result.refused[0] and "digest" in result.refused[0]
        assert result.fallbacks == [f"{file_number}: {key} from primary"] and not result.lost
        assert file_history(file_number, fresh).name == file_history(file_number, services).name != "某某"
        with fresh.db.transaction() as cur:   # the next version written goes past the refused one
            cur.execute("SELECT version FROM inventories WHERE file_number = %s", (file_number,))
            assert cur.fetchone()["version"] == doc["version"] + 1
    finally:
        services.store.delete(services.archive_bucket, newer)


def test_storage_commands_say_what_they_found_with_their_exit_status(database_url, s3_url, replica_url):
    storage = storage_for(database_url, s3_url, {"r1": replica_url})
    services = services_for(storage)
    keys = preserve(services, blobs(4, seed=9))
    env = {**os.environ, "ARCHIVE_DATABASE_URL": database_url, "ARCHIVE_S3_ENDPOINT_URL": s3_url,
           "ARCHIVE_STAGING_BUCKET": services.staging_bucket, "ARCHIVE_BUCKET": services.archive_bucket,
           "ARCHIVE_REPLICAS": "r1", "ARCHIVE_REPLICA_R1_ENDPOINT_URL": replica_url,
           "ARCHIVE_REPLICA_R1_BUCKET": storage.replicas[0].bucket}

    def archive(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "cli.main", *args], env=env, cwd=REPO,
                              capture_output=True, text=True, timeout=300)

    out = archive("storage", "replicate")
    assert out.returncode == 0 and "copied 4" in out.stdout and "behind 0 objects" in out.stdout, out.stderr
    for client, bucket in ((raw(s3_url), services.archive_bucket), (raw(replica_url), storage.replicas[0].bucket)):
        client.delete_object(Bucket=bucket, Key=keys[0])          # gone from both copies
    out = archive("storage", "audit", "--all")
    assert out.returncode == 5 and f"unrepairable {keys[0]} on primary" in out.stdout, out.stdout + out.stderr
    assert "\n" not in out.stderr.strip() and "Traceback" not in out.stderr
    out = archive("storage", "status")
    assert out.returncode == 5 and f"{keys[0]} on r1: missing" in out.stdout
    out = archive("rebuild-index")                                 # into a database that has files? none here
    assert out.returncode == 0 and "rebuilt 0 files" in out.stdout


def test_copy_and_pdf_units_do_their_own_part_and_the_batch_waits_for_all(pg_server, s3_url, monkeypatch):
    services = services_for(storage_for(new_database(pg_server), s3_url, {}))
    batch = submit_folder(SAMPLE_BATCH, services).batch_id
    intake_batch(batch, services)
    ocr_batch(batch, services)
    index_batch(batch, services)
    copy_units = plan_copy_units(batch, services, unit_files=4)
    paths = [p for u in copy_units for p in u.paths]
    assert len(copy_units) == 3 and len(paths) == len(set(paths)) == 10  # the manifest and 9 pages, 4 + 4 + 1
    recorded_digests = objects_to_preserve(batch, services)  # from the digests the ocr stage recorded
    with services.db.transaction() as cur:  # rows recorded before those digests were: from the store
        cur.execute("UPDATE batch_files SET ocr_sha256 = NULL, ocr_bytes = NULL WHERE batch_id = %s", (batch,))
    assert objects_to_preserve(batch, services) == recorded_digests
    copied = [copy_objects(batch, services, copy_units[0].paths)]
    # what the first unit copied is planned no more
    assert [u.paths for u in plan_copy_units(batch, services, unit_files=4)] == [u.paths for u in copy_units[1:]]
    assert copied[0].stored == 9                                  # the manifest, 4 originals, their 4 OCR results
    units = plan_pdf_units(batch, services, unit_pages=1)        # a material a unit
    ids = [i for u in units for i in u.material_ids]
    assert len(units) >= 2 and len(ids) == len(set(ids)) == services.db.count("materials")
    # two attempts of one unit at once (a dead run's task beside its retry), both past their look
    # for a PDF before either stores one
    import stages.archive

    both_made, real_put = threading.Barrier(2, timeout=60), stages.archive.put_bytes_verified

    def put_when_both_made(*args, **kwargs):
        both_made.wait()
        return real_put(*args, **kwargs)

    monkeypatch.setattr(stages.archive, "put_bytes_verified", put_when_both_made)
    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(lambda _: make_pdfs(batch, services, units[0].material_ids), range(2))
    monkeypatch.undo()
    assert first.made == second.made == 1  # the same bytes (no dates in the PDF): one object, one event, below
    with pytest.raises(PdfsNotDone) as refused:                   # a unit has not run: not archived
        finish_archive(batch, services, copied, [first])
    assert refused.value.item
    with services.db.transaction() as cur:
        cur.execute("SELECT status FROM batches WHERE batch_id = %s", (batch,))
        assert cur.fetchone()["status"] != "archived"
    rest = [make_pdfs(batch, services, u.material_ids) for u in units[1:]]
    again = make_pdfs(batch, services, units[0].material_ids)    # a unit retried after it had finished
    assert again.made == 0
    with pytest.raises(ObjectsNotCopied) as not_copied:          # every PDF, but two copy units have not run
        finish_archive(batch, services, copied, [first, *rest, again])
    assert not_copied.value.item.startswith("originals/")
    copied += [copy_objects(batch, services, u.paths) for u in copy_units[1:]]
    assert copy_objects(batch, services, copy_units[0].paths).stored == 0  # a retried unit copies nothing
    assert plan_copy_units(batch, services) == []                          # nor does a rerun plan any
    result = finish_archive(batch, services, copied, [first, *rest, again])
    assert result.stored == 19 + len(ids) and result.already_stored == 0
    assert result.pdfs_made == len(ids) and plan_pdf_units(batch, services) == []
    with services.db.transaction() as cur:
        cur.execute("SELECT count(*) AS n FROM stored_objects WHERE role = 'searchable-pdf'")
        pdfs = cur.fetchone()["n"]
        cur.execute("SELECT object_sha256, count(*) AS n FROM events WHERE event_type = 'stored' GROUP BY 1"
                    " HAVING count(*) > 1")
        twice = cur.fetchall()
        cur.execute("SELECT status FROM batches WHERE batch_id = %s", (batch,))
        status = cur.fetchone()["status"]
    assert pdfs == len(ids) and not twice and status == "archived"
