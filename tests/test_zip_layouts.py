"""Zips as staff make them (issue 14, item 3): the batch folder zipped whole, by Python, by
Info-ZIP's `zip -r` and by Chinese Windows (GBK names, no UTF-8 flag), with the files desktop
tools add; and a batch folder carrying those files."""

from __future__ import annotations

import shutil
import struct
import subprocess
import zipfile
import zlib
from pathlib import Path

import pytest

from stages.intake import intake_batch, load_catalog
from stages.report import batch_report
from stages.submit import submit_folder, submit_path
from tests.conftest import SAMPLE_BATCH

JUNK = {"__MACOSX/GZ2026-S007/._manifest.csv": b"\0\5\26\7", "GZ2026-S007/.DS_Store": b"Bud1",
        "GZ2026-S007/pages/Thumbs.db": b"\xd0\xcf\x11\xe0", "GZ2026-S007/desktop.ini": b"[.ShellClassInfo]"}


def _members(top: str = "GZ2026-S007") -> list[tuple[str, Path]]:
    return [(f"{top}/{p.relative_to(SAMPLE_BATCH).as_posix()}", p) for p in sorted(SAMPLE_BATCH.rglob("*"))
            if p.is_file()]


def _assert_all_nine_go_on(services, batch_id: str) -> dict:
    r = intake_batch(batch_id, services)
    codes = sorted({f.code for f in r.findings})
    assert r.materials == 9 and r.rejected == 0, codes
    assert "batch.manifest" not in codes and "link.extra_file" not in codes and "scan.format" not in codes, codes
    report = batch_report(batch_id, services)
    assert report["counts"]["materials_going_on"] == 9 and report["counts"]["refused_items"] == 0
    return report


def test_the_batch_folder_zipped_whole_with_desktop_files(tmp_path, services):
    archive = tmp_path / "GZ2026-S007.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("GZ2026-S007/", b"")  # the folder entry Explorer and Finder write
        for name, path in _members():
            zf.write(path, name)
        for name, data in JUNK.items():
            zf.writestr(name, data)
    sub = submit_path(archive, services)
    assert sub.batch_id.startswith("GZ2026-S007-")
    report = _assert_all_nine_go_on(services, sub.batch_id)
    notes = [f for f in report["other_findings"] + [g for r in report["files"] for g in r["findings"]]
             if f["code"] == "zip.desktop_files"]
    assert len(notes) == 1 and notes[0]["severity"] == "warning" and "Thumbs.db" in notes[0]["message_en"]


def test_made_by_info_zip(tmp_path, services):
    shutil.copytree(SAMPLE_BATCH, tmp_path / "GZ2026-S007")
    (tmp_path / "GZ2026-S007" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    subprocess.run(["zip", "-qr", "delivery.zip", "GZ2026-S007"], cwd=tmp_path, check=True)
    _assert_all_nine_go_on(services, submit_path(tmp_path / "delivery.zip", services).batch_id)


def _gbk_zip(path: Path, members: list[tuple[str, bytes]], unicode_field: bool = False) -> None:
    """A zip as Chinese Windows writes it: names in GBK and no UTF-8 flag; with `unicode_field`,
    WinRAR's way too: an Info-ZIP Unicode Path extra field carrying the UTF-8 name (and a
    legacy name that is not what it says, to show the field wins)."""
    original = zipfile.ZipInfo._encodeFilenameFlags

    def gbk(self):
        return self.filename.encode("gbk"), self.flag_bits & ~0x800

    zipfile.ZipInfo._encodeFilenameFlags = gbk
    try:
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in members:
                info = zipfile.ZipInfo(name if not unicode_field else name.replace("张三", "??"))
                if unicode_field:
                    raw = info.filename.encode("gbk")
                    body = b"\x01" + struct.pack("<I", zlib.crc32(raw)) + name.encode("utf-8")
                    info.extra = struct.pack("<HH", 0x7075, len(body)) + body
                zf.writestr(info, data)
    finally:
        zipfile.ZipInfo._encodeFilenameFlags = original


CHINESE_MANIFEST = ("档号,姓名,身份证号,类号,序号,材料名称,形成时间,份数,页数,备注,页面文件\n"
                    "GZ-G1,张三,11010519491231002X,1,1,登记表,2001-05-01,1,1,,页面/张三-0001.jpg\n"
                    "GZ-G1,张三,11010519491231002X,2,1,自传,2001-06-01,1,1,,页面/张三-0002.jpg\n")


@pytest.mark.parametrize("unicode_field", [False, True], ids=["gbk-names", "unicode-path-field"])
def test_names_from_chinese_windows_come_out_right(tmp_path, services, unicode_field):
    pages = sorted(SAMPLE_BATCH.glob("pages/*.jpg"))
    archive = tmp_path / "扫描批次.zip"
    _gbk_zip(archive, [("扫描批次/目录.csv", CHINESE_MANIFEST.encode("utf-8")),
                       ("扫描批次/页面/张三-0001.jpg", pages[0].read_bytes()),
                       ("扫描批次/页面/张三-0002.jpg", pages[1].read_bytes())], unicode_field)
    assert "目录".encode("gbk") in archive.read_bytes()  # really GBK, and no member says UTF-8
    assert not any(i.flag_bits & 0x800 for i in zipfile.ZipFile(archive).infolist())
    sub = submit_path(archive, services)
    r = intake_batch(sub.batch_id, services)
    assert r.materials == 2 and r.rejected == 0, [str(f) for f in r.findings]
    materials = load_catalog(sub.batch_id, services).files[0].materials
    assert [m.page_files for m in materials] == [["页面/张三-0001.jpg"], ["页面/张三-0002.jpg"]]


def test_a_batch_folder_with_desktop_files_notes_and_ignores_them(tmp_path, services):
    folder = shutil.copytree(SAMPLE_BATCH, tmp_path / "GZ2026-S007")
    for name in ("Thumbs.db", "desktop.ini", ".DS_Store", "pages/._GZ2026-0070001-0001.jpg"):
        (folder / name).write_bytes(b"\0junk")
    sub = submit_folder(folder, services)
    report = _assert_all_nine_go_on(services, sub.batch_id)
    ignored = sorted(r["path"] for r in report["files"] if r["status"] == "ignored")
    assert ignored == [".DS_Store", "Thumbs.db", "desktop.ini", "pages/._GZ2026-0070001-0001.jpg"]
    assert all(r["findings"][0]["code"] == "batch.desktop_file" for r in report["files"] if r["status"] == "ignored")


def test_names_that_only_look_inside_the_top_folder_stay_inside(tmp_path):
    """An attacker's members: a doubled slash or backslashes that would start at the root once
    the top folder is stripped, and names that land on one file after normalising."""
    from intake.zipsafe import safe_extract

    outside = tmp_path / "outside"
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("B/manifest.csv", b"x")
        zf.writestr(f"B/{outside}/doubled.txt", b"escape?")           # B//tmp/.../doubled.txt
        zf.writestr(f"B\\{str(outside).replace('/', chr(92))}\\back.txt", b"escape?")
        zf.writestr("B/pages/dup.jpg", b"first")
        zf.writestr("B/./pages/dup.jpg", b"second")
    target = tmp_path / "target"
    target.mkdir()
    extraction = safe_extract(archive, target)
    assert not outside.exists()
    written = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
    assert all(not p.startswith("/") for p in written) and "manifest.csv" in written
    assert (target / "pages" / "dup.jpg").read_bytes() == b"first"
    assert [f.code for f in extraction.findings] == ["zip.duplicate"]


def test_a_compression_method_zipfile_cannot_read_is_refused_by_name(tmp_path, services):
    archive = tmp_path / "GZ2026-S007.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, path in _members():
            zf.write(path, name)
        zf.writestr("GZ2026-S007/pages/extra.jpg", b"deflate64 " * 100)
    data = bytearray(archive.read_bytes())
    name = b"GZ2026-S007/pages/extra.jpg"
    at = data.find(name)
    while at >= 0:  # compression method 9 (Deflate64, as Explorer writes large files) in both headers
        if data[at - 30:at - 26] == b"PK\x03\x04":
            data[at - 22:at - 20] = (9).to_bytes(2, "little")
        if data[at - 46:at - 42] == b"PK\x01\x02":
            data[at - 36:at - 34] = (9).to_bytes(2, "little")
        at = data.find(name, at + 1)
    archive.write_bytes(bytes(data))
    sub = submit_path(archive, services)
    r = intake_batch(sub.batch_id, services)
    assert ("zip.method", "GZ2026-S007.zip:GZ2026-S007/pages/extra.jpg") in {(f.code, f.item) for f in r.findings}
    assert r.materials == 9
