"""The national platform path: records of every transfer step written to the outbox with the
step, delivered to the in-project platform (its own database on the test PostgreSQL server,
served over HTTP on loopback) exactly once and in order through a proxy that fails on purpose,
refusals told to staff, and the platform's own checks tried as an attacker would."""

from __future__ import annotations

import datetime as dt
import json
import random
import threading
import time
import uuid
from types import SimpleNamespace

import httpx
import pytest

from crossregion import outbox
from crossregion.client import PlatformClient
from crossregion.schema import RecordInvalid, check
from national_platform import service
from national_platform.api import create_platform_app
from national_platform.cli import platform_database
from stages import transfer as stage
from tests.conftest import make_services, new_database
from tests.faultproxy import FaultProxy
from tests.synthetic_transfers import WALK, add_file, request, step, walk
from transfer import registry
from transfer.signing import Signer, canonical_json
from web.server import serving

GZ, GD, BJ = "520000", "440000", "110000"
NAMES = {GZ: "贵州省人才交流服务中心", GD: "广东省人才交流服务中心", BJ: "北京市人才服务中心"}
FAST = 0.02   # first retry after this many seconds


@pytest.fixture(scope="module")
def platform(pg_server):
    db = platform_database(new_database(pg_server))
    keys = {GZ: Signer.generate(), GD: Signer.generate()}
    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    with db.transaction() as cur:
        for code, name in NAMES.items():
            registry.add_agency(cur, code, name)
            if code in keys:
                registry.add_key(cur, code, keys[code].key_id, keys[code].public_bytes(), since)
        tokens = {code: service.issue_token(cur, code) for code in NAMES}
    with serving(create_platform_app(db)) as url:
        yield SimpleNamespace(db=db, url=url, keys=keys, tokens=tokens)


@pytest.fixture
def gz(pg_server, s3_url):
    svc = make_services(new_database(pg_server), s3_url)
    with svc.db.transaction() as cur:
        registry.add_agency(cur, GD, NAMES[GD])
    return svc


def _client(platform, url: str | None = None, agency: str = GZ, timeout: float = 2) -> PlatformClient:
    return PlatformClient(url or platform.url, platform.tokens[agency], timeout=timeout)


def _at_platform(platform, tid: str) -> list[dict]:
    with platform.db.transaction() as cur:
        cur.execute("SELECT platform_seq, sequence, status, record_id FROM records WHERE transfer_id = %s"
                    " ORDER BY platform_seq", (tid,))
        return cur.fetchall()


def _outbox(gz, tid: str) -> list[dict]:
    with gz.db.transaction() as cur:
        cur.execute("SELECT o.*, array(SELECT a.outcome FROM platform_attempts a WHERE a.record_id = o.record_id"
                    " ORDER BY a.attempt_id) AS tried FROM platform_outbox o WHERE transfer_id = %s ORDER BY sequence",
                    (tid,))
        return cur.fetchall()


def _until_delivered(gz, client, key, tid: str, seconds: float = 20) -> None:
    end = time.monotonic() + seconds
    while any(r["state"] != "delivered" for r in _outbox(gz, tid)):
        assert time.monotonic() < end, _outbox(gz, tid)
        outbox.deliver_due(gz.db, client, key, retry_seconds=FAST, workers=2)
        time.sleep(FAST)


def test_a_reader_of_1_0_takes_1_1_records_and_refuses_what_breaks_the_schema(gz, platform):
    add_file(gz, "F-SCHEMA")
    tid = request(gz, "F-SCHEMA", GD)
    walk(gz, tid, platform.keys[GZ], "received")
    rows = _outbox(gz, tid)
    assert [r["status"] for r in rows] == ["requested", *WALK] and [r["sequence"] for r in rows] == [1, 2, 3, 4, 5]
    records = [platform.keys[GZ].sign(r["body"]) for r in rows]
    for r in records:
        check(r)
    assert records[0]["person"]["id_masked"] == "520103********1234" and len(records[0]["person"]["id_hash"]) == 64
    assert "520103199001011234" not in json.dumps(records)   # never the whole ID number
    received = records[-1]
    newer = {**received, "schema_version": "1.3", "handover": {"courier": "none"},
             "file": {**received["file"], "volumes": 2}, "person": {**received["person"], "gender": "男"}}
    assert check(newer) is newer   # later minor versions only add: read, the additions ignored
    broken = {
        "file": {k: v for k, v in received.items() if k != "file"},
        "file.page_count": {**received, "file": {**received["file"], "page_count": "twelve"}},
        "status": {**received, "status": "lost"},
        "person.id_masked": {**received, "person": {**received["person"], "id_masked": "520103199001011234"}},
        "receipt": {**received, "receipt": None},   # a received record must carry its receipt
        "record_id": {**received, "record_id": "not-a-uuid"},
    }
    for path, record in broken.items():
        with pytest.raises(RecordInvalid) as refused:
            check(record)
        assert refused.value.path == path, (path, refused.value)
    with pytest.raises(RecordInvalid, match="version 2.0 is not supported"):
        check({**received, "schema_version": "2.0"})


def test_a_record_sent_while_the_platform_is_down_is_delivered_once_it_is_back(gz, platform):
    proxy = FaultProxy(platform.url)
    proxy.down()
    client = _client(platform, proxy.url)
    add_file(gz, "F-DOWN")
    tid = request(gz, "F-DOWN", GD)
    run = outbox.deliver_due(gz.db, client, platform.keys[GZ], retry_seconds=FAST)
    assert run.count("retry") == 1 and run.count("delivered") == 0
    (row,) = _outbox(gz, tid)
    assert row["state"] == "pending" and row["tried"] == ["retry"] and row["next_attempt_at"] > row["created_at"]
    with gz.db.transaction() as cur:
        cur.execute("SELECT http_status, detail FROM platform_attempts WHERE record_id = %s", (row["record_id"],))
        tried = cur.fetchone()
    assert tried["http_status"] is None and "unreachable" in tried["detail"]
    step(gz, tid, "packaged", platform.keys[GZ])   # steps go on while the platform is away
    proxy.up()
    _until_delivered(gz, client, platform.keys[GZ], tid)
    assert [(r["sequence"], r["status"]) for r in _at_platform(platform, tid)] == [(1, "requested"), (2, "packaged")]
    proxy.close()


def test_a_platform_that_stores_then_answers_500_keeps_one_record(gz, platform):
    proxy = FaultProxy(platform.url, lambda method, path, n: "fail_after" if n == 0 else "pass")
    client = _client(platform, proxy.url)
    add_file(gz, "F-500")
    tid = request(gz, "F-500", GD)
    assert outbox.deliver_due(gz.db, client, platform.keys[GZ], retry_seconds=FAST).count("retry") == 1
    assert len(_at_platform(platform, tid)) == 1     # it was stored, though we heard 500
    newer = Signer.generate()   # and Guizhou's key rotates before the retry: the record was signed once
    with platform.db.transaction() as cur:
        registry.add_key(cur, GZ, newer.key_id, newer.public_bytes(), dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
    _until_delivered(gz, client, newer, tid)
    (row,) = _outbox(gz, tid)
    assert row["tried"] == ["retry", "duplicate"] and row["answer"]["duplicate"] is True
    assert row["signed"]["signature"]["key_id"] == platform.keys[GZ].key_id
    assert len(_at_platform(platform, tid)) == 1
    proxy.close()


def test_records_of_each_transfer_arrive_once_and_in_order_under_random_failures(gz, platform):
    rng = random.Random(18)
    kinds = ["pass"] * 8 + ["fail_before", "fail_after", "fail_after", "reset_before", "reset_after", "slow_down"]

    def plan(method: str, path: str, n: int) -> str:
        kind = rng.choice(kinds)
        return f"delay:{rng.uniform(0, 0.03):.3f}" if kind == "pass" and rng.random() < 0.5 else kind

    proxy = FaultProxy(platform.url, plan)
    client = _client(platform, proxy.url)
    tids = []
    for i in range(16):
        add_file(gz, f"F-ORDER-{i}")
        tids.append(request(gz, f"F-ORDER-{i}", GD))
    stop = threading.Event()
    deliverer = threading.Thread(target=outbox.follow, args=(gz.db, client, platform.keys[GZ]),
                                 kwargs={"retry_seconds": FAST, "stop": stop, "workers": 3})
    deliverer.start()
    try:
        for to in WALK:   # the steps are taken while the deliverers send
            order = tids[:]
            rng.shuffle(order)
            for tid in order:
                step(gz, tid, to, platform.keys[GZ])
                time.sleep(rng.uniform(0, 0.01))
        end = time.monotonic() + 60
        while outbox.backlog(gz.db).pending:
            assert time.monotonic() < end, outbox.backlog(gz.db)
            time.sleep(0.1)
    finally:
        stop.set()
        deliverer.join(10)
    for tid in tids:
        got = _at_platform(platform, tid)
        assert [(r["sequence"], r["status"]) for r in got] == list(enumerate(["requested", *WALK], 1)), got
        assert {str(r["record_id"]) for r in got} == {str(r["record_id"]) for r in _outbox(gz, tid)}
    tried = [a for tid in tids for r in _outbox(gz, tid) for a in r["tried"]]
    done = [a for _, _, a in proxy.done]
    assert done.count("fail_after") and done.count("reset_after") and tried.count("duplicate")  # the faults happened
    assert tried.count("delivered") + tried.count("duplicate") == len(tids) * 5
    assert outbox.backlog(gz.db).healthy
    proxy.close()


def test_a_refused_record_is_marked_failed_with_the_reason_and_staff_are_told(gz, platform):
    rogue = Signer.generate()   # a key the platform's registry does not hold for Guizhou
    add_file(gz, "F-SIG")
    tid = request(gz, "F-SIG", GD)
    run = outbox.deliver_due(gz.db, _client(platform), rogue, retry_seconds=FAST)
    assert run.count("refused") == 1 and run.attempted[0].code == "signature"
    step(gz, tid, "packaged", platform.keys[GZ])
    assert outbox.deliver_due(gz.db, _client(platform), rogue, retry_seconds=FAST).attempted == []  # held behind
    first, second = _outbox(gz, tid)
    assert first["state"] == "failed" and first["failure_code"] == "signature"
    assert "does not verify with a key the platform's registry holds for 520000" in first["failure"]
    assert second["state"] == "pending" and second["attempts"] == 0 and _at_platform(platform, tid) == []
    t = stage.transfer(gz, tid)   # the staff web's transfers list marks it, its page says why
    assert t.platform_state == "failed" and "registry" in t.platform_failure
    assert [p["state"] for p in stage.transfer_detail(gz, tid, GZ)["platform"]] == ["failed", "pending"]
    with gz.db.transaction() as cur:
        cur.execute("SELECT detail FROM events WHERE event_type = 'platform_refused' AND file_number = 'F-SIG'")
        (event,) = cur.fetchall()
    assert event["detail"]["code"] == "signature" and "签名" in event["detail"]["reason_zh"]
    assert not outbox.backlog(gz.db).healthy
    with platform.db.transaction() as cur:   # the key registered at the platform, the records go, in order
        registry.add_key(cur, GZ, rogue.key_id, rogue.public_bytes(), dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
    assert outbox.retry_failed(gz.db) == 1
    _until_delivered(gz, _client(platform), rogue, tid)
    assert [r["status"] for r in _at_platform(platform, tid)] == ["requested", "packaged"]


def test_a_record_that_breaks_the_schema_never_leaves_and_the_platform_refuses_one(gz, platform):
    add_file(gz, "F-BAD")
    tid = request(gz, "F-BAD", GD)
    with gz.db.transaction() as cur:   # a record rewritten behind the outbox's back
        cur.execute("UPDATE platform_outbox SET body = body - 'person' WHERE transfer_id = %s", (tid,))
    proxy = FaultProxy(platform.url)
    outbox.deliver_due(gz.db, _client(platform, proxy.url), platform.keys[GZ], retry_seconds=FAST)
    (row,) = _outbox(gz, tid)
    assert row["state"] == "failed" and row["failure_code"] == "schema" and "person" in row["failure"]
    assert proxy.done == []   # never sent
    # the platform checks for itself what a careless or hostile sender posts
    body = {**platform.keys[GZ].sign({**row["body"], "person": {"name": "李明"}})}
    res = httpx.post(f"{platform.url}/api/v1/records", content=canonical_json(body),
                     headers={"Authorization": f"Bearer {platform.tokens[GZ]}", "Idempotency-Key": body["record_id"]})
    assert res.status_code == 422 and res.json()["code"] == "schema" and res.json()["path"] == "person.id_masked"
    proxy.close()


def _post(platform, record: dict, agency: str = GZ, key: str | None = None, token: str | None = None):
    headers = {"Idempotency-Key": key or str(record.get("record_id"))}
    if token != "":
        headers["Authorization"] = f"Bearer {token or platform.tokens[agency]}"
    return httpx.post(f"{platform.url}/api/v1/records", content=canonical_json(record), headers=headers)


def test_the_platform_takes_records_only_from_their_sender_and_shows_them_only_to_the_two_agencies(gz, platform):
    add_file(gz, "F-AUTH")
    tid = request(gz, "F-AUTH", GD)
    step(gz, tid, "packaged", platform.keys[GZ])
    first, second = (platform.keys[GZ].sign(r["body"]) for r in _outbox(gz, tid))
    assert _post(platform, first, token="").status_code == 401
    assert _post(platform, first, token="garbage").status_code == 401
    assert _post(platform, first, GD).json()["code"] == "not_your_record"              # Guangdong posing as Guizhou
    assert _post(platform, second).json()["code"] == "out_of_order"                    # 2 before 1
    assert _post(platform, first, key="another-key").json()["code"] == "idempotency_key"
    forged = {**first, "person": {**first["person"], "name": "王五"}}                    # changed after signing
    assert _post(platform, forged).json()["code"] == "signature"
    wrong_key = platform.keys[GD].sign(first)                                             # signed by another agency
    assert _post(platform, wrong_key).json()["code"] == "signature"
    assert _post(platform, {**first, "sequence": 1}, token=None).status_code == 201
    assert _post(platform, first).json()["duplicate"] is True                            # the same again: kept once
    other = platform.keys[GZ].sign({**first, "person": {**first["person"], "name": "王五"}})
    assert _post(platform, other).json()["code"] == "conflict"                          # same id, other content
    assert _post(platform, second).status_code == 201
    assert len(_at_platform(platform, tid)) == 2
    assert httpx.post(f"{platform.url}/api/v1/records", content=b"x" * 300_000,
                      headers={"Authorization": f"Bearer {platform.tokens[GZ]}"}).status_code == 413

    def feed(agency: str) -> set[str]:
        return {r["record"]["transfer_id"] for r in _client(platform, agency=agency).feed(0)["records"]}

    assert tid in feed(GD) and tid in feed(GZ) and tid not in feed(BJ)
    res = httpx.get(f"{platform.url}/api/v1/transfers/{tid}/records",
                    headers={"Authorization": f"Bearer {platform.tokens[BJ]}"})
    assert res.status_code == 404
    with platform.db.transaction() as cur:   # every look and every refusal is on record, by whom
        cur.execute("SELECT agency, action, status FROM access_log WHERE action IN ('feed.read', 'transfer.read')")
        looks = {(r["agency"], r["action"], r["status"]) for r in cur.fetchall()}
        cur.execute("SELECT code FROM refusals")
        refusals = {r["code"] for r in cur.fetchall()}
    assert {(GD, "feed.read", 200), (BJ, "feed.read", 200), (BJ, "transfer.read", 200)} <= looks
    assert {"not_your_record", "out_of_order", "idempotency_key", "signature", "conflict"} <= refusals
    with platform.db.transaction() as cur:
        service.revoke_tokens(cur, BJ)
    assert httpx.get(f"{platform.url}/api/v1/feed", headers={"Authorization": f"Bearer {platform.tokens[BJ]}"}
                     ).status_code == 401


def test_the_dagster_asset_delivers_and_its_check_fails_on_a_refusal(gz, platform, s3_url, monkeypatch, tmp_path):
    import dagster as dg
    from cryptography.hazmat.primitives import serialization

    from pipeline.definitions import defs
    from pipeline.resources import ArchiveServicesResource, SignerResource
    from pipeline.sensors import make_platform_sensor
    from pipeline.transfer_assets import platform_deliveries_asset

    services = ArchiveServicesResource(database_url=gz.db.url, s3_endpoint_url=s3_url,
                                       staging_bucket=gz.staging_bucket, archive_bucket=gz.archive_bucket)

    def run(key: Signer) -> dg.ExecuteInProcessResult:
        pem = tmp_path / f"{key.key_id}.pem"
        pem.write_bytes(key.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
        resources = {"services": services, "signer": SignerResource(key_file=str(pem))}
        return dg.materialize([platform_deliveries_asset], resources=resources, raise_on_error=False)

    monkeypatch.delenv("ARCHIVE_SIGNING_KEY", raising=False)
    monkeypatch.setenv("ARCHIVE_PLATFORM_URL", platform.url)
    monkeypatch.setenv("ARCHIVE_PLATFORM_TOKEN", platform.tokens[GZ])
    monkeypatch.setenv("ARCHIVE_PLATFORM_RETRY_SECONDS", "1")
    add_file(gz, "F-DAGSTER")
    tid = request(gz, "F-DAGSTER", GD)
    sensor = make_platform_sensor(defs.resolve_job_def("deliver_to_platform"))
    with dg.build_sensor_context(resources={"services": services}) as ctx:
        asked = sensor(ctx)
    assert isinstance(asked, dg.RunRequest) and asked.run_key.split("@")[0].endswith(":0")   # a record is due
    import pipeline.sensors  # a delivery run that died without trying it: another is asked for later

    now = pipeline.sensors.relaunch_window
    monkeypatch.setattr(pipeline.sensors, "relaunch_window", lambda: now() + 1)
    with dg.build_sensor_context(resources={"services": services}) as ctx:
        again = sensor(ctx)
    assert again.run_key != asked.run_key and again.run_key.split("@")[0] == asked.run_key.split("@")[0]
    monkeypatch.setattr(pipeline.sensors, "relaunch_window", now)
    result = run(platform.keys[GZ])
    assert result.success
    (mat,) = result.get_asset_materialization_events()
    assert mat.materialization.metadata["delivered"].value == 1
    (check,) = result.get_asset_check_evaluations()
    assert check.passed
    step(gz, tid, "packaged", platform.keys[GZ])
    result = run(Signer.generate())   # a key the platform does not know: refused, and the check says so
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert "signature" in check.metadata["why"].value and "F-DAGSTER packaged" in check.metadata["why"].value


def test_an_answer_that_is_not_the_platforms_is_no_delivery(gz, platform):
    proxy = FaultProxy(platform.url, lambda method, path, n: "portal" if n == 0 else "pass")
    client = _client(platform, proxy.url)
    add_file(gz, "F-PORTAL")
    tid = request(gz, "F-PORTAL", GD)
    run = outbox.deliver_due(gz.db, client, platform.keys[GZ], retry_seconds=FAST)
    assert [(a.outcome, a.code) for a in run.attempted] == [("retry", "bad_answer")]
    assert _at_platform(platform, tid) == []
    _until_delivered(gz, client, platform.keys[GZ], tid)
    assert len(_at_platform(platform, tid)) == 1
    proxy.close()


def test_no_agency_can_take_another_agencys_transfer_id_or_backdate_a_record(gz, platform):
    add_file(gz, "F-SQUAT")
    tid = request(gz, "F-SQUAT", GD)
    (row,) = _outbox(gz, tid)
    # Guangdong learned the id first and posts its own record 1 under it, as sender
    squat = platform.keys[GD].sign({**row["body"], "record_id": "00000000-0000-4000-8000-000000000001",
                                   "sender": {"code": GD, "name": NAMES[GD]}, "receiver": {"code": GZ, "name": "x"}})
    assert _post(platform, squat, GD).status_code == 201
    _until_delivered(gz, _client(platform), platform.keys[GZ], tid)   # Guizhou's own records are not blocked
    assert [r["status"] for r in _at_platform(platform, tid)] == ["requested", "requested"]
    with httpx.Client(headers={"Authorization": f"Bearer {platform.tokens[GZ]}"}) as http:
        mine = http.get(f"{platform.url}/api/v1/transfers/{tid}/records").json()["records"]
    assert {r["record"]["sender"]["code"] for r in mine} == {GZ, GD}   # each is its own sender's
    old = (dt.datetime.now(dt.UTC) - dt.timedelta(days=31)).isoformat()
    for bad, code in ((platform.keys[GZ].sign({**row["body"], "record_id": str(uuid.uuid4()), "sequence": 2,
                                                "changed_at": old}), "stale"),
                      (platform.keys[GZ].sign({**row["body"], "record_id": str(uuid.uuid4()), "sequence": 2,
                                                "person": {**row["body"]["person"], "name": "李\u0000明"}}), "schema")):
        res = _post(platform, bad)
        assert res.status_code == 422 and res.json()["code"] == code, res.text
    big = {**row["body"], "record_id": str(uuid.uuid4()), "sequence": 2, "extra": 2**60}
    big["signature"] = {"alg": "Ed25519", "key_id": "k", "value": "x"}
    res = httpx.post(f"{platform.url}/api/v1/records", content=json.dumps(big),
                     headers={"Authorization": f"Bearer {platform.tokens[GZ]}", "Idempotency-Key": big["record_id"]})
    assert res.status_code == 422 and res.json()["code"] == "schema"


def test_a_platform_that_answers_nonsense_is_told_by_name_and_what_we_knew_still_waits(gz, platform):
    from fastapi import FastAPI

    from crossregion import feed
    from errors import ArchiveError

    bad = FastAPI()
    pages = iter([{"records": [{"platform_seq": 5, "record": {"schema": "x"}},
                               {"platform_seq": 9, "record": {"status": "available", "sequence": 2**40,
                                                              "sender": {"code": "44\u00000000"}}}], "last": 9},
                  {"records": [{"platform_seq": "9'; DROP TABLE x"}], "last": 9},
                  {"records": "none"}])

    @bad.get("/api/v1/feed")
    def page() -> dict:
        return next(pages)

    with serving(bad) as url:
        client = PlatformClient(url, "t", timeout=2)
        read = feed.read(gz, client)
        assert [seq for seq, _ in read.problems] == [5, 9] and read.waiting == []
        for _ in range(2):
            with pytest.raises(ArchiveError, match="feed"):
                feed.read(gz, client)
    with gz.db.transaction() as cur:
        cur.execute("SELECT platform_seq, verified FROM platform_feed ORDER BY platform_seq")
        assert [(r["platform_seq"], r["verified"]) for r in cur.fetchall()] == [(5, False), (9, False)]


def test_a_deliverer_that_fails_leaves_its_records_to_the_others_and_says_so(gz, platform, monkeypatch):
    """A deliverer's transaction rolled back (a bug, a lost connection): its claimed records are
    not counted as tried, the run says what failed, and the next run delivers them."""
    add_file(gz, "F-CRASH")
    tid = request(gz, "F-CRASH", GD)
    real, calls = outbox._send, []

    def first_send_fails(cur, row, *args):
        calls.append(row["record_id"])
        if len(calls) == 1:
            raise RuntimeError("a deliverer's bug")
        return real(cur, row, *args)

    monkeypatch.setattr(outbox, "_send", first_send_fails)
    with pytest.raises(RuntimeError, match="a deliverer's bug"):
        outbox.deliver_due(gz.db, _client(platform), platform.keys[GZ], retry_seconds=FAST, workers=1)
    (row,) = _outbox(gz, tid)
    assert row["state"] == "pending" and row["tried"] == []  # rolled back: nothing half-recorded
    tried = outbox.Tried()
    with pytest.raises(RuntimeError):
        calls.clear()
        outbox.deliver_some(gz.db, _client(platform), platform.keys[GZ], FAST, tried)
    assert tried.ids() == []  # given back, for the run's other deliverers
    run = outbox.deliver_due(gz.db, _client(platform), platform.keys[GZ], retry_seconds=FAST, workers=2)
    assert run.count("delivered") == 1 and [r["status"] for r in _at_platform(platform, tid)] == ["requested"]
