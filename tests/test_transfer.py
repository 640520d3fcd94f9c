"""Transfers between two agencies, each its own installation: Guizhou (520000) and Guangdong
(440000), each with its own database on the test PostgreSQL server, its own buckets on the moto
S3 server, its own signing and ID keys. Guizhou's staff web and pull API are served over HTTP on
loopback; Guangdong fetches with the CLI and with the same functions the CLI calls."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import io
import json
import re
import socket
import subprocess
import sys
import tarfile
import threading

import dagster as dg
import pytest
from cryptography.hazmat.primitives import serialization

from access.audit import Actor
from cli.demo_transfer import introduce
from pipeline.resources import ArchiveServicesResource, SignerResource
from pipeline.runner import run_transfer
from search.query import Filters, search
from settings import Settings
from stages import receive
from stages import transfer as stage
from stages.history import file_history
from stages.submit import submit_folder
from tests.conftest import PASSWORD, WEB, add_user, logged_in, make_services, new_database, token
from tests.test_access import FILE, _first_file_batch
from tests.test_pipeline_e2e import materialize
from transfer.client import PullClient, PullError
from transfer.receipt import build_receipt
from transfer.signing import Signer, canonical_json
from web.app import create_app
from web.server import serving

GZ, GD, BJ = "520000", "440000", "110000"
ME = Actor("test", "test")
GD_ENV = {  # Guangdong's installation, as its operators configure it
    "ARCHIVE_AGENCY": GD, "ARCHIVE_AGENCY_NAME": "广东省人才交流服务中心",
    "ARCHIVE_ID_HASH_KEY": "guangdong-test-id-hash-key-0123456789",
    "ARCHIVE_ID_KEYS": "gd1=" + base64.b64encode(bytes(range(32))).decode(),
}


def _gd_settings() -> Settings:
    import os

    saved = {k: os.environ.get(k) for k in GD_ENV}
    os.environ.update(GD_ENV)
    try:
        return Settings.from_env()
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


@pytest.fixture(scope="module")
def two(pg_server, s3_url, tmp_path_factory):
    root = tmp_path_factory.mktemp("transfer")
    quick = dict(login_delay_ms=1, refusals_per_minute=100_000, login_per_minute=100_000)
    gz = make_services(new_database(pg_server), s3_url, dataclasses.replace(Settings.from_env(), **quick))
    gd = make_services(new_database(pg_server), s3_url, _gd_settings())
    gz_key, gd_key = Signer.generate(), Signer.generate()
    key_file = root / "gz-signing.pem"
    key_file.write_bytes(gz_key.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    sub = submit_folder(_first_file_batch(root), gz)
    materialize(gz, sub.batch_id, key_file)
    add_user(gz, "arch-gz", "archivist", GZ)
    with serving(create_app(gz)) as endpoint:
        pull_token = introduce(gz, gz_key, gd, gd_key, endpoint)
        with gz.db.transaction() as cur:  # a third agency, with a token of its own
            cur.execute("INSERT INTO agencies (code, name) VALUES (%s, '北京市人才服务中心')", (BJ,))
        yield {"gz": gz, "gd": gd, "gz_key": gz_key, "gd_key": gd_key, "key_file": key_file, "endpoint": endpoint,
               "token": pull_token, "root": root, "s3_url": s3_url}


def _offer(two, signer: Signer | None = None) -> str:
    """A new transfer of FILE to Guangdong, packaged and available (any earlier one ended)."""
    gz = two["gz"]
    for t in stage.transfers(gz, file_number=FILE, status=("requested", "packaged", "available", "fetched")):
        stage.cancel_transfer(gz, t.transfer_id, ME) if t.status != "fetched" else \
            stage.accept_receipt(gz, t.transfer_id, _rejection(two, t.transfer_id), ME)
    t = stage.request_transfer(gz, FILE, GD, "工作调动", "张三", ME)
    stage.package_transfer(gz, t.transfer_id, signer or two["gz_key"])
    return t.transfer_id


def _rejection(two, tid: str) -> dict:
    record = stage.record_of(two["gz"], tid)
    return build_receipt(two["gd_key"], record=record, transfer_id=tid, receiver=GD, outcome="rejected",
                         checks=[{"property": "integrity", "code": "test", "passed": False, "message_zh": "测试",
                                 "message_en": "test"}],
                         package_sha256="")


def _client(two, secret: str | None = None) -> PullClient:
    return PullClient(two["endpoint"], secret or two["token"])


def _fetch(two, tid: str) -> receive.Fetched:
    client = _client(two)
    (listing,) = [x for x in client.list() if x["transfer_id"] == tid]
    return receive.fetch_one(two["gd"], client, two["gd_key"], listing, ME)


def _as_guangdong(two, monkeypatch, home) -> None:
    """This process's environment as Guangdong's operators configure its installation."""
    gd = two["gd"]
    pem = two["gd_key"].key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()).decode()
    for k, v in {**GD_ENV, "ARCHIVE_DATABASE_URL": gd.db.url, "ARCHIVE_S3_ENDPOINT_URL": two["s3_url"],
                 "ARCHIVE_STAGING_BUCKET": gd.staging_bucket, "ARCHIVE_BUCKET": gd.archive_bucket,
                 "ARCHIVE_SIGNING_KEY": pem, "ARCHIVE_PULL_TOKEN": two["token"], "DAGSTER_HOME": str(home)}.items():
        monkeypatch.setenv(k, v)


def _status(two, tid: str) -> str:
    return stage.transfer(two["gz"], tid).status


def test_guizhou_sends_a_file_that_guangdong_fetches_verifies_receipts_imports_and_finds(two, monkeypatch,
                                                                                          capsys, tmp_path):
    from fastapi.testclient import TestClient

    from cli.main import main

    gz, gd = two["gz"], two["gd"]
    # an archivist of Guizhou asks for it on the staff web (发起转递)
    web = TestClient(create_app(gz), base_url=WEB, headers={"Origin": WEB})
    assert web.post("/api/login", data={"username": "arch-gz", "password": PASSWORD}).status_code == 200
    assert GD in [a["code"] for a in web.get("/api/agencies").json()["agencies"]]
    res = web.post(f"/api/files/{FILE}/transfers", data={"receiving_agency": GD, "reason": "工作调动",
                                                          "handler": "张三"})
    assert res.status_code == 201, res.text
    tid = res.json()["transfer_id"]
    again = web.post(f"/api/files/{FILE}/transfers", data={"receiving_agency": GD, "reason": "x", "handler": "y"})
    assert again.status_code == 422 and "under way" in again.json()["message_en"]
    # its Dagster asset packages and signs it
    resources = {"services": ArchiveServicesResource(
        database_url=gz.db.url, s3_endpoint_url=two["s3_url"], staging_bucket=gz.staging_bucket,
        archive_bucket=gz.archive_bucket), "signer": SignerResource(key_file=str(two["key_file"]))}
    with dg.DagsterInstance.ephemeral() as instance:
        assert run_transfer(tid, resources, instance).success
    assert _status(two, tid) == "available"
    # Guangdong's operator runs `archive fetch --import` on Guangdong's installation
    _as_guangdong(two, monkeypatch, tmp_path)
    assert main(["fetch", "--from", GZ, "--import", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"received, receipted: {tid} {FILE}" in out and "imported: GZ2026-0070001" in out
    assert main(["fetch", "--from", GZ, "--quiet"]) == 0  # nothing more waits
    assert "nothing from 520000" in capsys.readouterr().out
    # both sides agree
    assert _status(two, tid) == "received"
    detail = stage.transfer_detail(gz, tid, GZ)
    assert [s["status"] for s in detail["steps"]] == ["requested", "packaged", "available", "fetched", "received"]
    with gd.db.transaction() as cur:
        cur.execute("SELECT * FROM received_transfers WHERE transfer_id = %s", (tid,))
        (got,) = cur.fetchall()
        cur.execute("SELECT holding_agency FROM personnel_files WHERE file_number = %s", (FILE,))
        assert cur.fetchone()["holding_agency"] == GD
    assert got["outcome"] == "received" and got["imported_at"] is not None
    assert detail["receipt"]["record_id"] == str(got["record_id"]) and detail["receipt"]["outcome"] == "received"
    assert all(c["passed"] is not False for c in got["checks"])
    # the history came along, at its own times, and goes on at Guangdong
    sent, held = file_history(FILE, gz), file_history(FILE, gd)
    carried = [e for e in held.events if (e.detail or {}).get("carried_from") == GZ]
    before = [e for e in sent.events if e.at <= dt.datetime.fromisoformat(detail["steps"][1]["at"])]
    assert [(e.event_type, e.at) for e in carried] == [(e.event_type, e.at) for e in before]
    assert held.events[-1].event_type == "transfer_imported"
    assert "transfer_received" in [e.event_type for e in sent.events]
    # searchable at Guangdong, by name and by a phrase of its text, with nothing scanned or OCR'd there
    with gz.db.transaction() as cur:
        cur.execute("SELECT f.name, p.ocr_text FROM personnel_files f JOIN materials m USING (file_number)"
                    " JOIN pages p USING (material_id) WHERE f.file_number = %s", (FILE,))
        rows = cur.fetchall()
    phrase = max((m for r in rows for m in re.findall(r"[\u4e00-\u9fff]{6,}", r["ocr_text"])), key=len)[:10]
    for q in (rows[0]["name"], phrase):
        hits = search(gd.db, q, Filters(agency=GD), actor=ME, id_hash_key=gd.id_hash_key).hits
        assert FILE in {h.file_number for h in hits}, q
        assert not search(gd.db, q, Filters(agency=GZ), actor=ME, id_hash_key=gd.id_hash_key).hits
    assert gd.db.count("batches") == 0  # imported, not processed
    assert gd.db.count("pages") == gz.db.count("pages")
    # the bag, as Guangdong keeps it, passes bagit.py --validate
    tar = tmp_path / "bag.tar"
    tar.write_bytes(gd.store.get(gd.archive_bucket, f"received/{tid}/{tid}.tar"))
    with tarfile.open(tar) as t:
        t.extractall(tmp_path / "bag", filter="data")
    check = subprocess.run([sys.executable, "-m", "bagit", "--validate", str(tmp_path / "bag" / tid)],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    info = (tmp_path / "bag" / tid / "bag-info.txt").read_text(encoding="utf-8")
    assert f"External-Identifier: {tid}" in info and "Payload-Oxum:" in info and "广东省" in info
    # importing again does nothing
    assert receive.import_transfer(gd, tid, ME).already


def _raw(two, method: str, path: str, secret: str | None, **kw):
    import urllib.error
    import urllib.request

    headers = {"Authorization": f"Bearer {secret}"} if secret is not None else {}
    req = urllib.request.Request(two["endpoint"] + path, method=method, headers={**headers, **kw.pop("headers", {})},
                                 data=kw.pop("data", None))
    try:
        with urllib.request.urlopen(req, timeout=30) as res:
            return res.status, res.read(), res.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers


def test_pull_api_authorisation_matrix(two):
    gz = two["gz"]
    tid = _offer(two)
    other = token(gz, ["transfers:fetch"], BJ)
    wrong_scope = token(gz, ["files:search"], GD)
    revoked, expired = token(gz, ["transfers:fetch"], GD), token(gz, ["transfers:fetch"], GD)
    with gz.db.transaction() as cur:
        cur.execute("UPDATE api_tokens SET revoked_at = now() WHERE token_sha256 = encode(sha256(%s::bytea), 'hex')",
                    (revoked,))
        cur.execute("UPDATE api_tokens SET expires_at = now() - interval '1 second'"
                    " WHERE token_sha256 = encode(sha256(%s::bytea), 'hex')", (expired,))
    forged = "pat_" + base64.urlsafe_b64encode(b"\0" * 32).decode().rstrip("=")
    p = "/api/pull/v1/transfers"
    endpoints = [("GET", p), ("GET", f"{p}/{tid}/record"), ("GET", f"{p}/{tid}/package"),
                 ("POST", f"{p}/{tid}/receipt")]
    callers = {"right agency": (two["token"], [200, 200, 200, 422]),  # a receipt of nothing is refused as such
               "other agency": (other, [200, 404, 404, 404]), "wrong scope": (wrong_scope, [403] * 4),
               "revoked": (revoked, [401] * 4), "expired": (expired, [401] * 4),
               "missing": (None, [401, 401, 401, 403]),  # a write with no credential and no Origin: cross-site
               "forged": (forged, [401] * 4), "not a token": ("x" * 2000, [401] * 4)}
    for name, (secret, expected) in callers.items():
        for (method, path), want in zip(endpoints, expected, strict=True):
            status, body, _ = _raw(two, method, path, secret, data=b"{}" if method == "POST" else None,
                                   headers={"Content-Type": "application/json"})
            assert status == want, (name, method, path, status, body[:200])
            if path == p and status == 200:
                listed = [t["transfer_id"] for t in json.loads(body)["transfers"]]
                assert (tid in listed) == (name == "right agency"), name
            with gz.db.transaction() as cur:  # every call, allowed or not, is in the audit trail
                cur.execute("SELECT actor, outcome, target, action FROM audit_log ORDER BY seq DESC LIMIT 1")
                row = cur.fetchone()
            assert (row["outcome"] == "denied") == (want in (401, 403, 404) or want == 422), (name, path, row)
    # another agency's transfer and one that does not exist answer alike
    nothing = _raw(two, "GET", f"{p}/00000000-0000-4000-8000-000000000000/record", other)
    theirs = _raw(two, "GET", f"{p}/{tid}/record", other)
    assert nothing[0] == theirs[0] == 404 and nothing[1] == theirs[1]
    assert _raw(two, "GET", f"{p}/not-a-uuid/package", two["token"])[1] == nothing[1]
    # the API describes itself
    spec = json.loads(_raw(two, "GET", "/api/pull/v1/openapi.json", None)[1])
    assert set(spec["paths"]) == {p, f"{p}/{{transfer_id}}/record", f"{p}/{{transfer_id}}/package",
                                  f"{p}/{{transfer_id}}/receipt"}
    assert spec["components"]["securitySchemes"]["token"]["scheme"] == "bearer"


def test_ranges_resume_and_416(two):
    gz = two["gz"]
    tid = _offer(two)
    t = stage.transfer(gz, tid)
    whole = gz.store.get(gz.archive_bucket, stage.package_key_of(gz, tid))
    p = f"/api/pull/v1/transfers/{tid}/package"
    status, body, headers = _raw(two, "GET", p, two["token"], headers={"Range": "bytes=100-199"})
    assert status == 206 and body == whole[100:200] and headers["Content-Range"] == f"bytes 100-199/{len(whole)}"
    status, body, _ = _raw(two, "GET", p, two["token"], headers={"Range": "bytes=-10"})
    assert status == 206 and body == whole[-10:]
    status, _, headers = _raw(two, "GET", p, two["token"], headers={"Range": f"bytes={len(whole)}-"})
    assert status == 416 and headers["Content-Range"] == f"bytes */{len(whole)}"
    status, body, _ = _raw(two, "GET", p, two["token"], headers={"Range": "bytes=5-", "If-Range": '"changed"'})
    assert status == 200 and body == whole  # the package changed since: all of it
    assert t.status == "available" and _status(two, tid) == "fetched"  # the whole was sent


class CuttingProxy:
    """A TCP proxy to the sender that cuts its first package response after `cut` bytes, as a
    dropped connection would."""

    def __init__(self, upstream: str, cut: int) -> None:
        self.upstream_port = int(upstream.rsplit(":", 1)[1])
        self.cut, self.cuts = cut, 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(client,), daemon=True).start()

    def _one(self, client: socket.socket) -> None:
        up = socket.create_connection(("127.0.0.1", self.upstream_port))
        request = b""
        while b"\r\n\r\n" not in request:
            request += client.recv(65536)
        up.sendall(request)
        cutting = b"/package" in request and self.cuts == 0
        sent = 0
        while data := up.recv(65536):
            if cutting and sent + len(data) >= self.cut:
                client.sendall(data[:self.cut - sent])
                self.cuts += 1
                break
            client.sendall(data)
            sent += len(data)
        client.close()
        up.close()

    def close(self) -> None:
        self.listener.close()


def test_an_interrupted_download_resumes_where_it_stopped(two, tmp_path):
    gz = two["gz"]
    tid = _offer(two)
    t = stage.transfer(gz, tid)
    proxy = CuttingProxy(two["endpoint"], cut=t.package_bytes // 2)
    try:
        client = PullClient(proxy.url, two["token"])
        target = tmp_path / f"{tid}.tar"
        with pytest.raises(PullError, match="broke off at"):
            client.download(tid, target, t.package_bytes, t.package_sha256, attempts=1)
        kept = (tmp_path / f"{tid}.tar.part").stat().st_size
        assert 0 < kept < t.package_bytes and _status(two, tid) == "available"
        got = client.download(tid, target, t.package_bytes, t.package_sha256)
    finally:
        proxy.close()
    assert got.resumed_from == kept and got.bytes == t.package_bytes and got.sha256 == t.package_sha256
    assert target.read_bytes() == gz.store.get(gz.archive_bucket, stage.package_key_of(gz, tid))
    assert _status(two, tid) == "fetched"
    with gz.db.transaction() as cur:
        cur.execute("SELECT detail FROM audit_log WHERE action = 'pull.package' AND target = %s ORDER BY seq", (tid,))
        firsts = [r["detail"]["first"] for r in cur.fetchall()]
    assert firsts == [0, kept]


def _tamper_store(two, tid: str, change) -> None:
    """The sender's stored package or record changed behind the signature's back."""
    gz = two["gz"]
    with gz.db.transaction() as cur:
        cur.execute("SELECT record FROM transfers WHERE transfer_id = %s", (tid,))
        record = change(cur.fetchone()["record"])
        if record is not None:
            cur.execute("UPDATE transfers SET record = %s WHERE transfer_id = %s", (json.dumps(record), tid))


def _flip_payload_byte(two, tid: str) -> None:
    gz = two["gz"]
    key = stage.package_key_of(gz, tid)
    data = bytearray(gz.store.get(gz.archive_bucket, key))
    with tarfile.open(fileobj=io.BytesIO(bytes(data))) as tar:
        member = next(m for m in tar.getmembers() if "/data/originals/" in m.name)
    data[member.offset_data + member.size // 2] ^= 0x01
    gz.store.put(gz.archive_bucket, key, bytes(data), hashlib.sha256(data).hexdigest())


def _resigned(two, signer: Signer, **fields):
    def change(record: dict) -> dict:
        return signer.sign({**{k: v for k, v in record.items() if k != "signature"}, **fields})
    return change


TAMPERS = {
    "a changed byte in a payload file": (lambda two, tid: _flip_payload_byte(two, tid),
                                         {"package_sha256"}),  # not unpacked: nobody vouches for it
    "a changed record field": (lambda two, tid: _tamper_store(two, tid, lambda r: {**r, "file": {
        **r["file"], "page_count": r["file"]["page_count"] + 1}}), {"signature"}),
    "a key the registry does not hold": (lambda two, tid: _tamper_store(two, tid, _resigned(two, Signer.generate())),
                                         {"signature"}),
    "addressed to another agency": (lambda two, tid: _tamper_store(two, tid, _resigned(
        two, two["gz_key"], receiver={"code": BJ, "name": "北京市人才服务中心"})), {"receiver"}),
    "an expired record": (lambda two, tid: _tamper_store(two, tid, _resigned(
        two, two["gz_key"], created_at=(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=20)).isoformat(),
        expires_at=(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)).isoformat())), {"expiry"}),
}


@pytest.mark.parametrize("tamper", list(TAMPERS))
def test_tampering_is_rejected_naming_the_failed_check(two, tamper):
    change, expected = TAMPERS[tamper]
    tid = _offer(two)
    change(two, tid)
    got = _fetch(two, tid)
    assert got.outcome == "rejected"
    assert {c["code"] for c in got.failed} == expected, got.failed
    assert _status(two, tid) == "rejected"
    receipt = stage.transfer_detail(two["gz"], tid, GZ)["receipt"]
    assert {c["code"] for c in receipt["failed_checks"]} == expected
    assert all(c["message_zh"] and c["message_en"] for c in receipt["failed_checks"])
    with two["gd"].db.transaction() as cur:  # nothing of it entered Guangdong's archive
        cur.execute("SELECT count(*) AS n FROM stored_objects WHERE key = %s", (f"received/{tid}/{tid}.tar",))
        assert cur.fetchone()["n"] == 0


def test_a_replayed_record_is_rejected(two):
    tid = _offer(two)
    assert _fetch(two, tid).outcome == "received"
    with two["gz"].db.transaction() as cur:  # the same signed record offered again
        cur.execute("UPDATE transfers SET status = 'available', receipt = NULL WHERE transfer_id = %s", (tid,))
    got = _fetch(two, tid)
    assert got.outcome == "rejected" and {c["code"] for c in got.failed} == {"replay"}
    assert _status(two, tid) == "rejected"


def test_receipts_that_are_not_the_receivers_are_refused(two):
    gz = two["gz"]
    tid = _offer(two)
    record = stage.record_of(gz, tid)
    t = stage.transfer(gz, tid)
    url = f"/api/pull/v1/transfers/{tid}/receipt"
    forged = build_receipt(Signer.generate(), record=record, transfer_id=tid, receiver=GD, outcome="received",
                           checks=[], package_sha256=t.package_sha256)
    status, body, _ = _raw(two, "POST", url, two["token"], data=canonical_json(forged),
                           headers={"Content-Type": "application/json"})
    assert status == 422 and "signature" in json.loads(body)["message_en"]
    real = build_receipt(two["gd_key"], record=record, transfer_id=tid, receiver=GD, outcome="received",
                         checks=[], package_sha256=t.package_sha256)
    other = token(gz, ["transfers:fetch"], BJ)  # the right receipt, posted by another agency
    assert _raw(two, "POST", url, other, data=canonical_json(real),
                headers={"Content-Type": "application/json"})[0] == 404
    assert _status(two, tid) == "available"
    assert _client(two).post_receipt(tid, real) == {"transfer_id": tid, "status": "received"}
    assert _client(two).post_receipt(tid, real)["status"] == "received"  # the same again changes nothing
    steps = [s["status"] for s in stage.transfer_detail(gz, tid, GZ)["steps"]]
    assert steps.count("received") == 1


def test_late_receipts_are_flagged_and_expired_records_end(two):
    gz = two["gz"]
    tid = _offer(two)
    hours = gz.settings.receipt_overdue_hours
    soon = stage.watch_receipts(gz, dt.datetime.now(dt.UTC) + dt.timedelta(hours=hours - 1))
    assert tid not in [t.transfer_id for t in soon.overdue]
    late = stage.watch_receipts(gz, dt.datetime.now(dt.UTC) + dt.timedelta(hours=hours + 1))
    assert tid in [t.transfer_id for t in late.overdue] and late.newly_overdue >= 1
    assert stage.transfer(gz, tid).to_dict()["overdue"] is True
    listed = logged_in(gz, "arch-gz").get("/api/transfers", params={"state": "active"}).json()
    assert listed["overdue"] >= 1
    gone = stage.watch_receipts(gz, dt.datetime.now(dt.UTC) + dt.timedelta(days=gz.settings.transfer_valid_days + 1))
    assert gone.expired >= 1 and _status(two, tid) == "expired"


def test_a_request_for_an_unknown_or_keyless_agency_is_refused_by_name(two):
    gz = two["gz"]
    for t in stage.transfers(gz, file_number=FILE, status=("requested", "packaged", "available")):
        stage.cancel_transfer(gz, t.transfer_id, ME)
    with pytest.raises(stage.TransferRefused, match="999999"):
        stage.request_transfer(gz, FILE, "999999", "工作调动", "张三", ME)
    with pytest.raises(stage.TransferRefused, match="no valid signing key"):
        stage.request_transfer(gz, FILE, BJ, "工作调动", "张三", ME)
    with pytest.raises(stage.TransferRefused, match="reason"):
        stage.request_transfer(gz, FILE, GD, " ", "张三", ME)


def test_the_cli_says_what_a_rejection_failed(two, monkeypatch, capsys, tmp_path):
    from cli.main import main

    tid = _offer(two)
    _flip_payload_byte(two, tid)
    _as_guangdong(two, monkeypatch, tmp_path)
    assert main(["fetch", "--from", GZ, "--transfer", tid, "--quiet"]) == 5
    captured = capsys.readouterr()
    assert f"rejected: {tid}" in captured.out and "package_sha256:" in captured.out
    assert "rejections were sent" in captured.err and "Traceback" not in captured.err
    monkeypatch.setenv("ARCHIVE_PULL_TOKEN", "pat_forged")
    assert main(["fetch", "--from", GZ, "--quiet"]) != 0
    assert "refused our token" in capsys.readouterr().err


@pytest.mark.parametrize("lock", ["held", "lost"])
def test_packagers_of_one_transfer_at_once_make_one_package_the_others_told_why(two, monkeypatch, lock):
    """The sensor's run, `archive serve --process` and `archive transfer request --package` may
    all package one transfer at the same moment: one package, its stored bytes the recorded ones.
    With the packaging lock lost (its connection dropped mid-way) all of them package, and still
    one package and one record stay, the ones recorded, and every caller is given them."""
    from errors import NotReady

    gz = two["gz"]
    tid = _offer(two)  # ends the earlier transfers of the file; this one is packaged already
    stage.cancel_transfer(gz, tid, ME)
    t = stage.request_transfer(gz, FILE, GD, "工作调动", "张三", ME)
    start, outcomes, steps = threading.Barrier(3), [], []
    if lock == "lost":
        monkeypatch.setattr(stage, "xact_lock", lambda cur, name, wait=True: True)
        real_step = stage._step_or_remove
        monkeypatch.setattr(stage, "_step_or_remove", lambda *args: steps.append(real_step(*args)) or steps[-1])
        real_transfer, all_read, seen = stage.transfer, threading.Barrier(3, timeout=60), threading.local()

        def read_together(services, transfer_id, agency=None):  # each packager's first look finds it requested
            row = real_transfer(services, transfer_id, agency)
            if not getattr(seen, "done", False):
                seen.done = True
                all_read.wait()
            return row

        monkeypatch.setattr(stage, "transfer", read_together)

    def package() -> None:
        start.wait()
        try:
            outcomes.append(stage.package_transfer(gz, t.transfer_id, two["gz_key"]).package_sha256)
        except Exception as exc:  # noqa: BLE001  a thread's error must reach the asserts
            outcomes.append(exc)

    threads = [threading.Thread(target=package) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    made = {o for o in outcomes if isinstance(o, str)}
    assert len(made) == 1 and len(outcomes) == 3, outcomes
    assert lock == "held" or made == set(outcomes)  # none told to wait: each went on from the winner's
    assert lock == "held" or steps.count(True) == 2 and False in steps  # one won each step; the others lost
    assert all(isinstance(o, str | NotReady) for o in outcomes), outcomes
    for refused in (o for o in outcomes if isinstance(o, NotReady)):
        assert refused.item == t.transfer_id and "is being packaged by another run" in refused.message_en
    with gz.db.transaction() as cur:
        cur.execute("SELECT status, count(*) FROM transfer_events WHERE transfer_id = %s GROUP BY status",
                    (t.transfer_id,))
        assert dict((r["status"], r["count"]) for r in cur.fetchall()) == {"requested": 1, "packaged": 1,
                                                                           "available": 1}
        cur.execute("SELECT package_key, package_sha256, record_key, record_sha256 FROM transfers"
                    " WHERE transfer_id = %s", (t.transfer_id,))
        row = cur.fetchone()
        cur.execute("SELECT key FROM stored_objects WHERE key LIKE %s", (f"transfers/{t.transfer_id}/%",))
        recorded = {r["key"] for r in cur.fetchall()}
    assert hashlib.sha256(gz.store.get(gz.archive_bucket, row["package_key"])).hexdigest() == row["package_sha256"]
    assert hashlib.sha256(gz.store.get(gz.archive_bucket, row["record_key"])).hexdigest() == row["record_sha256"]
    assert made == {row["package_sha256"]}
    stored = {k for k, _ in gz.store.keys(gz.archive_bucket, f"transfers/{t.transfer_id}/")}
    assert stored == recorded == {row["package_key"], row["record_key"]}  # the losers' objects removed


def test_a_record_left_by_a_packager_killed_before_its_step_is_removed_by_the_retry(two, monkeypatch):
    """A packager killed between storing the signed record and recording it leaves an object no
    row names; the retry signs a record of its own (each has its own id and time), and removes
    the one left. What another process stored beside it under another name is not touched."""
    gz = two["gz"]
    tid = _offer(two)
    stage.cancel_transfer(gz, tid, ME)
    t = stage.request_transfer(gz, FILE, GD, "工作调动", "张三", ME)
    real_step, left = stage._step_or_remove, []

    def killed_at_the_record(services, key, step):
        if "/record-" in key and not left:
            left.append(key)
            raise KeyboardInterrupt  # what a kill leaves: the object stored, its step not taken
        return real_step(services, key, step)

    monkeypatch.setattr(stage, "_step_or_remove", killed_at_the_record)
    with pytest.raises(KeyboardInterrupt):
        stage.package_transfer(gz, t.transfer_id, two["gz_key"])
    prefix = f"transfers/{t.transfer_id}/"
    other = b"not a packager's"
    gz.store.put(gz.archive_bucket, prefix + "notes.txt", other, hashlib.sha256(other).hexdigest())
    assert stage.transfer(gz, t.transfer_id).status == "packaged" and gz.store.head(gz.archive_bucket, left[0])
    retried = stage.package_transfer(gz, t.transfer_id, two["gz_key"])
    assert retried.record_key != left[0] and stage.transfer(gz, t.transfer_id).status == "available"
    stored = {k for k, _ in gz.store.keys(gz.archive_bucket, prefix)}
    assert stored == {retried.package_key, retried.record_key, prefix + "notes.txt"}
    gz.store.delete(gz.archive_bucket, prefix + "notes.txt")


def test_a_file_we_hold_already_is_not_overwritten_by_an_import(two):
    from errors import NotReady

    gd = two["gd"]
    if not gd.db.count("personnel_files"):  # received once and imported (as the end-to-end test does)
        tid = _offer(two)
        assert _fetch(two, tid).outcome == "received"
        receive.import_transfer(gd, tid, ME)
    tid = _offer(two)
    assert _fetch(two, tid).outcome == "received"
    with pytest.raises(NotReady, match="here already"):
        receive.import_transfer(gd, tid, ME)


def test_what_a_sender_lists_or_catalogues_cannot_reach_outside(two, tmp_path):
    from transfer.fourprops import check_payload

    with pytest.raises(PullError, match="invalid transfer id"):
        receive.fetch_one(two["gd"], _client(two), two["gd_key"], {"transfer_id": "../../etc"}, ME)
    (tmp_path / "person.json").write_text(json.dumps({"file_number": FILE, "name": "x"}))
    (tmp_path / "catalog.json").write_text(json.dumps({"file_number": FILE, "materials": [{
        "code": "1-1", "class_code": "1", "title": "t", "formed": "2020", "pdf": "../../../etc/passwd",
        "pdf_sha256": "0" * 64, "pages": [{"page_no": 1, "original": "/etc/shadow", "original_sha256": "0" * 64,
                                           "ocr": "ocr/x.json", "ocr_sha256": "0" * 64, "source_page": 0}]}]}))
    checks = {c.code: c for c in check_payload(tmp_path, {"file_number": FILE})}
    assert checks["paths"].passed is False and "/etc/shadow" in checks["paths"].message_en
    assert "digests" not in checks  # nothing outside the bag was opened


def test_a_sender_that_redirects_gets_no_token(two):
    import http.server

    seen = []

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the standard library's name
            seen.append(self.headers.get("Authorization"))
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:9/steal")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.handle_request, daemon=True).start()
    try:
        with pytest.raises(PullError, match="redirected"):
            PullClient(f"http://127.0.0.1:{server.server_port}", "secret-token").list()
    finally:
        server.server_close()
    assert seen == ["Bearer secret-token"]  # asked once, to the endpoint we were given, never followed


def test_a_senders_history_cannot_pose_as_our_own_kinds_of_event(two):
    from stages.receive import _carry_events

    gd = two["gd"]
    history = {"events": [
        {"at": "2026-01-02 03:04:05+00:00", "event_type": "ocr", "outcome": "success", "agent": "x"},
        {"at": "2026-01-02 03:04:06+00:00", "event_type": "id_revealed", "outcome": "success", "agent": "x"}]}
    with gd.db.transaction() as cur:
        cur.execute("SAVEPOINT s")
        assert _carry_events(cur, history, "GZ-HISTORY", GZ, "0" * 8) == 2
        cur.execute("SELECT event_type, detail->>'sender_event_type' AS theirs FROM events"
                    " WHERE file_number = 'GZ-HISTORY' ORDER BY at")
        assert [tuple(r.values()) for r in cur.fetchall()] == [("ocr", "ocr"), ("carried", "id_revealed")]
        cur.execute("ROLLBACK TO SAVEPOINT s")


def test_guangdong_learns_from_the_national_platform_what_waits_and_the_receipt_reaches_it(
        two, pg_server, monkeypatch, capsys, tmp_path):
    from cli.demo_transfer import join_platform, platform_steps
    from cli.main import main
    from crossregion import feed, outbox
    from crossregion.client import PlatformClient
    from national_platform.api import create_platform_app
    from national_platform.cli import platform_database

    gz, gd = two["gz"], two["gd"]
    platform = platform_database(new_database(pg_server))
    tokens = join_platform(platform, [(gz, two["gz_key"]), (gd, two["gd_key"])])
    with serving(create_platform_app(platform)) as url:
        to_platform = PlatformClient(url, tokens[GZ])
        outbox.deliver_due(gz.db, to_platform, two["gz_key"], retry_seconds=0.05)   # what earlier tests left
        tid = _offer(two)
        outbox.deliver_due(gz.db, to_platform, two["gz_key"], retry_seconds=0.05)
        # Guangdong's operator asks the platform what waits, and fetches it from Guizhou's pull API
        _as_guangdong(two, monkeypatch, tmp_path)
        monkeypatch.setenv("ARCHIVE_PLATFORM_URL", url)
        monkeypatch.setenv("ARCHIVE_PLATFORM_TOKEN", tokens[GD])
        # a sender the feed names gets only the token it issued us, never ARCHIVE_PULL_TOKEN
        monkeypatch.setenv("ARCHIVE_PULL_TOKEN", "meant-for-the-sender-the-operator-names")
        (tmp_path / "keys").mkdir(exist_ok=True)
        (tmp_path / "keys" / f"pull-{GZ}.token").write_text(two["token"], encoding="utf-8")
        assert main(["fetch", "--waiting", "--quiet"]) == 0   # (Guangdong holds the file: the first test imported it)
        assert f"received, receipted: {tid} {FILE}" in capsys.readouterr().out
        assert main(["fetch", "--waiting", "--quiet"]) == 0
        assert "lists nothing waiting for us" in capsys.readouterr().out
        # the receipt's state reaches the platform through Guizhou's outbox, and Guangdong hears it
        run = outbox.deliver_due(gz.db, to_platform, two["gz_key"], retry_seconds=0.05)
        assert run.count("delivered") == 2 and outbox.backlog(gz.db).healthy
        assert [s for s, _ in platform_steps(platform, tid)] == ["requested", "packaged", "available", "fetched",
                                                                   "received"]
        feed.read(gd, PlatformClient(url, tokens[GD]))
        with gd.db.transaction() as cur:
            cur.execute("SELECT status, verified FROM platform_feed WHERE transfer_id = %s ORDER BY sequence", (tid,))
            heard = cur.fetchall()
        assert [r["status"] for r in heard][-1] == "received" and all(r["verified"] for r in heard)
        assert main(["platform", "status"]) == 0   # Guangdong's own outbox: nothing refused
        # a record the platform lists that our registry's key does not verify is not believed
        with platform.transaction() as cur:
            cur.execute("UPDATE records SET body = jsonb_set(body, '{status}', '\"available\"'),"
                        " platform_seq = platform_seq + 1000 WHERE transfer_id = %s AND status = 'received'", (tid,))
        read = feed.read(gd, PlatformClient(url, tokens[GD]))
        assert read.problems and "does not verify" in read.problems[0][1] and read.waiting == []
