"""A re-scanned material is a new version (issue 14, item 2), through Dagster on real PostgreSQL,
moto S3 and real OCR: the demo batch plus one more material (10-9 of GZ2026-0070001) whose page
is scan X, then the same batch with X replaced by a re-scan Y."""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import boto3
import pytest
from PIL import Image, ImageEnhance

from access.audit import Actor
from errors import NotFound
from sample_scans.render import Page, available_fonts
from search.query import Filters, search
from stages.history import file_history
from stages.submit import submit_folder
from storage.objects import content_key, sha256_hex
from tests.conftest import SAMPLE_BATCH, make_services, new_database
from tests.test_pipeline_e2e import materialize

FILE = "GZ2026-0070001"
EXTRA = "pages/GZ2026-0070001-0004.jpg"
PHRASE = "本人于二〇二〇年五月调入贵阳市某公司"


def _page() -> Image.Image:
    page = Page(available_fonts()["song"])
    page.title("情况说明")
    page.paragraph(PHRASE + "，从事质量管理工作，特此说明。")
    return page.image.convert("RGB")


def _batch(root: Path, name: str, scan: Image.Image) -> Path:
    folder = shutil.copytree(SAMPLE_BATCH, root / name)
    scan.save(folder / EXTRA, "JPEG", quality=90, dpi=(300, 300))
    rows = list(csv.reader(io.StringIO((folder / "manifest.csv").read_text(encoding="utf-8"))))
    person = next(r for r in rows if r[0] == FILE)
    rows.append([FILE, person[1], person[2], "10", "9", "情况说明", "2020-05-20", "1", "1", "", EXTRA])
    with open(folder / "manifest.csv", "w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return folder


@pytest.fixture(scope="module")
def rescanned(pg_server, s3_url, tmp_path_factory):
    root = tmp_path_factory.mktemp("rescan")
    services = make_services(new_database(pg_server), s3_url)
    key_file = root / "signing.pem"
    clean = _page()
    dark = ImageEnhance.Brightness(clean).enhance(0.55)  # too dark: staff scan it again
    first = submit_folder(_batch(root, "GZ2026-S007", dark), services)
    run_a = materialize(services, first.batch_id, key_file)
    second = submit_folder(_batch(root / "again", "GZ2026-S007", clean), services)
    run_b = materialize(services, second.batch_id, key_file)
    rerun_b = materialize(services, second.batch_id, key_file)
    x = sha256_hex((root / "GZ2026-S007" / EXTRA).read_bytes())
    y = sha256_hex((root / "again" / "GZ2026-S007" / EXTRA).read_bytes())
    return {"services": services, "a": first.batch_id, "b": second.batch_id, "run_a": run_a, "run_b": run_b,
            "rerun_b": rerun_b, "x": x, "y": y, "key_file": key_file}


def _material(services, class_code="10", seq=9) -> dict:
    with services.db.transaction() as cur:
        cur.execute("SELECT m.*, array_agg(p.source_sha256 ORDER BY p.page_no) AS scans FROM materials m"
                    " JOIN pages p USING (material_id) WHERE file_number = %s AND class_code = %s AND seq = %s"
                    " GROUP BY m.material_id", (FILE, class_code, seq))
        return cur.fetchone()


def test_the_second_batch_runs_clean_and_its_checks_pass(rescanned):
    assert rescanned["a"] != rescanned["b"]
    for run in ("run_a", "run_b", "rerun_b"):
        assert all(rescanned[run]["checks"].values()), (run, rescanned[run]["checks"])
    assert rescanned["run_b"]["meta"]["ocr"]["scans_ocred"] == 1  # only the re-scan


def test_the_rescan_is_the_current_version_with_a_new_pdf(rescanned):
    services = rescanned["services"]
    m = _material(services)
    assert m["version"] == 2 and m["batch_id"] == rescanned["b"] and m["scans"] == [rescanned["y"]]
    assert m["pdf_sha256"]
    with services.db.transaction() as cur:
        cur.execute("SELECT * FROM material_versions")
        old = cur.fetchall()
        cur.execute("SELECT count(*) AS n FROM materials WHERE version > 1")
        bumped = cur.fetchone()["n"]
    assert bumped == 1 and len(old) == 1  # nothing else of the batch became a new version
    v1 = old[0]
    assert (v1["material_id"], v1["version"], v1["batch_id"], v1["superseded_by"]) == \
        (m["material_id"], 1, rescanned["a"], rescanned["b"])
    assert [p["source_sha256"] for p in v1["pages"]] == [rescanned["x"]]
    assert v1["pdf_sha256"] and v1["pdf_sha256"] != m["pdf_sha256"]
    assert services.db.count("materials") == 10


def test_the_previous_version_stays_in_preservation_storage(rescanned):
    services = rescanned["services"]
    s3 = boto3.client("s3", endpoint_url=services.store.endpoint_url)
    with services.db.transaction() as cur:
        cur.execute("SELECT pdf_sha256, pages FROM material_versions")
        v1 = cur.fetchone()
    for sha in (v1["pdf_sha256"], rescanned["x"], v1["pages"][0]["ocr_sha256"]):
        body = s3.get_object(Bucket=services.archive_bucket, Key=content_key(sha))["Body"].read()
        assert sha256_hex(body) == sha


def test_the_file_history_lists_every_version_and_the_supersession(rescanned):
    services = rescanned["services"]
    history = file_history(FILE, services)
    versions = [(v.material, v.version, v.batch_id, v.current) for v in history.versions if v.material == "10-9"]
    assert versions == [("10-9", 1, rescanned["a"], False), ("10-9", 2, rescanned["b"], True)]
    superseded = [e for e in history.events if e.event_type == "superseded"]
    assert len(superseded) == 1 and superseded[0].detail["material"] == "10-9"
    assert superseded[0].detail["pages_changed"] is True


def test_search_and_transfer_use_the_current_version(rescanned):
    from transfer.package import catalog_of

    services = rescanned["services"]
    hits = search(services.db, PHRASE[:8], Filters(), id_hash_key=services.id_hash_key,
                  actor=Actor("test", "test")).hits
    assert [(h.file_number, h.material) for h in hits] == [(FILE, "10-9")]
    _, catalog, _ = catalog_of(services, FILE)  # what a transfer package of the file holds
    extra = next(m for m in catalog["materials"] if m["code"] == "10-9")
    assert [p["original_sha256"] for p in extra["pages"]] == [rescanned["y"]]
    assert extra["pdf_sha256"] == _material(services)["pdf_sha256"] and extra["version"] == 2


def test_a_rerun_of_the_new_batch_writes_nothing(rescanned):
    meta = rescanned["rerun_b"]["meta"]
    assert meta["index"]["rows_written"] == 0 and meta["archive"]["stored"] == 0


def test_running_the_older_batch_again_does_not_bring_the_old_scan_back(rescanned):
    services = rescanned["services"]
    again = materialize(services, rescanned["a"], rescanned["key_file"])
    assert all(again["checks"].values()), again["checks"]
    assert again["meta"]["index"]["rows_written"] == 0
    m = _material(services)
    assert m["version"] == 2 and m["scans"] == [rescanned["y"]]


def test_a_transfer_of_an_unknown_file_is_refused_by_name(rescanned):
    from stages.transfer import request_transfer

    services = rescanned["services"]
    with pytest.raises(NotFound) as refused:
        request_transfer(services, "GZ-NOPE", "440000", "工作调动", "张三", Actor("test", "test"))
    assert "GZ-NOPE" in refused.value.message_en and refused.value.item == "GZ-NOPE"
