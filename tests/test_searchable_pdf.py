"""The searchable PDF is self-contained PDF/A-2b (issue 14, item 1): its text comes out in readers
that have no Chinese CMaps, and the checker that says so fails on what is not."""

from __future__ import annotations

import hashlib
import io
import subprocess

import pikepdf
import pypdf
import pytest
from PIL import Image

from ocr.engine import PageResult, Word
from ocr.pdf import searchable_pdf
from ocr.pdf_check import self_contained_problems

LINES = ["流动人员人事档案登记表", "身份证号 520103196804011252", "1990.02—1992.09在凯里市某厂工作"]


def _page(words: list[str] = LINES, rotation: int = 0) -> tuple[Image.Image, PageResult]:
    image = Image.new("RGB", (1240, 1754), "white")  # A4 at 150 dpi
    boxes = [Word(text, 95.0, (100, 120 + 80 * i, 100 + 40 * len(text), 160 + 80 * i)) for i, text in enumerate(words)]
    return image, PageResult("\n".join(words), 95.0, boxes, 1240, 1754, 150, "test", 0.1, rotation=rotation)


def _extract_poppler(data: bytes, tmp_path) -> subprocess.CompletedProcess:
    path = tmp_path / "m.pdf"
    path.write_bytes(data)
    return subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True, check=True)


def _squeeze(text: str) -> str:
    return "".join(text.split())


def test_pdfa_2b_approved_and_every_property_holds():
    data = searchable_pdf([_page(), _page(LINES[::-1])], "GZ2026-0070001 1-1 登记表", "贵州省人才交流服务中心")
    assert self_contained_problems(data) == []
    with pikepdf.open(io.BytesIO(data)) as pdf:
        assert not pdf.is_encrypted and len(pdf.pages) == 2
        meta = pdf.open_metadata()
        assert (meta["pdfaid:part"], meta["pdfaid:conformance"]) == ("2", "B")
        assert meta["dc:title"] == "GZ2026-0070001 1-1 登记表"
        intent = pdf.Root.OutputIntents[0]
        assert intent.S == "/GTS_PDFA1" and "sRGB" in str(intent.OutputConditionIdentifier)
        fonts = [f for page in pdf.pages for f in page.Resources.Font.values()]
        assert fonts and all("/ToUnicode" in f and "/FontFile2" in f.FontDescriptor for f in fonts)


def test_text_comes_out_of_poppler_without_cmaps_and_of_pypdf(tmp_path):
    data = searchable_pdf([_page()], "t")
    poppler = _extract_poppler(data, tmp_path)
    assert "Missing language pack" not in poppler.stderr  # poppler-data is not needed
    text = _squeeze(poppler.stdout)
    assert all(_squeeze(line) in text for line in LINES), poppler.stdout
    text = _squeeze(pypdf.PdfReader(io.BytesIO(data)).pages[0].extract_text())
    assert all(_squeeze(line) in text for line in LINES), text


def test_same_pages_same_bytes():
    first, second = searchable_pdf([_page()], "t"), searchable_pdf([_page()], "t")
    assert hashlib.sha256(first).digest() == hashlib.sha256(second).digest()


def test_a_character_beyond_the_bmp_keeps_the_layer_aligned(tmp_path):
    data = searchable_pdf([_page(["吉𠮷祥如意"])], "t")
    assert self_contained_problems(data) == []
    assert "吉\ufffd祥如意" in _squeeze(_extract_poppler(data, tmp_path).stdout)


def test_a_rotated_page_is_laid_out_upright():
    image, result = _page()
    sideways = image.rotate(90, expand=True)
    data = searchable_pdf([(sideways, PageResult(**{**result.__dict__, "rotation": 270}))], "t")
    with pikepdf.open(io.BytesIO(data)) as pdf:
        box = [float(v) for v in pdf.pages[0].MediaBox]
    assert box[2] < box[3]  # portrait, as the text boxes expect


def _reportlab_cid_pdf() -> bytes:
    """A PDF as the writer made them before issue 14: a non-embedded Adobe-GB1 CID font."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    buf = io.BytesIO()
    c = canvas.Canvas(buf)
    c.setFont("STSong-Light", 12)
    c.drawString(72, 720, "流动人员人事档案")
    c.save()
    return buf.getvalue()


def test_the_checker_names_what_is_not_self_contained():
    problems = self_contained_problems(_reportlab_cid_pdf())
    joined = "\n".join(problems)
    assert "no /ToUnicode map" in joined and "not embedded" in joined and "UniGB-UCS2-H" in joined
    assert "no sRGB OutputIntent" in joined and "XMP declares" in joined


@pytest.mark.parametrize("harm", ["encrypted", "uri", "external file"])
def test_the_checker_refuses_encryption_and_external_references(harm, tmp_path):
    data = searchable_pdf([_page()], "t")
    with pikepdf.open(io.BytesIO(data)) as pdf:
        out = io.BytesIO()
        if harm == "encrypted":
            pdf.save(out, encryption=pikepdf.Encryption(owner="o", user=""))
        else:
            action = (pikepdf.Dictionary(S=pikepdf.Name.URI, URI="http://example.com/") if harm == "uri" else
                      pikepdf.Dictionary(S=pikepdf.Name.GoToR, F=pikepdf.Dictionary(
                          Type=pikepdf.Name.Filespec, F="other.pdf"), D=pikepdf.Array([0, pikepdf.Name.Fit])))
            pdf.Root.OpenAction = pdf.make_indirect(action)
            pdf.save(out)
    problems = self_contained_problems(out.getvalue())
    own = [p for p in problems if not p.startswith("PDF/A-2b validator")]  # the checker's own words
    expected = {"encrypted": "encrypted", "uri": "action /URI reaches outside the file",
                "external file": "reference to an external file other.pdf"}[harm]
    assert expected in own, problems
