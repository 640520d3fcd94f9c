"""Batches handed in as zips (unsafe members refused by name, the rest goes on) and uploads
that resume after an interruption without sending anything twice."""

import stat
import zipfile

import pytest

from errors import BadInput
from stages.intake import intake_batch, load_catalog
from stages.services import Services
from stages.submit import submit_folder, submit_path
from storage.localstore import LocalObjectStore
from storage.objects import sha256_hex
from tests.conftest import SAMPLE_BATCH, token, web_client

MANIFEST = ("档号,姓名,身份证号,类号,序号,材料名称,形成时间,份数,页数,备注,页面文件\n"
            "GZ-Z1,张三,11010519491231002X,1,1,登记表,2001-05-01,1,1,,pages/a.jpg\n"
            "GZ-Z1,张三,11010519491231002X,2,1,自传,2001-06-01,1,1,,pages/b.jpg\n")


def _evil_zip(path):
    pages = sorted(SAMPLE_BATCH.glob("pages/*.jpg"))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.csv", MANIFEST)
        zf.write(pages[0], "pages/a.jpg")
        zf.write(pages[1], "pages/b.jpg")
        zf.writestr("../escape.txt", "outside the batch")
        zf.writestr("/etc/absolute.txt", "absolute")
        link = zipfile.ZipInfo("pages/link.jpg")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
        zf.writestr("pages/locked.jpg", "pretend ciphertext")
        zf.writestr("pages/bomb.jpg", b"\0" * (30 * 1024 * 1024))
        with pytest.warns(UserWarning):
            zf.writestr("pages/a.jpg", b"a second a.jpg")
    _set_encrypted_flag(path, b"pages/locked.jpg")


def _set_encrypted_flag(path, name: bytes) -> None:
    """zipfile cannot write encrypted members: set bit 0 of the member's flags in both headers."""
    data = bytearray(path.read_bytes())
    at = data.find(name)
    while at >= 0:
        if data[at - 30:at - 26] == b"PK\x03\x04":  # local file header, flags at +6
            data[at - 24] |= 0x1
        if data[at - 46:at - 42] == b"PK\x01\x02":  # central directory header, flags at +8
            data[at - 38] |= 0x1
        at = data.find(name, at + 1)
    path.write_bytes(bytes(data))


def test_zip_unsafe_members_refused_by_name_the_rest_goes_on(tmp_path, services):
    archive = tmp_path / "delivery.zip"
    _evil_zip(archive)
    sub = submit_path(archive, services)
    r = intake_batch(sub.batch_id, services)
    codes = {(f.code, f.item) for f in r.findings}
    for code, member in [("zip.path", "../escape.txt"), ("zip.path", "/etc/absolute.txt"),
                         ("zip.symlink", "pages/link.jpg"), ("zip.encrypted", "pages/locked.jpg"),
                         ("zip.bomb", "pages/bomb.jpg"), ("zip.duplicate", "pages/a.jpg")]:
        assert (code, f"delivery.zip:{member}") in codes, (code, member)
    assert not (tmp_path / "escape.txt").exists()
    assert [m.code for m in load_catalog(sub.batch_id, services).files[0].materials] == ["1-1", "2-1"]
    with services.db.transaction() as cur:  # the zip itself is kept verbatim
        cur.execute("SELECT sha256, staging_key FROM batch_files WHERE batch_id = %s AND role = 'container'",
                    (sub.batch_id,))
        row = cur.fetchone()
    assert row["sha256"] == sha256_hex(archive.read_bytes())
    assert sha256_hex(services.store.get(services.staging_bucket, row["staging_key"])) == row["sha256"]


def test_a_member_named_like_the_zip_is_kept_beside_the_zip(tmp_path, services):
    pages = sorted(SAMPLE_BATCH.glob("pages/*.jpg"))
    archive = tmp_path / "delivery.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("manifest.csv", MANIFEST)
        zf.write(pages[0], "pages/a.jpg")
        zf.write(pages[1], "pages/b.jpg")
        zf.writestr("delivery.zip", b"a member that happens to share the zip's name")
    sub = submit_path(archive, services)
    with services.db.transaction() as cur:
        cur.execute("SELECT path, sha256, role FROM batch_files WHERE batch_id = %s AND path LIKE 'delivery.zip%%'",
                    (sub.batch_id,))
        kept = {r["path"]: (r["sha256"], r["role"]) for r in cur.fetchall()}
    assert kept == {"delivery.zip": (sha256_hex(b"a member that happens to share the zip's name"), "page"),
                    "delivery.zip~1": (sha256_hex(archive.read_bytes()), "container")}


def test_not_a_batch(tmp_path, services):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(BadInput, match="neither a batch folder nor a zip"):
        submit_path(tmp_path / "notes.txt", services)
    with pytest.raises(BadInput, match="does not exist"):
        submit_path(tmp_path / "missing", services)


class FlakyStore(LocalObjectStore):
    def __init__(self, root, fail_after=None):
        super().__init__(root)
        self.puts, self.fail_after = 0, fail_after

    def put_stream(self, *args, **kwargs):
        if self.fail_after is not None and self.puts >= self.fail_after:
            raise ConnectionError("network dropped")
        self.puts += 1
        super().put_stream(*args, **kwargs)


def test_interrupted_upload_resumes_without_resending(tmp_path, services):
    store = FlakyStore(tmp_path / "objects", fail_after=4)
    flaky = Services(services.db, store, "staging", "archive")
    flaky.prepare()
    with pytest.raises(ConnectionError):
        submit_folder(SAMPLE_BATCH, flaky)
    assert services.db.count("batches") == 0  # nothing registered until every file is in
    resumed = FlakyStore(tmp_path / "objects")
    sub = submit_folder(SAMPLE_BATCH, Services(services.db, resumed, "staging", "archive"))
    assert sub.new and resumed.puts == 10 - 4  # only what was missing
    assert services.db.count("batch_files") == 10


def test_batch_report_json_and_page(tmp_path, services):
    from stages.report import batch_report

    archive = tmp_path / "delivery.zip"
    _evil_zip(archive)
    sub = submit_path(archive, services)
    intake_batch(sub.batch_id, services)
    report = batch_report(sub.batch_id, services)
    c = report["counts"]
    assert c["accepted"] + c["warned"] == 2 and c["rejected"] == 0 and c["materials_going_on"] == 2
    assert any(f["code"] == "zip.bomb" for f in report["other_findings"])
    client = web_client(services, token(services, ["batches:read"], services.agency))
    assert client.get(f"/api/batches/{sub.batch_id}/report").json()["batch_id"] == sub.batch_id
    page = client.get(f"/batches/{sub.batch_id}/report")
    assert page.status_code == 200 and "批次报告" in page.text and "压缩炸弹" in page.text
    assert client.get("/api/batches/nope/report").status_code == 404
