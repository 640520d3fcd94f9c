"""The bad-input corpus: one batch per kind of bad batch or page that staff hand in.

Every case starts from the same good batch (one personnel file, two one-page materials), adds
one defect, hands the batch in as a folder (or a zip) and runs intake on real PostgreSQL and
S3. Each asserts three things: the specific finding, naming the item, in Chinese and English;
that the rest of the batch went on (the two good materials, or every good page when the
defect is in the manifest itself); and that nothing handed in was lost (every file is in
staging byte for byte; a zip is kept whole, refused members included).
"""

from __future__ import annotations

import io
import stat
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from PIL import Image
from reportlab.lib import pdfencrypt
from reportlab.pdfgen import canvas

from catalog import idnumber
from catalog.manifest import TEMPLATE_HEADER
from intake import scanfile
from ocr.preprocess import rotate
from stages.intake import intake_batch, load_catalog
from stages.submit import submit_path
from storage.objects import sha256_hex
from tests.conftest import SAMPLE_BATCH
from tests.test_zip_and_upload import _set_encrypted_flag

ID = "11010519491231002X"
SAMPLES = sorted(SAMPLE_BATCH.glob("pages/*.jpg"))
GOOD_MATERIALS = {"1-1", "2-2"}


@dataclass
class Batch:
    folder: Path
    rows: list[list[str]] = field(default_factory=list)
    manifest: bytes | None = None          # set to hand in these bytes instead of the rows
    zip_members: Callable[[zipfile.ZipFile], None] | None = None
    after_zip: Callable[[Path], None] | None = None

    def row(self, file_number="GZ-C1", name="张三", id_number=ID, cls="4-1", seq="3", title="材料",
            formed="2001-05-01", pages="1", files="pages/GZ-C1-0003.jpg") -> None:
        self.rows.append([file_number, name, id_number, cls, seq, title, formed, "1", pages, "", files])

    def put(self, rel: str, data: bytes) -> None:
        (self.folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (self.folder / rel).write_bytes(data)


def _page(name: str, data: Callable[[], bytes]) -> Callable[[Batch], None]:
    """A third material, 4-1 sequence 3, whose one page is `data`."""
    def add(batch: Batch) -> None:
        batch.row(files=f"pages/{name}")
        batch.put(f"pages/{name}", data())
    return add


def _swap_pages(batch: Batch) -> None:
    batch.rows[0][10], batch.rows[1][10] = batch.rows[1][10], batch.rows[0][10]


def _image(img: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def _ink_page(dpi: int | None, fmt: str = "PNG") -> bytes:
    img = Image.new("L", (int(8.27 * (dpi or 300)), int(11.7 * (dpi or 300))), 255)
    img.paste(0, (200, 200, 600, 260))
    return _image(img, fmt, **({"dpi": (dpi, dpi)} if dpi else {}))


def _pdf(encrypt=None, pagesize=(595.27, 841.89)) -> bytes:
    buf = io.BytesIO()
    c = canvas.Canvas(buf, encrypt=encrypt, pagesize=pagesize)
    c.drawString(100, 700, "page")
    c.save()
    return buf.getvalue()


def _id_with_bad_birth_date() -> str:
    first17 = "11010519490230001"  # 30 February, check digit right
    return first17 + idnumber.check_digit(first17)


def _corrupt_member(path: Path) -> None:
    data = bytearray(path.read_bytes())
    at = data.find(b"CORRUPT-ME")
    data[at: at + 10] = b"XXXXXXXXXX"  # stored member: its CRC no longer matches
    path.write_bytes(bytes(data))


def _symlink(zf: zipfile.ZipFile) -> None:
    link = zipfile.ZipInfo("pages/link.jpg")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    zf.writestr(link, "/etc/passwd")


def _duplicate_name(zf: zipfile.ZipFile) -> None:
    with pytest.warns(UserWarning):
        zf.writestr("pages/GZ-C1-0001.jpg", b"a second copy under the same name")


# kind -> (defect, expected code, text the finding's item contains, severity, batch-level)
CASES: dict[str, tuple[Callable[[Batch], None], str, str, str, bool]] = {
    # the manifest as a whole
    "manifest_not_utf8_or_gbk": (lambda b: setattr(b, "manifest", b"\xff\xfe" + "档号".encode("utf-16-le")),
                                 "manifest.encoding", "manifest.csv", "error", True),
    "manifest_in_gbk": (lambda b: setattr(b, "manifest", "gbk"), "manifest.encoding_gb18030", "manifest.csv",
                        "warning", False),
    "manifest_lacks_column": (lambda b: setattr(b, "manifest", "no-id-column"), "manifest.columns", "manifest.csv",
                              "error", True),
    "manifest_empty": (lambda b: setattr(b, "manifest", b""), "manifest.empty", "manifest.csv", "error", True),
    "manifest_missing": (lambda b: setattr(b, "manifest", "none"), "batch.manifest", "{batch}", "error", True),
    # one catalog row (line 4: header, two good rows, then this one)
    "row_missing_value": (lambda b: b.row(file_number="GZ-C2", name=""), "manifest.missing_value",
                          "manifest.csv:4", "error", False),
    "id_check_digit": (lambda b: b.row(file_number="GZ-C2", id_number="110105194912310021"),
                       "manifest.id_number", "manifest.csv:4", "error", False),
    "id_birth_date": (lambda b: b.row(file_number="GZ-C2", id_number=_id_with_bad_birth_date()),
                      "manifest.id_number", "manifest.csv:4", "error", False),
    "class_code_unknown": (lambda b: b.row(cls="11"), "manifest.class_code", "manifest.csv:4", "error", False),
    "formation_date_invalid": (lambda b: b.row(formed="2001-02-30"), "manifest.formed", "manifest.csv:4",
                               "error", False),
    "sequence_not_a_number": (lambda b: b.row(seq="三"), "manifest.seq", "manifest.csv:4", "error", False),
    "page_count_zero": (lambda b: b.row(pages="0"), "manifest.pages", "manifest.csv:4", "error", False),
    "duplicate_sequence": (lambda b: b.row(cls="1", seq="1"), "manifest.duplicate_material", "manifest.csv:4",
                           "error", False),
    "file_number_two_people": (lambda b: b.row(name="李四"), "manifest.conflicting_person", "manifest.csv:4",
                               "error", False),
    # catalog <-> images
    "page_missing": (lambda b: b.row(), "link.missing_page", "4-1-3", "error", False),
    "page_not_in_catalog": (lambda b: b.put("pages/stray.jpg", SAMPLES[2].read_bytes()), "link.extra_file",
                            "pages/stray.jpg", "warning", False),
    "page_count_mismatch": (lambda b: (b.row(pages="2"), b.put("pages/GZ-C1-0003.jpg", SAMPLES[2].read_bytes())),
                            "link.page_count", "4-1-3", "error", False),
    "page_in_two_materials": (lambda b: b.row(files="pages/GZ-C1-0001.jpg"), "link.shared_page", "4-1-3",
                              "error", False),
    "pages_out_of_order": (_swap_pages, "link.out_of_order", "GZ-C1", "warning", False),
    "page_numbering_gap": (lambda b: (b.row(files="pages/GZ-C1-0009.jpg"),
                                      b.put("pages/GZ-C1-0009.jpg", SAMPLES[2].read_bytes())),
                           "link.numbering_gap", "GZ-C1", "warning", False),
    "material_with_rejected_page": (lambda b: (b.row(), b.put("pages/GZ-C1-0003.jpg", b"not an image")),
                                    "link.rejected_page", "4-1-3", "error", False),
    # page files
    "not_an_image": (_page("GZ-C1-0003.jpg", lambda: "扫描件".encode()), "scan.format",
                     "pages/GZ-C1-0003.jpg", "error", False),
    "unsupported_format": (_page("GZ-C1-0003.jpg", lambda: _image(Image.new("L", (900, 1200)), "GIF")),
                           "scan.format", "pages/GZ-C1-0003.jpg", "error", False),
    "truncated_image": (_page("GZ-C1-0003.jpg", lambda: SAMPLES[2].read_bytes()[:40_000]), "scan.corrupt",
                        "pages/GZ-C1-0003.jpg", "error", False),
    "broken_pdf": (_page("GZ-C1-0003.pdf", lambda: b"%PDF-1.4\n1 0 obj garbage"), "scan.pdf",
                   "pages/GZ-C1-0003.pdf", "error", False),
    "pdf_with_password": (_page("GZ-C1-0003.pdf", lambda: _pdf("secret")), "scan.pdf_encrypted",
                          "pages/GZ-C1-0003.pdf", "error", False),
    "pdf_encrypted_no_password": (_page("GZ-C1-0003.pdf", lambda: _pdf(pdfencrypt.StandardEncryption(
        "", ownerPassword="owner"))), "scan.pdf_encrypted", "pages/GZ-C1-0003.pdf", "error", False),
    "decompression_bomb": (_page("GZ-C1-0003.png", lambda: _image(Image.new("1", (16000, 16000)), "PNG")),
                           "scan.bomb", "pages/GZ-C1-0003.png", "error", False),
    "file_too_large": (_page("GZ-C1-0003.tif", lambda: _image(Image.new("L", (1500, 1500)), "TIFF")),
                       "scan.too_large", "pages/GZ-C1-0003.tif", "error", False),
    "resolution_below_200dpi": (_page("GZ-C1-0003.png", lambda: _ink_page(150)), "scan.dpi_low",
                                "pages/GZ-C1-0003.png", "error", False),
    "resolution_below_300dpi": (_page("GZ-C1-0003.png", lambda: _ink_page(240)), "scan.dpi_below_300",
                                "pages/GZ-C1-0003.png", "warning", False),
    "resolution_unrecorded": (_page("GZ-C1-0003.png", lambda: _ink_page(None)), "scan.dpi_unknown",
                              "pages/GZ-C1-0003.png", "warning", False),
    "one_pixel_image": (_page("GZ-C1-0003.jpg", lambda: _image(Image.new("L", (1, 1)), "JPEG", dpi=(300, 300))),
                        "scan.page_size", "pages/GZ-C1-0003.jpg", "error", False),
    "resolution_makes_it_bigger_than_a0": (_page("GZ-C1-0003.png", lambda: _image(
        Image.new("L", (2480, 3508), 255), "PNG", dpi=(50, 50))), "scan.page_size", "pages/GZ-C1-0003.png", "error",
        False),
    "pdf_page_of_a_stamp_size": (_page("GZ-C1-0003.pdf", lambda: _pdf(pagesize=(60, 60))), "scan.page_size",
                                 "pages/GZ-C1-0003.pdf", "error", False),
    "blank_page": (_page("GZ-C1-0003.jpg", lambda: _image(Image.new("L", (2480, 3508), 250), "JPEG",
                                                                  dpi=(300, 300))),
                   "scan.blank", "pages/GZ-C1-0003.jpg", "warning", False),
    "skewed_page": (_page("GZ-C1-0003.jpg", lambda: _image(rotate(Image.open(SAMPLES[0]).convert("L"), 4),
                                                                   "JPEG", dpi=(300, 300))),
                    "scan.skewed", "pages/GZ-C1-0003.jpg", "warning", False),
    "repeated_page": (_page("GZ-C1-0003.jpg", lambda: SAMPLES[0].read_bytes()), "scan.duplicate",
                      "pages/GZ-C1-0003.jpg", "error", False),
    # the zip it came in
    "zip_path_traversal": (lambda b: setattr(b, "zip_members", lambda z: z.writestr("../escape.jpg", b"x")),
                           "zip.path", "../escape.jpg", "error", False),
    "zip_absolute_path": (lambda b: setattr(b, "zip_members", lambda z: z.writestr("/etc/cron.d/x", b"x")),
                          "zip.path", "/etc/cron.d/x", "error", False),
    "zip_symlink": (lambda b: setattr(b, "zip_members", _symlink), "zip.symlink", "pages/link.jpg", "error", False),
    "zip_encrypted_member": (lambda b: (setattr(b, "zip_members", lambda z: z.writestr("pages/locked.jpg", b"x")),
                                        setattr(b, "after_zip", lambda p: _set_encrypted_flag(p, b"pages/locked.jpg"))),
                             "zip.encrypted", "pages/locked.jpg", "error", False),
    "zip_duplicate_name": (lambda b: setattr(b, "zip_members", _duplicate_name), "zip.duplicate",
                           "pages/GZ-C1-0001.jpg", "error", False),
    "zip_bomb": (lambda b: setattr(b, "zip_members", lambda z: z.writestr("pages/bomb.jpg", b"\0" * 30_000_000)),
                 "zip.bomb", "pages/bomb.jpg", "error", False),
    "zip_member_corrupt": (lambda b: (setattr(b, "zip_members", lambda z: z.writestr(
        zipfile.ZipInfo("pages/crc.jpg"), b"CORRUPT-ME" * 100)), setattr(b, "after_zip", _corrupt_member)),
                           "zip.member_corrupt", "pages/crc.jpg", "error", False),
}


def _write_manifest(batch: Batch) -> None:
    header = list(TEMPLATE_HEADER)
    rows = [list(r) for r in batch.rows]
    if batch.manifest == "none":
        return
    if batch.manifest == "no-id-column":
        at = header.index("身份证号")
        header.pop(at)
        for r in rows:
            r.pop(at)
    text = "\n".join(",".join(r) for r in [header, *rows]) + "\n"
    data = batch.manifest if isinstance(batch.manifest, bytes) else text.encode(
        "gbk" if batch.manifest == "gbk" else "utf-8")
    (batch.folder / "manifest.csv").write_bytes(data)


def _hand_in(batch: Batch, tmp_path: Path) -> tuple[Path, list[str]]:
    """The path handed in and the relative paths of what must be found in staging."""
    _write_manifest(batch)
    files = sorted(p.relative_to(batch.folder).as_posix() for p in batch.folder.rglob("*") if p.is_file())
    if batch.zip_members is None:
        return batch.folder, files
    archive = tmp_path / "delivery.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel in files:
            zf.write(batch.folder / rel, rel)
        batch.zip_members(zf)
    if batch.after_zip:
        batch.after_zip(archive)
    return archive, [*files, archive.name]


def _handed_in_bytes(path: Path, rel: str) -> bytes:
    """`rel` as it was handed in: the folder's file, the zip itself, or the zip's first member of
    that name (a second one of the same name is refused)."""
    if path.is_dir():
        return (path / rel).read_bytes()
    if rel == path.name:
        return path.read_bytes()
    with zipfile.ZipFile(path) as zf:
        return zf.read(next(info for info in zf.infolist() if info.filename == rel))


@pytest.mark.parametrize("kind", list(CASES))
def test_bad_input(kind, tmp_path, services, monkeypatch):
    defect, code, item, severity, batch_level = CASES[kind]
    monkeypatch.setattr(scanfile, "MAX_SCAN_BYTES", 1024**2)  # the TIFF case is 2.2 MB; pages ~0.5 MB
    batch = Batch(tmp_path / "batch")
    for n, sample in enumerate(SAMPLES[:2], start=1):  # materials 1-1 and 2-2, one page each
        batch.put(f"pages/GZ-C1-000{n}.jpg", sample.read_bytes())
        batch.row(cls=str(n), seq=str(n), files=f"pages/GZ-C1-000{n}.jpg")
    defect(batch)
    path, handed_in = _hand_in(batch, tmp_path)

    sub = submit_path(path, services)
    result = intake_batch(sub.batch_id, services)

    # the specific finding, naming the item, in both languages
    item = item.format(batch=sub.batch_id)   # a batch-level finding names the batch
    assert item, kind
    hits = [f for f in result.findings if f.code == code and item in f.item]
    assert hits, f"{kind}: no {code} naming {item!r} in {[(f.code, f.item) for f in result.findings]}"
    assert all(f.severity.value == severity and f.message_zh and f.message_en for f in hits)

    # the rest went on
    with services.db.transaction() as cur:
        cur.execute("SELECT path, sha256, staging_key, status FROM batch_files WHERE batch_id = %s", (sub.batch_id,))
        rows = {r["path"]: r for r in cur.fetchall()}
    assert rows["pages/GZ-C1-0001.jpg"]["status"] == "accepted"
    assert rows["pages/GZ-C1-0002.jpg"]["status"] == "accepted"
    if not batch_level:
        going_on = {m.code for f in load_catalog(sub.batch_id, services).files for m in f.materials}
        assert GOOD_MATERIALS <= going_on, f"{kind}: good materials held back: {going_on}"
        if severity == "warning" and code.startswith("scan."):
            assert "4-1-3" in going_on  # a warned page is kept and goes on

    # nothing lost: every file handed in is in staging, byte for byte
    assert sorted(rows) == sorted(handed_in)
    for rel, row in rows.items():  # the bytes handed in, not only the hash the system recorded
        original = _handed_in_bytes(path, rel)
        assert services.store.get(services.staging_bucket, row["staging_key"]) == original, rel
        assert row["sha256"] == sha256_hex(original), rel
    if path.suffix == ".zip":
        assert rows[path.name]["sha256"] == sha256_hex(path.read_bytes())


def test_corpus_covers_at_least_25_kinds():
    assert len(CASES) >= 25 and len({c[1] for c in CASES.values()}) >= 25
