"""Storage contract on a real PostgreSQL and a real S3 endpoint over HTTP (moto), plus the
local directory store behind the same interface."""

import gc
import os
from datetime import date

import boto3
import numpy as np
import psycopg2.errors
import pytest

from storage.db import Database, DatabaseUnavailable, copy_binary
from storage.localstore import LocalObjectStore
from storage.objects import (
    IntegrityError,
    ObjectStoreUnavailable,
    content_key,
    put_if_absent,
    put_verified,
    sha256_hex,
)
from storage.s3store import S3ObjectStore


def test_migrations_apply_once_and_rerun_safely(database_url):
    db = Database(database_url)
    applied = db.migrate()
    assert applied[:4] == ["0001_init.sql", "0002_material_pdf.sql", "0003_search.sql", "0004_events.sql"]
    assert applied == sorted(applied)
    assert db.migrate() == []
    assert db.count("pages") == 0
    with db.transaction() as cur:
        cur.execute("SELECT count(*) AS n FROM schema_migrations")
        assert cur.fetchone()["n"] == len(applied)


def test_binary_copy_round_trips_every_type_nulls_and_empty_arrays(database_url):
    """Rows COPYed in binary (a column of arrays encoded at once) read back as they went in."""
    columns = (("n", "int4"), ("t", "text"), ("b", "int8"), ("f", "float4"), ("d", "date"), ("a", "int4[]"))
    rows = [(1, "张三\t\\N\n\r末", 2**40, 1.5, "1999-12-31", np.array([-2**31, -1, 0, 2**31 - 1], dtype=np.int32)),
            (2, "", -(2**40), 0.0, "2000-01-01", []),
            (3, None, None, None, None, None),
            (4, "x" * 5000, 0, -0.25, date(2026, 11, 29), list(range(3000))),
            (5, "𠀀", 1, 2.0, "1970-01-01", [7])]
    db = Database(database_url)
    with db.transaction() as cur:
        cur.execute("CREATE TEMP TABLE copied (n int4, t text, b int8, f float4, d date, a int4[])")
        copy_binary(cur, "copied", columns, rows)
        cur.execute("SELECT n, t, b, f, d::text AS d, a FROM copied ORDER BY n")
        back = [tuple(r.values()) for r in cur.fetchall()]
    assert back == [(n, t, b, f, None if d is None else str(d), None if a is None else [int(x) for x in a])
                    for n, t, b, f, d, a in rows]


def _backend(db: Database) -> int:
    with db.transaction() as cur:
        cur.execute("SELECT pg_backend_pid() AS pid")
        return cur.fetchone()["pid"]


def test_kept_connections_are_reused_survive_a_killed_backend_and_a_failed_transaction(database_url):
    db = Database(database_url, keep=1)
    first = _backend(db)
    assert _backend(db) == first  # reused, not a new connection per transaction
    with Database(database_url).transaction() as cur:  # the server ends that session
        cur.execute("SELECT pg_terminate_backend(%s)", (first,))
    second = _backend(db)
    assert second != first  # the dead one was noticed before use, not handed to the caller
    with pytest.raises(psycopg2.errors.DivisionByZero), db.transaction() as cur:
        cur.execute("SELECT 1 / 0")
    assert _backend(db) == second  # rolled back and kept
    assert _backend(Database(database_url)) != _backend(Database(database_url))  # keep=0: none kept


def test_a_forked_child_leaves_the_parents_connection_alone(database_url):
    db = Database(database_url, keep=1)
    parent = _backend(db)
    pid = os.fork()
    if pid == 0:  # the child: its own connection, and it must not close the parent's
        code = 0 if _backend(db) != parent else 1
        gc.collect()  # the parent's connection, no longer referenced here, must not be closed
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert _backend(db) == parent  # still alive and still ours


def test_unreachable_database_named_without_password():
    with pytest.raises(DatabaseUnavailable, match=r"127\.0\.0\.1:1/x.*archive services start") as exc:
        Database("postgresql://u:secret@127.0.0.1:1/x").migrate()
    assert "secret" not in str(exc.value)


@pytest.fixture(params=["s3", "local"])
def store(request, s3_url, tmp_path):
    store = S3ObjectStore(s3_url) if request.param == "s3" else LocalObjectStore(tmp_path / "objects")
    store.ensure_bucket("contract")
    store.ensure_bucket("contract")  # idempotent
    return store


def test_store_contract(store):
    data = "人事档案".encode() * 1000
    digest = sha256_hex(data)
    key = content_key(digest)
    assert key == f"sha256/{digest[:2]}/{digest[2:4]}/{digest}"
    assert store.head("contract", key) is None
    assert put_verified(store, "contract", key, data) == digest
    info = store.head("contract", key)
    assert (info.bytes, info.sha256) == (len(data), digest)
    assert store.get("contract", key) == data
    assert put_if_absent(store, "contract", key, data, digest) is False
    assert store.count("contract") == 1 and store.count("contract", "sha256/") == 1


def test_s3_objects_really_are_on_the_endpoint(s3_url):
    store = S3ObjectStore(s3_url)
    store.ensure_bucket("visible")
    put_verified(store, "visible", "a/b", b"payload")
    client = boto3.client("s3", endpoint_url=s3_url)
    assert client.get_object(Bucket="visible", Key="a/b")["Body"].read() == b"payload"


class CorruptingStore(LocalObjectStore):
    def iter_range(self, bucket, key, start, end, chunk=1 << 20):
        data = b"".join(super().iter_range(bucket, key, start, end, chunk))
        yield data[:-1] + b"!"


def test_read_back_mismatch_is_an_integrity_error(tmp_path):
    store = CorruptingStore(tmp_path)
    store.ensure_bucket("b")
    with pytest.raises(IntegrityError, match=r"b/k \(local directory .*\): wrote sha256"):
        put_verified(store, "b", "k", b"original bytes")


def test_local_store_refuses_keys_outside_its_bucket(tmp_path):
    store = LocalObjectStore(tmp_path)
    with pytest.raises(ValueError):
        store.put("b", "../escape", b"x", sha256_hex(b"x"))


def test_unreachable_s3_endpoint_is_named():
    store = S3ObjectStore("http://127.0.0.1:1")
    store.client.meta.config.retries = {"max_attempts": 1}
    with pytest.raises(ObjectStoreUnavailable, match=r"127\.0\.0\.1:1.*ARCHIVE_S3_ENDPOINT_URL"):
        store.ensure_bucket("x")


def test_s3_endpoint_survives_thousands_of_requests(s3_url):
    # moto logs each request; a log pipe nobody read once filled up and hung the server
    store = S3ObjectStore(s3_url)
    store.ensure_bucket("many")
    for i in range(1500):
        assert store.head("many", f"k{i}") is None


def test_local_sidecar_of_other_data_is_not_believed(tmp_path):
    """A crash between the sidecar's rename and the data's leaves the new sidecar beside the old
    data: its digest must not be taken for the data's."""
    import json as _json

    store = LocalObjectStore(tmp_path)
    store.ensure_bucket("b")
    old, new = b"old result", b"new result"
    store.put("b", "ocr/k", old, sha256_hex(old))
    assert store.head("b", "ocr/k").sha256 == sha256_hex(old)
    meta = tmp_path / "b" / "ocr" / "k.meta.json"
    other = tmp_path / "b" / "ocr" / ".tmp-other"
    other.write_bytes(new)   # the new data's file, never renamed into place
    meta.write_text(_json.dumps({"sha256": sha256_hex(new), "bytes": len(new), "inode": os.stat(other).st_ino}))
    info = store.head("b", "ocr/k")
    assert info.bytes == len(old) and info.sha256 is None        # unknown, so written again, never trusted
    assert put_if_absent(store, "b", "ocr/k", new, sha256_hex(new)) is True
    assert store.get("b", "ocr/k") == new and store.head("b", "ocr/k").sha256 == sha256_hex(new)
    assert store.count("b") == 1                                  # temporary names are not objects


def test_local_replica_on_a_disk_not_mounted_is_refused(tmp_path):
    store = LocalObjectStore(tmp_path / "mnt" / "replica", name="replica r2", create_root=False)
    with pytest.raises(ObjectStoreUnavailable, match="is the disk mounted"):
        store.ensure_bucket("pa-archive")
    assert not (tmp_path / "mnt").exists()


@pytest.mark.parametrize("mode", ["versioning", "object-lock"])
def test_archive_bucket_write_once_protection(s3_url, mode):
    store = S3ObjectStore(s3_url, write_once=mode, lock_days=3)
    bucket = f"protected-{mode}"
    store.ensure_bucket(bucket, protect=True)
    store.ensure_bucket(bucket, protect=True)   # again: idempotent
    client = boto3.client("s3", endpoint_url=s3_url)
    assert client.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    put_verified(store, bucket, "k", b"first")
    store.put(bucket, "k", b"second", sha256_hex(b"second"))     # a repair's overwrite keeps the old version
    versions = client.list_object_versions(Bucket=bucket, Prefix="k")["Versions"]
    assert len(versions) == 2
    if mode == "object-lock":
        rule = client.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]["Rule"]
        assert (rule["DefaultRetention"]["Mode"], rule["DefaultRetention"]["Days"]) == ("COMPLIANCE", 3)
        with pytest.raises(Exception, match="AccessDenied|locked|retention|Forbidden"):
            client.delete_object(Bucket=bucket, Key="k", VersionId=versions[-1]["VersionId"])
