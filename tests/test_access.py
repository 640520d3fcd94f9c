"""Access control (issue 15), as an attacker would try it: every HTTP endpoint against every kind
of caller, cross-site writes, oversized uploads, guessed passwords, leaks of ID numbers, a
tampered audit trail, and production started unsafely. Real PostgreSQL, S3 and Dagster."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import shutil
from pathlib import Path

import dagster as dg
import psycopg2
import pytest

from access import audit
from access.audit import Actor
from access.roles import ROLE_PERMISSIONS, Permission, Role
from errors import SetupError
from pipeline.runner import run_batch
from settings import Settings
from stages.submit import submit_folder
from tests.conftest import (
    PASSWORD,
    SAMPLE_BATCH,
    add_user,
    logged_in,
    make_services,
    new_database,
    token,
    web_client,
)
from tests.test_pipeline_e2e import resources_for
from web.auth import COOKIE

A, B = "520000", "440000"
FILE = "GZ2026-0070001"
ID = "520103196804011252"
TRANSFER = "0d6c1f0e-6a55-4b55-9f43-3f1b8a1e2c77"  # in the demo manifest and on the registration form's page
ID_LIKE = re.compile(r"(?<![0-9])[0-9]{17}[0-9Xx](?![0-9])")


def _first_file_batch(root: Path) -> Path:
    """The demo batch's first personnel file alone (3 pages)."""
    folder = root / "GZ-access"
    (folder / "pages").mkdir(parents=True)
    lines = (SAMPLE_BATCH / "manifest.csv").read_text(encoding="utf-8").splitlines()
    keep = [lines[0]] + [line for line in lines[1:] if line.startswith(FILE)]
    for line in keep[1:]:
        for page in line.rsplit(",", 1)[1].split(";"):
            shutil.copy(SAMPLE_BATCH / page, folder / page)
    (folder / "manifest.csv").write_text("\n".join(keep) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def world(pg_server, s3_url, tmp_path_factory):
    """Agency A's file processed through Dagster; people of both agencies and of every role."""
    root = tmp_path_factory.mktemp("access")
    settings = dataclasses.replace(Settings.from_env(), login_delay_ms=1, refusals_per_minute=10_000,
                                   login_per_minute=10_000)
    services = make_services(new_database(pg_server), s3_url, settings)
    sub = submit_folder(_first_file_batch(root), services)
    with dg.DagsterInstance.ephemeral() as instance:
        result = run_batch(sub.batch_id, resources_for(services, root / "signing.pem"), instance)
        assert result.success
        logged = [str(e.dagster_event.event_specific_data) + (e.user_message or "") if e.dagster_event
                  else e.user_message for e in instance.all_logs(result.run_id)]
    for username, role, agency in [("staff-a", "staff", A), ("staff-b", "staff", B), ("arch-a", "archivist", A),
                                   ("arch-b", "archivist", B), ("auditor", "auditor", None),
                                   ("engineer", "engineer", None), ("admin", "admin", None)]:
        add_user(services, username, role, agency)
    with services.db.transaction() as cur:
        cur.execute("SELECT p.page_id, m.material_id FROM pages p JOIN materials m USING (material_id)"
                    " WHERE m.file_number = %s ORDER BY m.material_id LIMIT 1", (FILE,))
        ids = cur.fetchone()
        # a transfer of A's file to a third agency, received already: A's to read, not B's
        cur.execute("INSERT INTO agencies (code, name) VALUES ('110000', '北京') ON CONFLICT DO NOTHING")
        cur.execute("INSERT INTO transfers (transfer_id, file_number, sending_agency, receiving_agency, status)"
                    " VALUES (%s, %s, %s, '110000', 'received')", (TRANSFER, FILE, A))
    return {"services": services, "batch": sub.batch_id, "page": ids["page_id"], "material": ids["material_id"],
            "dagster_log": "\n".join(logged)}


# Every route of the staff web: (method, path, permission needed, scoped to the agency, status when allowed).
# None: anyone logged in. Routes not listed fail test_the_matrix_covers_every_route.
def _routes(w: dict) -> list[tuple[str, str, Permission | None, bool, int]]:
    batch, page, material = w["batch"], w["page"], w["material"]
    return [
        ("GET", "/api/session", None, False, 200),
        ("GET", "/api/session/pipeline-ui", Permission.PIPELINE_UI, False, 204),
        ("POST", "/api/batches", Permission.BATCHES_SUBMIT, False, 422),  # no files sent: refused as such
        ("GET", "/api/batches", Permission.BATCHES_READ, False, 200),
        ("GET", f"/api/batches/{batch}", Permission.BATCHES_READ, True, 200),
        ("GET", f"/api/batches/{batch}/report", Permission.BATCHES_READ, True, 200),
        ("GET", f"/batches/{batch}/report", Permission.BATCHES_READ, True, 200),
        ("GET", "/api/search?q=杜豪", Permission.FILES_SEARCH, False, 200),
        ("GET", f"/api/files/{FILE}", Permission.FILES_READ, True, 200),
        ("GET", f"/api/files/{FILE}/pages/{page}/image", Permission.FILES_DOCUMENTS, True, 200),
        ("GET", f"/api/files/{FILE}/materials/{material}/pdf", Permission.FILES_DOCUMENTS, True, 200),
        ("POST", f"/api/files/{FILE}/id-number", Permission.ID_REVEAL, True, 200),
        ("GET", "/api/audit", Permission.AUDIT_READ, False, 200),
        ("GET", "/api/agencies", Permission.TRANSFERS_REQUEST, False, 200),
        ("POST", f"/api/files/{FILE}/transfers", Permission.TRANSFERS_REQUEST, True, 422),  # no receiver given
        ("GET", "/api/transfers", Permission.TRANSFERS_READ, False, 200),
        ("GET", f"/api/transfers/{TRANSFER}", Permission.TRANSFERS_READ, True, 200),
        ("POST", f"/api/transfers/{TRANSFER}/cancel", Permission.TRANSFERS_REQUEST, True, 409),  # received already
        # the pull API is for receiving agencies' tokens, never a person's session (tests/test_transfer.py)
        ("GET", "/api/pull/v1/transfers", Permission.TRANSFERS_FETCH, False, 200),
        ("GET", f"/api/pull/v1/transfers/{TRANSFER}/record", Permission.TRANSFERS_FETCH, True, 200),
        ("GET", f"/api/pull/v1/transfers/{TRANSFER}/package", Permission.TRANSFERS_FETCH, True, 200),
        ("POST", f"/api/pull/v1/transfers/{TRANSFER}/receipt", Permission.TRANSFERS_FETCH, True, 200),
    ]


PUBLIC = {"/login", "/manifest-template.csv", "/static", "/favicon.ico", "/api/login", "/api/logout",
          "/api/pull/v1/openapi.json"}
PAGES = {"/", "/search", "/files/{file_number}", "/transfers"}  # HTML that loads its data from the API above


def test_the_matrix_covers_every_route(world):
    app = web_client(world["services"]).app
    declared = {(m, r.path) for r in app.routes for m in getattr(r, "methods", {"GET"}) - {"HEAD"}}
    declared = {(m, p) for m, p in declared if p not in PUBLIC and p not in PAGES}
    templates = {"/api/batches/{batch_id}", "/api/batches/{batch_id}/report", "/batches/{batch_id}/report",
                 "/api/files/{file_number}", "/api/files/{file_number}/pages/{page_id}/image",
                 "/api/files/{file_number}/materials/{material_id}/pdf", "/api/files/{file_number}/id-number",
                 "/api/files/{file_number}/transfers", "/api/transfers/{transfer_id}",
                 "/api/transfers/{transfer_id}/cancel", "/api/pull/v1/transfers/{transfer_id}/record",
                 "/api/pull/v1/transfers/{transfer_id}/package", "/api/pull/v1/transfers/{transfer_id}/receipt"}
    matrix = {(m, p.split("?")[0]) for m, p, *_ in _routes(world)}
    for m, p in declared:
        assert (m, p) in matrix or (p in templates and any(m == mm for mm, _ in matrix)), (m, p)


def _last_audit(services) -> dict:
    with services.db.transaction() as cur:
        cur.execute("SELECT * FROM audit_log ORDER BY seq DESC LIMIT 1")
        return cur.fetchone()


def _call(client, method: str, path: str):
    return client.request(method, path, files=[("x", ("x", b""))] if path == "/api/batches" else None)


CALLERS = {  # who, their permissions, their agency
    "staff-a": (ROLE_PERMISSIONS[Role.STAFF], A), "staff-b": (ROLE_PERMISSIONS[Role.STAFF], B),
    "arch-a": (ROLE_PERMISSIONS[Role.ARCHIVIST], A), "arch-b": (ROLE_PERMISSIONS[Role.ARCHIVIST], B),
    "auditor": (ROLE_PERMISSIONS[Role.AUDITOR], None), "engineer": (ROLE_PERMISSIONS[Role.ENGINEER], None),
    "admin": (ROLE_PERMISSIONS[Role.ADMIN], None),
}


@pytest.mark.parametrize("caller", list(CALLERS))
def test_each_role_of_each_agency_gets_exactly_its_own(world, caller):
    services = world["services"]
    permissions, agency = CALLERS[caller]
    client = logged_in(services, caller)
    for method, path, needed, scoped, ok in _routes(world):
        res = _call(client, method, path)
        allowed = needed is None or needed in permissions
        if not allowed:
            expected = 403
        elif scoped and agency != A:
            expected = 404  # another agency's thing, answered as a thing that does not exist
        else:
            expected = ok
        assert res.status_code == expected, (caller, method, path, res.status_code, res.text[:200])
        if expected in (403, 404):
            row = _last_audit(services)
            assert (row["actor"], row["outcome"], row["target"]) == (f"user:{caller}", "denied", path.split("?")[0])
    if Permission.FILES_SEARCH in permissions:  # the other agency searches and finds nothing of A's
        hits = client.get("/api/search", params={"q": "杜豪"}).json()["hits"]
        assert bool(hits) == (agency == A)
    if Permission.BATCHES_READ in permissions:
        listed = [b["batch_id"] for b in client.get("/api/batches").json()["batches"]]
        assert (world["batch"] in listed) == (agency == A)


def test_what_does_not_exist_answers_as_what_is_not_yours(world):
    client = logged_in(world["services"], "arch-b")
    mine = client.get(f"/api/files/{FILE}")           # A's file, asked by B
    nothing = client.get("/api/files/GZ-NO-SUCH-FILE")
    assert mine.status_code == nothing.status_code == 404 and mine.json() == nothing.json()


def test_no_dead_or_forged_credential_gets_in(world):
    services = world["services"]
    live = token(services, ["files:search", "files:read", "batches:read"], A)
    revoked = token(services, ["files:search"], A)
    expired = token(services, ["files:search"], A)
    with services.db.transaction() as cur:
        cur.execute("UPDATE api_tokens SET revoked_at = now() WHERE token_sha256 = encode(sha256(%s::bytea), 'hex')",
                    (revoked,))
        cur.execute("UPDATE api_tokens SET expires_at = now() - interval '1 minute'"
                    " WHERE token_sha256 = encode(sha256(%s::bytea), 'hex')", (expired,))
    idle, old = logged_in(services, "arch-a"), logged_in(services, "arch-a")
    with services.db.transaction() as cur:
        cur.execute("UPDATE sessions SET last_seen = now() - interval '31 minutes' WHERE token_sha256 ="
                    " encode(sha256(%s::bytea), 'hex')", (idle.cookies.get(COOKIE),))
        cur.execute("UPDATE sessions SET expires_at = now() - interval '1 second' WHERE token_sha256 ="
                    " encode(sha256(%s::bytea), 'hex')", (old.cookies.get(COOKIE),))
    assert web_client(services, live).get(f"/api/files/{FILE}").status_code == 200
    pdf = f"/api/files/{FILE}/materials/{world['material']}/pdf"  # the documents show the ID as printed
    assert web_client(services, live).get(pdf).status_code == 403
    callers = {"nobody": web_client(services), "revoked": web_client(services, revoked),
               "expired token": web_client(services, expired), "forged": web_client(services, "pat_" + "x" * 43),
               "idle session": idle, "expired session": old,
               "forged cookie": web_client(services)}
    callers["forged cookie"].cookies.set(COOKIE, "made-up", domain="127.0.0.1")
    for name, client in callers.items():
        for method, path, *_ in _routes(world):
            res = _call(client, method, path)
            assert res.status_code == 401, (name, method, path, res.status_code)
            row = _last_audit(services)
            assert (row["actor"], row["outcome"]) == ("anonymous", "denied"), (name, path)
    page = web_client(services).get(f"/files/{FILE}", headers={"Accept": "text/html"}, follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login")


def test_a_header_naming_someone_is_no_identity(world):
    res = web_client(world["services"]).get("/api/search", params={"q": "杜豪"},
                                            headers={"X-Archive-Actor": "arch-a"})
    assert res.status_code == 401


def test_cross_site_writes_are_refused(world):
    services = world["services"]
    client = logged_in(services, "staff-a")
    for headers in ({"Origin": "https://evil.example"}, {"Origin": "null"}, {"Origin": "", "Referer": "https://evil.example/x"},
                    {"Origin": "https://127.0.0.1:8443"}):
        res = client.post("/api/batches", files=[("files", ("m.csv", b"x"))], headers=headers)
        assert res.status_code == 403, headers
    del client.headers["Origin"]
    assert client.post("/api/batches", files=[("files", ("m.csv", b"x"))]).status_code == 403  # neither header
    assert client.post("/api/login", data={"username": "staff-a", "password": PASSWORD},
                       headers={"Origin": "https://evil.example"}).status_code == 403
    res = web_client(services).get("/api/session", headers={"Host": "evil.example"})
    assert res.status_code == 400  # a Host not on the allow-list


def test_responses_carry_the_security_headers(world):
    res = web_client(world["services"]).get("/login")
    csp = res.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert res.headers["x-content-type-options"] == "nosniff" and res.headers["x-frame-options"] == "DENY"
    login = web_client(world["services"]).post("/api/login", data={"username": "arch-a", "password": PASSWORD})
    cookie = login.headers["set-cookie"].lower()
    assert "httponly" in cookie and "secure" in cookie and "samesite=strict" in cookie


def test_an_oversized_upload_is_413_and_leaves_nothing(pg_server, s3_url, tmp_path):
    settings = dataclasses.replace(Settings.from_env(), max_upload_bytes=50_000)
    services = make_services(new_database(pg_server), s3_url, settings)
    secret = token(services, ["batches:submit", "batches:read"], services.agency)
    client = web_client(services, secret)
    before = (services.db.count("batches"), services.store.count(services.staging_bucket))
    big = [("files", ("GZ/manifest.csv", b"x" * 1000)), ("files", ("GZ/pages/a.jpg", b"\xff" * 80_000))]
    res = client.post("/api/batches", files=big)
    assert res.status_code == 413 and "上限" in res.json()["detail"] and "limit" in res.json()["detail"]

    def chunks():  # no Content-Length: counted as it arrives
        yield b"--b\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.jpg\"\r\n\r\n"
        for _ in range(10):
            yield b"\xff" * 10_000
    res = client.post("/api/batches", content=chunks(), headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert res.status_code == 413
    assert (services.db.count("batches"), services.store.count(services.staging_bucket)) == before


def test_the_sixth_wrong_password_locks_the_account(world):
    services = world["services"]
    add_user(services, "guessed", "archivist", A)
    client = web_client(services)
    for attempt in range(1, 7):
        res = client.post("/api/login", data={"username": "guessed", "password": f"wrong-{attempt}"})
        assert res.status_code == 401
        assert ("锁定" in res.json()["detail"]) == (attempt == 6), (attempt, res.text)
    right = client.post("/api/login", data={"username": "guessed", "password": PASSWORD})
    assert right.status_code == 401 and "locked" in right.json()["detail"]  # even the right one, for a while
    with services.db.transaction() as cur:
        cur.execute("SELECT outcome, detail FROM audit_log WHERE actor = 'user:guessed' AND action = 'login'"
                    " ORDER BY seq")
        outcomes = [(r["outcome"], r["detail"].get("reason")) for r in cur.fetchall()]
    assert outcomes == [("failed", "wrong")] * 5 + [("failed", "locked")] * 2


def test_logins_and_searches_are_rate_limited(pg_server, s3_url):
    settings = dataclasses.replace(Settings.from_env(), login_per_minute=3, search_per_minute=2, login_delay_ms=1)
    services = make_services(new_database(pg_server), s3_url, settings)
    client = web_client(services)
    codes = [client.post("/api/login", data={"username": "nobody", "password": "x"}).status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    searcher = web_client(services, token(services, ["files:search"], services.agency))
    assert [searcher.get("/api/search", params={"q": "张三"}).status_code for _ in range(3)] == [200, 200, 429]


def test_no_id_number_leaves_unmasked(world):
    """The registration form's page holds the full number: search for its first six digits or
    for 身份证号, the report, the file view, the Dagster event log and an error all show it masked."""
    services = world["services"]
    client = logged_in(services, "arch-a")
    seen = []
    for q in ("520103", "身份证号", ID, ID[6:14], "杜豪"):
        res = client.get("/api/search", params={"q": q})
        assert res.status_code == 200
        seen.append(res.text)
    assert json.loads(seen[0])["hits"] and json.loads(seen[1])["hits"]  # found, masked
    assert not json.loads(seen[3])["hits"]  # the middle digits are no way in
    seen.append(client.get(f"/api/files/{FILE}").text)
    seen.append(logged_in(services, "staff-a").get(f"/api/batches/{world['batch']}/report").text)
    seen.append(client.get(f"/api/files/{ID}").text)  # an error naming an ID number
    seen.append(world["dagster_log"])
    with services.db.transaction() as cur:
        cur.execute("SELECT detail::text || target AS t FROM audit_log")
        seen += [r["t"] for r in cur.fetchall()]
        cur.execute("SELECT ocr_text FROM pages")
        seen += [r["ocr_text"] for r in cur.fetchall()]
        cur.execute("SELECT catalog::text AS c, findings::text AS f FROM batches")
        seen += [r["c"] + r["f"] for r in cur.fetchall()]
        cur.execute("SELECT id_number_encrypted FROM personnel_files")
        seen += [r["id_number_encrypted"] for r in cur.fetchall()]
    leaks = [s[:80] for s in seen if ID_LIKE.search(s)]
    assert not leaks, leaks
    assert "520103********1252" in seen[0]
    revealed = client.post(f"/api/files/{FILE}/id-number")
    assert revealed.json()["id_number"] == ID  # to the role allowed, and that look is recorded
    row = _last_audit(services)
    assert (row["actor"], row["action"], row["file_numbers"]) == ("user:arch-a", "id.reveal", [FILE])
    assert ID not in json.dumps(row, default=str)


def test_a_finding_never_completes_a_masked_number():
    from catalog.manifest import parse_manifest

    bad = ID[:6] + "19490230" + ID[14:]  # 30 February
    data = ("档号,姓名,身份证号,类号,序号,材料名称,形成时间,份数,页数,备注,页面文件\n"
            f"GZ-X,张三,{bad},1,1,登记表 {ID},2001,1,1,,p.jpg\n").encode()
    _, findings = parse_manifest(data)
    text = json.dumps([f.to_dict() for f in findings], ensure_ascii=False)
    assert findings and "19490230" not in text and not ID_LIKE.search(text)


def _chain(services, n: int = 5) -> None:
    with services.db.transaction() as cur:
        for i in range(n):
            audit.record(cur, Actor("user:x", "10.0.0.1", A), "file.view", target=f"GZ-{i}", file_numbers=[f"GZ-{i}"])


def _tamper(services, sql: str) -> None:
    with services.db.transaction() as cur:  # past the trigger, as only a superuser can
        cur.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update")
        cur.execute(sql)
        cur.execute("ALTER TABLE audit_log ENABLE ALWAYS TRIGGER audit_log_no_update")


@pytest.mark.parametrize(("sql", "first_bad"), [
    ("UPDATE audit_log SET target = 'GZ-other' WHERE seq = 3", 3),
    ("DELETE FROM audit_log WHERE seq = 2", 2),
    ("UPDATE audit_log SET seq = -seq WHERE seq IN (3, 4); UPDATE audit_log SET seq = 7 - seq WHERE seq < 0", 3),
], ids=["edited", "deleted", "reordered"])
def test_audit_verify_names_the_first_bad_row(services, sql, first_bad, monkeypatch, capsys):
    from cli.main import main

    _chain(services)
    with services.db.transaction() as cur:
        assert audit.verify(cur).intact
    _tamper(services, sql)
    with services.db.transaction() as cur:
        verdict = audit.verify(cur)
    assert verdict.first_bad == first_bad, verdict
    monkeypatch.setenv("ARCHIVE_DATABASE_URL", services.db.url)
    monkeypatch.setenv("ARCHIVE_OBJECT_ROOT", "/tmp/archive-audit-test-objects")
    assert main(["audit", "verify"]) == 5
    assert f"row {first_bad}" in capsys.readouterr().err


def test_the_trail_refuses_change_even_from_its_owner_and_the_app_role_has_no_grant(services):
    _chain(services, 2)
    for sql in ("UPDATE audit_log SET target = 'x'", "DELETE FROM audit_log", "TRUNCATE audit_log"):
        with pytest.raises(psycopg2.Error, match="append-only"), services.db.transaction() as cur:
            cur.execute(sql)
    role = "app_" + services.staging_bucket.split("-")[1]
    with services.db.transaction() as cur:
        cur.execute(f"CREATE ROLE {role} LOGIN")
        cur.execute(f"GRANT SELECT, INSERT ON audit_log TO {role}")
    app = psycopg2.connect(services.db.url.replace("//archive@", f"//{role}@"))
    try:
        with app, app.cursor() as cur:
            cur.execute("SELECT count(*) FROM audit_log")
        for sql in ("UPDATE audit_log SET target = 'x'", "DELETE FROM audit_log"):
            with pytest.raises(psycopg2.errors.InsufficientPrivilege), app, app.cursor() as cur:
                cur.execute(sql)
    finally:
        app.close()
        with services.db.transaction() as cur:
            cur.execute(f"DROP OWNED BY {role}")
            cur.execute(f"DROP ROLE {role}")


def test_another_agency_reusing_a_file_number_is_refused_and_the_file_is_unchanged(world, tmp_path):
    from stages.intake import intake_batch
    from stages.report import batch_report

    services = world["services"]
    with services.db.transaction() as cur:
        cur.execute("SELECT name, id_hash, holding_agency, indexed_at FROM personnel_files WHERE file_number = %s",
                    (FILE,))
        before = cur.fetchone()
    folder = _first_file_batch(tmp_path)
    manifest = folder / "manifest.csv"
    manifest.write_text(manifest.read_text(encoding="utf-8").replace("杜豪", "别人"), encoding="utf-8")
    sub = submit_folder(folder, services, agency=B)
    result = intake_batch(sub.batch_id, services)
    assert result.materials == 0
    assert any(f.code == "catalog.file_of_another_agency" and FILE in f.item for f in result.findings)
    assert batch_report(sub.batch_id, services)["counts"]["materials_going_on"] == 0
    with services.db.transaction() as cur:
        cur.execute("SELECT name, id_hash, holding_agency, indexed_at FROM personnel_files WHERE file_number = %s",
                    (FILE,))
        assert cur.fetchone() == before


def test_production_refuses_each_unsafe_setting_in_one_sentence(database_url, s3_url, monkeypatch):
    import base64

    monkeypatch.delenv("ARCHIVE_SIGNING_KEY", raising=False)
    unsafe = dataclasses.replace(Settings.from_env(), environment="production")
    with pytest.raises(SetupError) as refused:
        make_services(database_url, s3_url, unsafe)
    text = str(refused.value)
    for part in ("demo ID-hash key", "demo ID-encryption key", "demo audit key", "demo national platform's ID-hash",
                 "ARCHIVE_SIGNING_KEY",
                 "without a password", "must neither own audit_log nor be a superuser"):
        assert part in text, part
    assert "\n" not in text
    safe_keys = dataclasses.replace(unsafe, id_hash_key=b"k" * 32, id_keys={"k1": b"\1" * 32}, id_key_current="k1",
                                    audit_key=b"a" * 32, platform_id_hash_key=b"p" * 32,
                                    signing_key_pem=base64.b64encode(b"x").decode())  # ARCHIVE_SIGNING_KEY
    with pytest.raises(SetupError) as refused:
        make_services(database_url, s3_url, safe_keys)
    assert "demo" not in str(refused.value) and "ARCHIVE_SIGNING_KEY" not in str(refused.value)  # keys pass now
    short = dataclasses.replace(safe_keys, audit_key=b"short")
    assert any("at least 32 bytes" in str(p) for p in short.production_problems())


def test_the_role_check_tells_an_owner_from_an_application_role(services):
    from devservices.production import app_role_owns_the_audit_trail
    from storage.db import Database

    assert app_role_owns_the_audit_trail(services.db)  # the tests' role: a superuser
    role = "app_" + services.staging_bucket.split("-")[1]
    with services.db.transaction() as cur:
        cur.execute(f"CREATE ROLE {role} LOGIN")
        cur.execute(f"GRANT SELECT, INSERT ON audit_log TO {role}")
    try:
        assert not app_role_owns_the_audit_trail(Database(services.db.url.replace("//archive@", f"//{role}@")))
    finally:
        with services.db.transaction() as cur:
            cur.execute(f"DROP OWNED BY {role}")
            cur.execute(f"DROP ROLE {role}")


def test_production_never_generates_a_signing_key(tmp_path, monkeypatch):
    from transfer.signing import Signer

    monkeypatch.delenv("ARCHIVE_SIGNING_KEY", raising=False)
    with pytest.raises(SetupError, match="ARCHIVE_SIGNING_KEY"):
        Signer.from_pem_or_file("", tmp_path / "k.pem", generate=False)
    Signer.from_pem_or_file("", tmp_path / "k.pem")
    assert (tmp_path / "k.pem").stat().st_mode & 0o777 == 0o600


def test_serving_beyond_loopback_needs_tls(capsys):
    from cli.main import main

    assert main(["serve", "--host", "0.0.0.0"]) == 2
    assert "needs TLS" in capsys.readouterr().err


def test_rotating_the_id_key_re_encrypts_every_number(world, monkeypatch, capsys):
    import base64

    from access.idcipher import IdCipher
    from cli.main import main

    services = world["services"]
    new = base64.b64encode(b"\7" * 32).decode()
    demo = base64.b64encode(services.settings.id_keys["demo"]).decode()
    monkeypatch.setenv("ARCHIVE_ID_KEYS", f"k2={new},demo={demo}")
    monkeypatch.setenv("ARCHIVE_DATABASE_URL", services.db.url)
    monkeypatch.setenv("ARCHIVE_OBJECT_ROOT", "/tmp/archive-rotate-test-objects")
    assert main(["keys", "rotate-ids"]) == 0
    with services.db.transaction() as cur:
        cur.execute("SELECT id_number_encrypted FROM personnel_files WHERE file_number = %s", (FILE,))
        stored = cur.fetchone()["id_number_encrypted"]
    assert stored.startswith("k2:")
    assert IdCipher("k2", {"k2": b"\7" * 32}).decrypt(stored, FILE) == ID


def test_the_audit_trail_is_for_auditors_and_lists_by_file(world):
    rows = logged_in(world["services"], "auditor").get("/api/audit", params={"file": FILE}).json()["rows"]
    assert rows and all(FILE in r["file_numbers"] or r["target"] == FILE for r in rows)
    assert {"client", "actor", "at", "action"} <= set(rows[0])
    assert dt.datetime.fromisoformat(rows[0]["at"])


@pytest.mark.parametrize("written", ["5 2 0 1 0 3 1 9 6 8 0 4 0 1 1 2 5 2", "520103 19680401 1252",
                                     "520103-19680401-1252", "５２０１０３１９６８０４０１１２５２",
                                     "520103196804011252", "52010319680401125x"])
def test_an_id_number_however_written_is_masked(written):
    from catalog.idnumber import mask_ids

    masked = mask_ids(f"身份证号：{written}。")
    assert "19680401" not in masked.replace(" ", "").replace("-", "") and "*" * 8 in masked, masked


def test_an_id_number_typed_into_a_title_or_remark_is_masked():
    from catalog.manifest import parse_manifest

    data = ("档号,姓名,身份证号,类号,序号,材料名称,形成时间,份数,页数,备注,页面文件\n"
            f"GZ-X,张三,{ID},1,1,身份证复印件 {ID},2001,1,1,原号 {ID},p.jpg\n").encode()
    catalog, _ = parse_manifest(data)
    m = catalog.files[0].materials[0]
    assert ID not in m.title + m.remarks and "520103********1252" in m.title


def test_an_unknown_user_answers_like_a_known_one(world):
    services = world["services"]
    add_user(services, "known-one", "staff", A)
    client = web_client(services)
    known = [client.post("/api/login", data={"username": "known-one", "password": "x" * 12}).json()["detail"]
             for _ in range(6)]
    unknown = [client.post("/api/login", data={"username": "nobody-here", "password": "x" * 12}).json()["detail"]
               for _ in range(6)]
    strip = [re.sub(r"\d\d:\d\d", "HH:MM", t) for t in known]
    assert strip == [re.sub(r"\d\d:\d\d", "HH:MM", t) for t in unknown] and "锁定" in strip[-1]


def test_a_lock_that_ran_out_starts_the_count_again(world):
    services = world["services"]
    add_user(services, "was-locked", "staff", A)
    with services.db.transaction() as cur:
        cur.execute("UPDATE users SET failed_logins = 6, locked_until = now() - interval '1 minute'"
                    " WHERE username = 'was-locked'")
    client = web_client(services)
    res = client.post("/api/login", data={"username": "was-locked", "password": "wrong-once"})
    assert "锁定" not in res.json()["detail"]
    assert client.post("/api/login", data={"username": "was-locked", "password": PASSWORD}).status_code == 200


def test_a_new_password_ends_the_sessions_and_polling_keeps_none_alive(world):
    from access import accounts

    services = world["services"]
    add_user(services, "changes", "staff", A)
    client = logged_in(services, "changes")
    secret = client.cookies.get(COOKIE)
    with services.db.transaction() as cur:
        cur.execute("UPDATE sessions SET last_seen = now() - interval '20 minutes'"
                    " WHERE token_sha256 = encode(sha256(%s::bytea), 'hex')", (secret,))
    assert client.get("/api/batches", headers={"X-Archive-Poll": "1"}).status_code == 200
    with services.db.transaction() as cur:
        cur.execute("SELECT now() - last_seen > interval '19 minutes' AS idle FROM sessions"
                    " WHERE token_sha256 = encode(sha256(%s::bytea), 'hex')", (secret,))
        assert cur.fetchone()["idle"]  # the page polling did not make the person active
        accounts.set_password(cur, "changes", PASSWORD + "-new")
    assert client.get("/api/batches").status_code == 401


def test_production_refuses_every_request_not_only_the_first(database_url, s3_url, monkeypatch):
    monkeypatch.setenv("ARCHIVE_ENV", "production")
    monkeypatch.setenv("ARCHIVE_DATABASE_URL", database_url)
    monkeypatch.setenv("ARCHIVE_S3_ENDPOINT_URL", s3_url)
    from fastapi.testclient import TestClient

    from web.app import create_app

    client = TestClient(create_app(), base_url="https://127.0.0.1", headers={"Origin": "https://127.0.0.1"})
    for _ in range(3):
        res = client.post("/api/login", data={"username": "x", "password": "y" * 12})
        assert res.status_code == 503 and "ARCHIVE" not in res.text  # refused, and says nothing of why


def test_an_unknown_caller_cannot_flood_the_trail(pg_server, s3_url):
    settings = dataclasses.replace(Settings.from_env(), refusals_per_minute=5)
    services = make_services(new_database(pg_server), s3_url, settings)
    client = web_client(services)
    codes = [client.get("/api/batches").status_code for _ in range(8)]
    assert codes == [401] * 5 + [429] * 3
    with services.db.transaction() as cur:
        cur.execute("SELECT count(*) AS n FROM audit_log WHERE outcome = 'denied'")
        assert cur.fetchone()["n"] == 5


def test_the_chain_cannot_be_made_anew_without_the_key_nor_cut_short_unnoticed(services):
    _chain(services, 4)
    with services.db.transaction() as cur:
        head = audit.head(cur)
    _chain(services, 2)
    _tamper(services, "DELETE FROM audit_log WHERE seq > 4")
    with services.db.transaction() as cur:
        assert audit.verify(cur).intact  # a cut from the end leaves no gap...
        cut = audit.verify(cur, f"6:{'0' * 64}")
        assert not cut.intact and cut.first_bad == 5  # ...but an exported head shows it
        assert audit.verify(cur, head).intact
    # an edit with the chain recomputed the way a key-less editor could (plain SHA-256)
    import hashlib

    import rfc8785

    with services.db.transaction() as cur:
        rows = [audit.AuditRow(**r) for r in (cur.execute("SELECT * FROM audit_log ORDER BY seq") or cur.fetchall())]
    prev, fixes = audit.GENESIS, []
    for row in rows:
        row = dataclasses.replace(row, target="edited" if row.seq == 2 else row.target)
        digest = hashlib.sha256(prev.encode() + rfc8785.dumps(row.content())).hexdigest()
        fixes.append((row.seq, row.target, prev, digest))
        prev = digest
    _tamper(services, ";".join(f"UPDATE audit_log SET target = '{t}', prev_hash = '{p}', hash = '{h}' WHERE seq = {s}"
                               for s, t, p, h in fixes))
    with services.db.transaction() as cur:
        assert audit.verify(cur).first_bad == 1


def test_another_agencys_hand_in_of_the_same_scans_stays_out_of_the_history(world, tmp_path):
    services = world["services"]
    folder = _first_file_batch(tmp_path)
    for page in (folder / "pages").iterdir():
        page.rename(page.with_name("B-secret-" + page.name))
    submit_folder(folder, services, agency=B)
    view = logged_in(services, "arch-a").get(f"/api/files/{FILE}").json()
    assert "B-secret" not in json.dumps(view, ensure_ascii=False)


def test_a_path_named_by_an_id_number_is_masked_in_the_report(world, tmp_path):
    from stages.report import batch_report

    services = world["services"]
    folder = _first_file_batch(tmp_path)
    (folder / "pages" / f"{ID}.jpg").write_bytes(b"not a scan")
    sub = submit_folder(folder, services)
    from stages.intake import intake_batch

    intake_batch(sub.batch_id, services)
    assert not ID_LIKE.search(json.dumps(batch_report(sub.batch_id, services), ensure_ascii=False))
