"""The staff web in a real headless Chromium (Debian's, driven by Playwright) against the app
served over HTTP, with batches run through the real Dagster assets on PostgreSQL and S3: staff of
one agency log in, upload and see only their agency's batches; an archivist logs in, searches
and opens the file view; both log out. The API's refusals are checked without a browser."""

from __future__ import annotations

import csv
import io
import shutil
import socket
import threading
import time
from pathlib import Path

import dagster as dg
import pytest
import uvicorn

from pipeline.resources import SignerResource
from pipeline.runner import BatchQueue
from stages.progress import ORDER
from stages.submit import submit_folder
from tests.conftest import PASSWORD, SAMPLE_BATCH, add_user, pipeline_resources, token, web_client
from web.app import create_app

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[1] / "test-artifacts"
# as root and on a closed network: no sandbox, and none of Chromium's calls home
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


def _small_batch(tmp_path: Path) -> Path:
    """The sample's first personnel file alone (3 pages): enough to watch every stage pass."""
    folder = tmp_path / "GZ-web-batch"
    rows = list(csv.reader(io.StringIO((SAMPLE_BATCH / "manifest.csv").read_text(encoding="utf-8"))))
    first = rows[1][0]
    keep = [rows[0]] + [r for r in rows[1:] if r[0] == first]
    (folder / "pages").mkdir(parents=True)
    for r in keep[1:]:
        for page in r[-1].split(";"):
            shutil.copy(SAMPLE_BATCH / page, folder / page)
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(keep)
    (folder / "manifest.csv").write_text(buf.getvalue(), encoding="utf-8")
    return folder


@pytest.fixture
def server(services, tmp_path):
    resources = pipeline_resources(services, signer=SignerResource(key_file=str(tmp_path / "signing.key")))
    with dg.DagsterInstance.ephemeral() as instance:
        runner = BatchQueue(resources, instance)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        web = uvicorn.Server(uvicorn.Config(create_app(services, launch=runner), host="127.0.0.1", port=port,
                                            log_level="warning"))
        thread = threading.Thread(target=web.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not web.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert web.started, "uvicorn did not start"
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            web.should_exit = True
            thread.join(10)
            runner.close(timeout=120)


def _log_in(page, server: str, username: str, start: str = "/") -> None:
    page.goto(server + start)
    page.wait_for_url("**/login**")  # a page of the staff web asks who you are first
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#submit")


def test_staff_and_an_archivist_in_chromium(server, services, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    assert CHROMIUM.exists(), "Debian's chromium is missing: run `make setup-tests` (apt-get install chromium)"
    add_user(services, "staff-gz", "staff", services.agency)
    add_user(services, "archivist-gz", "archivist", services.agency)
    add_user(services, "staff-gd", "staff", "440000")
    other = submit_folder(_small_batch(tmp_path / "other"), services, agency="440000")  # another agency's batch
    folder = _small_batch(tmp_path)
    SCREENSHOTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(locale="zh-CN", viewport={"width": 1280, "height": 900})
        _log_in(page, server, "staff-gz")
        expect(page.locator("h1")).to_contain_text("扫描批次上传")
        expect(page.locator("#who")).to_contain_text("staff-gz")

        page.set_input_files("#folder", str(folder))  # the folder picker, as staff use it
        page.click("#submit")
        expect(page.locator("#message")).to_contain_text("已登记批次", timeout=30_000)
        row = page.locator("tr[data-batch]").first
        seen = []
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            status = row.get_attribute("data-status")
            if not seen or seen[-1] != status:
                seen.append(status)
            if status == "archived":
                break
            time.sleep(0.2)
        assert seen[-1] == "archived", f"batch stuck at {seen[-1]}; seen {seen}"
        assert len(seen) >= 2 and seen == sorted(seen, key=ORDER.index), seen  # it moved, forwards only
        expect(row.locator("ol.steps li.done")).to_have_count(len(ORDER))
        expect(row).to_contain_text("接收 / accepted 3")
        batch_id = row.get_attribute("data-batch")
        expect(page.locator("tr[data-batch]")).to_have_count(1)  # not the other agency's batch
        assert other.batch_id != batch_id and page.request.get(server + f"/api/batches/{other.batch_id}").status == 404
        page.screenshot(path=str(SCREENSHOTS / "upload-page.png"), full_page=True)

        row.locator("a.report").click()
        page.wait_for_url(f"**/batches/{batch_id}/report")
        expect(page.locator("h1")).to_contain_text("批次报告")
        expect(page.locator("body")).to_contain_text("GZ-web-batch")
        page.screenshot(path=str(SCREENSHOTS / "batch-report.png"), full_page=True)
        download = page.request.get(server + f"/api/batches/{batch_id}/report?download=1")
        assert download.ok and "attachment" in download.headers["content-disposition"]
        assert download.json()["counts"]["rejected"] == 0
        assert page.request.get(server + "/api/search?q=杜豪").status == 403  # staff do not search files
        page.goto(server + "/")
        page.click("#logout")
        page.wait_for_url("**/login")
        assert page.request.get(server + "/api/batches").status == 401  # the session is over
        page.goto(server + "/login?next=/%5Cexample.com")  # a link that would send a login elsewhere
        page.fill("#username", "staff-gz")
        page.fill("#password", PASSWORD)
        page.click("#submit")
        page.wait_for_url(server + "/**")
        assert page.url.startswith(server), page.url
        page.click("#logout")
        page.wait_for_url("**/login")

        _log_in(page, server, "archivist-gz", "/search")  # back to the page asked for, once logged in
        page.wait_for_url("**/search")
        page.fill("#q", "杜豪")
        page.click("form#search button")
        hit = page.locator(".hit a.file").first
        expect(hit).to_contain_text("GZ2026-0070001")
        page.screenshot(path=str(SCREENSHOTS / "search.png"), full_page=True)
        hit.click()
        page.wait_for_url("**/files/GZ2026-0070001")
        expect(page.locator("#title")).to_contain_text("杜豪")
        expect(page.locator("#id")).to_contain_text("520103********1252")
        expect(page.locator(".material")).to_have_count(3)
        page.locator(".page summary").first.click()
        expect(page.locator(".page img").first).to_be_visible()
        page.screenshot(path=str(SCREENSHOTS / "file-view.png"), full_page=True)
        page.click("#logout")
        page.wait_for_url("**/login")
        browser.close()
    with services.db.transaction() as cur:
        cur.execute("SELECT actor, action FROM audit_log ORDER BY seq")
        trail = [(r["actor"], r["action"]) for r in cur.fetchall()]
    for expected in [("user:staff-gz", "login"), ("user:staff-gz", "batch.upload"), ("user:staff-gz", "batch.report"),
                     ("user:staff-gz", "logout"), ("user:archivist-gz", "search"), ("user:archivist-gz", "file.view"),
                     ("user:archivist-gz", "page.view")]:
        assert expected in trail, expected
    assert (SCREENSHOTS / "upload-page.png").stat().st_size > 10_000


def _staff(services):
    return web_client(services, token(services, ["batches:submit", "batches:read"], services.agency))


def test_upload_api_refuses_unsafe_paths_and_recognises_a_second_upload(services, tmp_path):
    client = _staff(services)
    bad = client.post("/api/batches", files=[("files", ("../../etc/passwd", b"x"))])
    assert bad.status_code == 422 and "../../etc/passwd" in bad.json()["detail"]
    assert client.post("/api/batches", files=[]).status_code == 422

    folder = _small_batch(tmp_path)
    parts = [("files", (f"{folder.name}/{p.relative_to(folder).as_posix()}", p.read_bytes()))
             for p in sorted(folder.rglob("*")) if p.is_file()]
    first = client.post("/api/batches", files=parts)
    assert first.status_code == 201 and first.json()["new"] and first.json()["files"] == 4
    batch_id = first.json()["batch_id"]
    assert batch_id.startswith("GZ-web-batch-")
    again = client.post("/api/batches", files=parts)
    assert again.status_code == 200 and again.json() == {**first.json(), "new": False}
    status = client.get(f"/api/batches/{batch_id}").json()
    assert status["status"] == "submitted" and status["stages"][0]["done"] and not status["stages"][1]["done"]
    assert [b["batch_id"] for b in client.get("/api/batches").json()["batches"]] == [batch_id]
    assert client.get("/api/batches/nope").status_code == 404


def test_manifest_template_download_parses_cleanly(services):
    from catalog.manifest import parse_manifest

    res = web_client(services).get("/manifest-template.csv")
    assert res.status_code == 200 and "attachment" in res.headers["content-disposition"]
    catalog, findings = parse_manifest(res.content)
    assert findings == [] and catalog.files[0].materials[0].pages == 2


def test_a_zip_uploaded_is_handed_in_as_the_zip(services, tmp_path):
    import zipfile

    folder = _small_batch(tmp_path)
    archive = tmp_path / "GZ-web-batch.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(folder).as_posix())
        zf.writestr("../escape.jpg", b"x")  # refused by name, the rest goes on
    client = _staff(services)
    res = client.post("/api/batches", files=[("files", (archive.name, archive.read_bytes(), "application/zip"))])
    assert res.status_code == 201 and res.json()["files"] == 5  # 4 members and the zip itself
    with services.db.transaction() as cur:
        cur.execute("SELECT path, role, findings FROM batch_files WHERE batch_id = %s ORDER BY path",
                    (res.json()["batch_id"],))
        rows = cur.fetchall()
    container = next(r for r in rows if r["role"] == "container")
    assert container["path"] == "GZ-web-batch.zip" and container["findings"][0]["code"] == "zip.path"
    broken = client.post("/api/batches", files=[("files", ("cut.zip", archive.read_bytes()[:100], "application/zip"))])
    assert broken.status_code == 422 and "cut.zip" in broken.json()["detail"]


def test_an_unreachable_database_is_one_readable_sentence(tmp_path):
    from stages.services import Services
    from storage.db import Database
    from storage.localstore import LocalObjectStore

    down = Services(Database("postgresql://u:secret@127.0.0.1:1/x"), LocalObjectStore(tmp_path), "s", "a")
    res = web_client(down, "pat_any").get("/api/batches")
    assert res.status_code == 503 and "服务暂不可用" in res.json()["detail"] and "secret" not in res.text
    assert "127.0.0.1:1" not in res.text  # what is wrong goes to the log, not to whoever asked
