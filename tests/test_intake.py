"""Intake on real PostgreSQL and S3: bad items are named and held back, the rest goes on,
and every file handed in is kept verbatim."""

import io
import shutil

import pytest
from PIL import Image

import stages.intake
from catalog.manifest import TEMPLATE_HEADER
from stages.intake import ChecksNotDone, check_unit, finish_intake, intake_batch, load_catalog, plan_checks
from stages.submit import submit_folder
from storage.objects import sha256_hex
from tests.conftest import SAMPLE_BATCH

ID = "11010519491231002X"


def _manifest(folder, rows):
    lines = [",".join(TEMPLATE_HEADER)]
    for seq, (cls, pages, files) in enumerate(rows, start=1):
        lines.append(",".join(["GZ-T1", "张三", ID, cls, str(seq), "材料", "2001-05-01", "1", str(pages), "",
                               ";".join(files)]))
    (folder / "manifest.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _batch(tmp_path):
    folder = tmp_path / "batch-under-test"
    (folder / "pages").mkdir(parents=True)
    good = sorted(SAMPLE_BATCH.glob("pages/*.jpg"))[:2]
    for p in good:
        shutil.copy(p, folder / "pages" / p.name)
    return folder, [f"pages/{p.name}" for p in good]


def test_good_material_goes_on_past_bad_pages(tmp_path, services):
    folder, good = _batch(tmp_path)
    (folder / "pages" / "fake.jpg").write_text("not an image at all")             # format by content
    data = (SAMPLE_BATCH / good[0]).read_bytes()
    (folder / "pages" / "cut.jpg").write_bytes(data[: len(data) // 3])            # truncated
    buf = io.BytesIO()
    Image.new("L", (400, 500), 255).save(buf, "PNG", dpi=(150, 150))
    (folder / "pages" / "lowres.png").write_bytes(buf.getvalue())                  # < 200 dpi
    buf = io.BytesIO()
    Image.new("L", (2480, 3508), 255).save(buf, "PDF", resolution=300)
    (folder / "pages" / "scan.pdf").write_bytes(buf.getvalue())                    # a PDF page is fine
    (folder / "pages" / "scan2.pdf").write_bytes(buf.getvalue() + b"\n")          # 1 page, catalog says 2
    (folder / "pages" / "stray.jpg").write_bytes(data + b"x")                      # not in the catalog
    _manifest(folder, [("1", 2, good), ("2", 1, ["pages/fake.jpg"]), ("3", 1, ["pages/cut.jpg"]),
                       ("7", 1, ["pages/lowres.png"]), ("10", 1, ["pages/missing.jpg"]),
                       ("4-1", 1, ["pages/scan.pdf"]), ("9-1", 1, ["pages/scan.pdf"]),
                       ("9-2", 2, ["pages/scan2.pdf"])])
    sub = submit_folder(folder, services)
    r = intake_batch(sub.batch_id, services)

    codes = {(f.code, f.item) for f in r.findings}
    assert ("scan.format", "pages/fake.jpg") in codes
    assert ("scan.corrupt", "pages/cut.jpg") in codes
    assert ("scan.dpi_low", "pages/lowres.png") in codes
    assert ("link.extra_file", "pages/stray.jpg") in codes
    assert any(c == "link.missing_page" and "10-5" in item for c, item in codes)
    assert any(c == "link.shared_page" and "9-1-7" in item for c, item in codes)  # scan.pdf belongs to 4-1-6
    assert any(c == "link.page_count" and "9-2-8" in item for c, item in codes)
    assert all(f.message_zh and f.message_en for f in r.findings)
    kept = [m.code for m in load_catalog(sub.batch_id, services).files[0].materials]
    assert kept == ["1-1", "4-1-6"]
    assert (r.accepted, r.rejected) == (5, 3)  # 2 good, 2 pdf, stray; fake, cut, lowres

    # nothing handed in is lost: every file is in staging, byte for byte
    with services.db.transaction() as cur:
        cur.execute("SELECT path, sha256, staging_key FROM batch_files WHERE batch_id = %s", (sub.batch_id,))
        rows = cur.fetchall()
    handed_in = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert sorted(r["path"] for r in rows) == handed_in
    for row in rows:  # the bytes of the file handed in, not only the hash the system recorded
        original = (folder / row["path"]).read_bytes()
        assert services.store.get(services.staging_bucket, row["staging_key"]) == original, row["path"]
        assert row["sha256"] == sha256_hex(original), row["path"]


def test_same_batch_twice_is_recognised(tmp_path, services):
    folder, good = _batch(tmp_path)
    _manifest(folder, [("1", 2, good)])
    first = submit_folder(folder, services)
    renamed = folder.rename(tmp_path / "another-name")
    second = submit_folder(renamed, services)
    assert first.new and not second.new and second.batch_id == first.batch_id
    assert services.db.count("batches") == 1
    assert intake_batch(first.batch_id, services).reused is False
    assert intake_batch(first.batch_id, services).reused is True


def test_batch_without_manifest_is_reported_not_crashed(tmp_path, services):
    folder, _ = _batch(tmp_path)
    sub = submit_folder(folder, services)
    r = intake_batch(sub.batch_id, services)
    assert [f.code for f in r.findings if f.severity == "error"] == ["batch.manifest"]
    assert r.files == 0


def test_repeated_page_rejected_and_blank_page_flagged_not_dropped(tmp_path, services):
    folder, good = _batch(tmp_path)
    shutil.copy(folder / good[0], folder / "pages" / "again.jpg")  # the same scan under another name
    buf = io.BytesIO()
    Image.new("L", (2480, 3508), 252).save(buf, "JPEG", dpi=(300, 300))
    (folder / "pages" / "blank.jpg").write_bytes(buf.getvalue())
    _manifest(folder, [("1", 2, good), ("2", 1, ["pages/again.jpg"]), ("3", 1, ["pages/blank.jpg"])])
    sub = submit_folder(folder, services)
    r = intake_batch(sub.batch_id, services)
    codes = {(f.code, f.item): f for f in r.findings}
    assert good[0] in codes[("scan.duplicate", "pages/again.jpg")].message_en
    assert codes[("scan.blank", "pages/blank.jpg")].severity == "warning"
    assert [m.code for m in load_catalog(sub.batch_id, services).files[0].materials] == ["1-1", "3-3"]


def test_page_numbering_out_of_order_and_gaps_are_warned():
    from catalog.manifest import Material, PersonnelFile
    from intake.linkage import check_page_order

    def pf(*materials):
        return PersonnelFile("GZ-9", "张三", "11010519491231002X",
                             [Material(c, 1, "材料", "2001", len(p), list(p)) for c, p in materials])

    ok = pf(("1", ["p/GZ-9-0001.jpg", "p/GZ-9-0002.jpg"]), ("4-1", ["p/GZ-9-0003.jpg"]), ("10", ["p/GZ-9-0004.jpg"]))
    assert check_page_order(ok) == []
    swapped = pf(("2", ["p/GZ-9-0001.jpg"]), ("1", ["p/GZ-9-0002.jpg"]))  # class 1 comes first
    assert [f.code for f in check_page_order(swapped)] == ["link.out_of_order"]
    gap = pf(("1", ["p/GZ-9-0001.jpg", "p/GZ-9-0004.jpg"]))
    (finding,) = check_page_order(gap)
    assert finding.code == "link.numbering_gap" and finding.severity == "warning" and "0004" in finding.message_en
    assert check_page_order(pf(("1", ["p/front.jpg", "p/back.jpg"]))) == []  # not numbered: not judged


def test_large_batches_are_inspected_in_worker_processes_with_the_same_verdicts(services, monkeypatch):
    import stages.intake
    from intake.scanfile import inspect_scan

    monkeypatch.setattr(stages.intake, "PARALLEL_FROM", 1)  # the 9-page sample takes the worker path
    sub = submit_folder(SAMPLE_BATCH, services)
    r = intake_batch(sub.batch_id, services)
    assert (r.accepted, r.rejected) == (9, 0)
    with services.db.transaction() as cur:
        cur.execute("SELECT path, dpi, skew_degrees FROM batch_files WHERE batch_id = %s AND role = 'page'"
                    " ORDER BY path", (sub.batch_id,))
        rows = cur.fetchall()
    for row in rows:  # what the workers found is what the same check finds in this process
        info, _ = inspect_scan((SAMPLE_BATCH / row["path"]).read_bytes(), row["path"])
        assert (row["dpi"], row["skew_degrees"]) == (info.dpi, pytest.approx(info.skew, abs=1e-6))


def _a4(draw_on=None) -> bytes:
    from PIL import ImageDraw, ImageFont

    from sample_scans.render import available_fonts

    img = Image.new("L", (2480, 3508), 255)
    if draw_on:
        draw_on(ImageDraw.Draw(img), lambda pt, style="song": ImageFont.truetype(available_fonts()[style],
                                                                               round(pt / 72 * 300)))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=80, dpi=(300, 300))
    return buf.getvalue()


@pytest.mark.parametrize("line", ["同意", "负责人签字：", "2020年5月20日"])
def test_a_page_of_one_short_line_is_not_blank(line):
    from intake.scanfile import inspect_scan
    from ocr.gates import BLANK_INK
    from ocr.preprocess import ink_ratio, to_gray

    data = _a4(lambda d, font: d.text((700, 1500), line, font=font(12), fill=0))
    assert ink_ratio(to_gray(Image.open(io.BytesIO(data)))) < BLANK_INK  # the old rule called it blank
    info, findings = inspect_scan(data, "p.jpg")
    assert info is not None and "scan.blank" not in {f.code for f in findings}


def test_a_blank_page_with_specks_dust_and_punched_holes_is_blank():
    import random

    from intake.scanfile import inspect_scan

    rng = random.Random(5)

    def scanner_marks(draw, font):
        for _ in range(300):  # specks and dust, 0.1-0.8 mm
            x, y, r = rng.uniform(0, 2480), rng.uniform(0, 3508), rng.uniform(0.6, 4.7)
            draw.ellipse([x - r, y - r, x + r, y + r], fill=rng.randint(0, 90))
        for cy in (1354, 2154):  # two punched holes 6 mm across, 12 mm from the left edge
            draw.ellipse([106, cy - 35, 177, cy + 35], fill=40)
        draw.line([(500, 900), (520, 1200)], fill=50, width=2)  # a hair
    info, findings = inspect_scan(_a4(scanner_marks), "back.jpg")
    assert "scan.blank" in {f.code for f in findings}


@pytest.mark.parametrize(("size", "dpi"), [((1, 1), 300), ((300, 300), 300), ((2480, 3508), 50)])
def test_an_image_that_cannot_be_a_page_is_refused_naming_its_size(size, dpi):
    from intake.scanfile import inspect_scan

    buf = io.BytesIO()
    Image.new("L", size, 255).save(buf, "PNG", dpi=(dpi, dpi))
    info, findings = inspect_scan(buf.getvalue(), "p.png")
    assert info is None and [f.code for f in findings][-1] == "scan.page_size"
    assert ("scan.dpi_low" in {f.code for f in findings}) == (dpi < 200)  # a wrong resolution named too
    mm = f"{size[0] / dpi * 25.4:.0f} x {size[1] / dpi * 25.4:.0f} mm"
    assert mm in findings[-1].message_en and f"{size[0]} x {size[1]} px" in findings[-1].message_en


def test_an_id_card_scanned_alone_is_a_page():
    from intake.scanfile import inspect_scan

    buf = io.BytesIO()
    Image.new("L", (1011, 638), 255).save(buf, "PNG", dpi=(300, 300))  # 85.6 x 54 mm
    info, findings = inspect_scan(buf.getvalue(), "id.png")
    assert info is not None and "scan.page_size" not in {f.code for f in findings}


def test_check_units_share_the_pages_and_the_verdicts_wait_for_all(tmp_path, services, monkeypatch):
    """Units of 2 files: each reads only its own; a unit that ran before reads nothing again; the
    batch is not validated while a unit is missing; together they give intake_batch's verdicts."""
    folder, good = _batch(tmp_path)
    (folder / "pages" / "fake.jpg").write_text("not an image at all")
    (folder / "pages" / "twice.jpg").write_bytes((SAMPLE_BATCH / good[0]).read_bytes())  # a repeated page
    _manifest(folder, [("1", 2, good), ("2", 1, ["pages/fake.jpg"]), ("3", 1, ["pages/twice.jpg"])])
    sub = submit_folder(folder, services)
    units = plan_checks(sub.batch_id, services, unit_files=2)
    paths = [p for u in units for p in u.paths]
    assert len(units) == 2 and sorted(paths) == sorted([*good, "pages/fake.jpg"])  # the repeat is refused unread

    read = []
    real = stages.intake.inspect_scan
    monkeypatch.setattr(stages.intake, "inspect_scan", lambda data, item: read.append(item) or real(data, item))
    first = check_unit(sub.batch_id, services, units[0].paths, workers=1)
    assert (first.checked, first.reused) == (len(units[0].paths), 0) and read == units[0].paths
    with pytest.raises(ChecksNotDone) as waiting:
        finish_intake(sub.batch_id, services)
    assert waiting.value.item == units[1].paths[0]
    with services.db.transaction() as cur:
        cur.execute("SELECT count(*) AS n FROM events WHERE event_type = 'validated'")
        assert cur.fetchone()["n"] == 0                          # nothing recorded half-done
    again = check_unit(sub.batch_id, services, units[0].paths, workers=1)  # a retried unit
    assert (again.checked, again.reused) == (0, len(units[0].paths)) and len(read) == len(units[0].paths)
    assert plan_checks(sub.batch_id, services, unit_files=2) == [units[1]._replace(number=0)]
    check_unit(sub.batch_id, services, units[1].paths, workers=1)
    r = finish_intake(sub.batch_id, services)
    assert sorted(read) == sorted(paths)                          # each file read once
    assert (r.accepted, r.rejected) == (2, 2)
    codes = {(f.code, f.item) for f in r.findings}
    assert {("scan.format", "pages/fake.jpg"), ("scan.duplicate", "pages/twice.jpg")} <= codes
    assert plan_checks(sub.batch_id, services) == [] and intake_batch(sub.batch_id, services).reused
    assert services.db.count("scan_checks") == 0  # kept in the verdicts now, not twice
