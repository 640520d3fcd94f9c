"""Searchable-PDF writers, measured on the same OCR'd pages in one run.

    .venv/bin/pip install -e '.[bench]'      # OCRmyPDF, for the two OCRmyPDF routes
    .venv/bin/python benchmarks/pdf_bench.py [--files 3] [--variants clean,skew,...] [--repeat 3]

Renders personnel-file pages (sample_scans.generate), OCRs them once with the pipeline's
engine, then makes the same materials (of 1 and of 3 pages) with each writer:
  legacy      the writer before issue 14: reportlab, non-embedded STSong-Light (Adobe-GB1);
  pipeline    ocr/pdf.py: reportlab with the embedded glyphless Occulta, PDF/A-2b by pikepdf.pdfa;
  fpdf2       OCRmyPDF 17's text-layer renderer (Fpdf2PdfRenderer, Occulta for every word),
              the page image placed by fpdf2, PDF/A-2b by pikepdf.pdfa;
  ocrmypdf    OCRmyPDF 17's whole pipeline on an img2pdf file of the pages, with an OCR-engine
              plugin (benchmarks/ocrmypdf_given_ocr.py) handing back the same OCR results,
              --output-type pdfa-2 --pdfa-backend internal.
For each: ms per page (mean of --repeat runs after a warm-up), KiB per page, whether pikepdf's
PDF/A-2b validator and ocr/pdf_check.py approve, and the share of OCR lines found in the text
that pdftotext and pypdf extract (whitespace ignored). Times are also given as ratios to the
legacy writer measured in the same run.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image  # noqa: E402

from ocr import EngineConfig, OcrPool, PageResult  # noqa: E402
from ocr.images import load_pages  # noqa: E402
from ocr.pdf import searchable_pdf  # noqa: E402
from ocr.pdf_check import self_contained_problems  # noqa: E402
from ocr.preprocess import rotate  # noqa: E402
from sample_scans.generate import generate  # noqa: E402

PLUGIN = Path(__file__).with_name("ocrmypdf_given_ocr.py")
Material = list[tuple[Image.Image, PageResult]]


def legacy(pages: Material) -> bytes:
    """The writer as it was before issue 14 (ocr/pdf.py at 548512e), for the baseline."""
    from reportlab import rl_config
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    rl_config.useA85 = 1  # reportlab's default, which the pipeline's writer turns off

    if "STSong-Light" not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    buf = io.BytesIO()
    c = canvas.Canvas(buf, invariant=1, pageCompression=1)
    for image, result in pages:
        img = rotate(image, result.rotation)
        k = 72.0 / result.dpi
        width, height = img.width * k, img.height * k
        c.setPageSize((width, height))
        jpeg = io.BytesIO()
        img.save(jpeg, "JPEG", quality=80)
        jpeg.seek(0)
        c.drawImage(ImageReader(jpeg), 0, 0, width, height)
        text = c.beginText()
        text.setTextRenderMode(3)
        for word in result.words:
            x0, y0, x1, y1 = word.bbox
            size = max(1.0, (y1 - y0) * k * 0.85)
            natural = pdfmetrics.stringWidth(word.text, "STSong-Light", size)
            if word.text and natural > 0:
                text.setFont("STSong-Light", size)
                text.setHorizScale(100.0 * (x1 - x0) * k / natural)
                text.setTextOrigin(x0 * k, height - y1 * k + 0.15 * size)
                text.textOut(word.text)
        c.drawText(text)
        c.showPage()
    c.save()
    return buf.getvalue()


def pipeline(pages: Material) -> bytes:
    return searchable_pdf(pages, "benchmark", "benchmark")


def _ocr_tree(result: PageResult, scale: float = 1.0):
    from ocrmypdf.hocrtransform import BoundingBox, OcrClass, OcrElement

    lines = []
    for word in result.words:
        box = BoundingBox(*(v * scale for v in word.bbox))
        lines.append(OcrElement(ocr_class=OcrClass.LINE, bbox=box, children=[
            OcrElement(ocr_class=OcrClass.WORD, bbox=box, text=word.text, language="chi_sim")]))
    return OcrElement(ocr_class=OcrClass.PAGE, bbox=BoundingBox(0, 0, result.width * scale, result.height * scale),
                      dpi=result.dpi * scale, children=lines)


_glyphless = None


def fpdf2(pages: Material) -> bytes:
    global _glyphless
    import pikepdf
    import pikepdf.pdfa
    from fpdf import FPDF
    from fpdf.enums import TextMode
    from ocrmypdf.font import MultiFontManager
    from ocrmypdf.font.font_provider import BuiltinFontProvider
    from ocrmypdf.fpdf_renderer.renderer import Fpdf2PdfRenderer

    if _glyphless is None:
        class Glyphless(MultiFontManager):  # an invisible layer needs no glyphs: Occulta for every word
            def select_font_for_word(self, word_text, line_language):
                return self.font_provider.get_fallback_font()

        _glyphless = Glyphless(font_provider=BuiltinFontProvider())
    pdf = FPDF(unit="pt")
    pdf.set_auto_page_break(False)
    pdf.set_text_shaping(True)
    pdf.c_margin = 0
    pdf.text_mode = TextMode.INVISIBLE
    registered: dict[str, str] = {}
    for image, result in pages:
        renderer = Fpdf2PdfRenderer(_ocr_tree(result), result.dpi, _glyphless, True)
        renderer._registered_fonts = registered  # as Fpdf2MultiPageRenderer shares them
        renderer.render_to_pdf(pdf)
        img = rotate(image, result.rotation)
        jpeg = io.BytesIO()
        img.save(jpeg, "JPEG", quality=80)
        jpeg.seek(0)
        k = 72.0 / result.dpi
        pdf.image(jpeg, 0, 0, img.width * k, img.height * k)
    with pikepdf.open(io.BytesIO(bytes(pdf.output()))) as doc:
        if "/OpenAction" in doc.Root:  # fpdf2's zoom action: not allowed in PDF/A
            del doc.Root["/OpenAction"]
        out = io.BytesIO()
        pikepdf.pdfa.save(doc, out, "2b", deterministic_id=True)
    return out.getvalue()


def ocrmypdf_plugin(pages: Material) -> bytes:
    import img2pdf
    import ocrmypdf

    with tempfile.TemporaryDirectory(prefix="pdf-bench-") as tmp:
        folder = Path(tmp)
        jpegs = []
        for i, (image, result) in enumerate(pages):
            path = folder / f"{i}.jpg"
            rotate(image, result.rotation).save(path, "JPEG", quality=80, dpi=(result.dpi, result.dpi))
            jpegs.append(str(path))
        (folder / "in.pdf").write_bytes(img2pdf.convert(jpegs))
        (folder / "ocr.json").write_text(json.dumps([r.to_dict() for _, r in pages], ensure_ascii=False),
                                         encoding="utf-8")
        os.environ["GIVEN_OCR_RESULTS"] = str(folder / "ocr.json")
        ocrmypdf.ocr(folder / "in.pdf", folder / "out.pdf", plugins=[str(PLUGIN)], output_type="pdfa-2",
                     pdfa_backend="internal", language=["chi_sim"], jobs=1, progress_bar=False, optimize=0)
        return (folder / "out.pdf").read_bytes()


def found_share(data: bytes, pages: Material) -> tuple[float, float]:
    """Share of the OCR lines found in pdftotext's and pypdf's text of the PDF."""
    import pypdf

    def norm(s: str) -> str:
        return "".join(s.split())

    lines = [norm(w.text) for _, r in pages for w in r.words if norm(w.text)]
    with tempfile.NamedTemporaryFile(suffix=".pdf") as f:
        f.write(data)
        f.flush()
        poppler = norm(subprocess.run(["pdftotext", f.name, "-"], capture_output=True, text=True).stdout)
    py = norm("".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(data)).pages))
    return sum(line in poppler for line in lines) / len(lines), sum(line in py for line in lines) / len(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=3, help="personnel files per variant")
    ap.add_argument("--variants", default="clean,skew,dpi200,combined,sideways")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=303)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pdf-bench-"))
    paths = []
    for v in args.variants.split(","):
        batch = generate(root / v, files=args.files, seed=args.seed, variants=[v], materials_per_file=3)
        paths += sorted((batch / "pages").iterdir())
    with OcrPool(EngineConfig(), 2) as pool:
        results = [r[0] for r in pool.map(p.read_bytes() for p in paths)]
    pages = [(load_pages(p.read_bytes())[0][0], r) for p, r in zip(paths, results, strict=True)]
    writers: dict[str, Callable[[Material], bytes]] = {"legacy": legacy, "pipeline": pipeline}
    try:
        import ocrmypdf

        writers |= {"fpdf2": fpdf2, "ocrmypdf": ocrmypdf_plugin}
        print(f"OCRmyPDF {ocrmypdf.__version__}")
    except ImportError:
        print("OCRmyPDF not installed (pip install -e '.[bench]'): its two routes are left out")
    print(f"{len(pages)} pages ({args.variants}) in {root}")
    header = (f"{'writer':<10} {'pages/material':>14} {'ms/page':>8} {'x legacy':>8} {'KiB/page':>8} "
              f"{'PDF/A-2b':>8} {'self-contained':>14} {'pdftotext':>9} {'pypdf':>6}")
    print(header)
    print("-" * len(header))
    for size in (1, 3):
        materials = [pages[i:i + size] for i in range(0, len(pages) - size + 1, size)]
        base = None
        for writer in writers.values():  # warm-up: fonts, imports
            writer(materials[0])
        for name, writer in writers.items():
            t0 = time.perf_counter()
            for _ in range(args.repeat):
                made = [writer(m) for m in materials]
            ms = (time.perf_counter() - t0) / args.repeat / sum(len(m) for m in materials) * 1000
            base = base or ms
            kib = sum(len(d) for d in made) / sum(len(m) for m in materials) / 1024
            problems = [self_contained_problems(d) for d in made]
            valid = sum(1 for p in problems if not any(x.startswith("PDF/A") for x in p))
            whole = sum(1 for p in problems if not p)
            shares = [found_share(d, m) for d, m in zip(made, materials, strict=True)]
            poppler = min(s[0] for s in shares)
            py = min(s[1] for s in shares)
            print(f"{name:<10} {size:>14} {ms:>8.1f} {ms / base:>7.2f}x {kib:>8.1f} {valid:>4}/{len(made):<3} "
                  f"{whole:>10}/{len(made):<3} {poppler:>9.1%} {py:>6.1%}")
    print("pdftotext and pypdf: the lowest share of OCR lines found, over the materials")


if __name__ == "__main__":
    main()
