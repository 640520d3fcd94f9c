"""Blank-page detection at intake: the ink-share rule against the text-marks rule, same pages.

    .venv/bin/python benchmarks/blank_bench.py [--pages 200] [--seed 11]

Generates (a) pages holding one to three short lines (a one-line certificate, a signature
line, a date; printed in the three sample fonts at 9-16 pt, or a handwritten signature)
under scan conditions (clean, noise, JPEG, 200 dpi, aged paper, skew, faint ink), and (b)
truly blank pages with what scanners and paper add (sensor noise, specks, dust, hairs,
punched holes, an edge shadow, a fold, bleed-through from the back, aged paper, JPEG). Prints
for each rule the false-blank rate on (a) and the miss rate on (b), and its time a page: both
rules get the same decoded pages (decoded before either is timed) and each turns them gray itself.
"""

from __future__ import annotations

import argparse
import io
import math
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps  # noqa: E402

from intake.blank import text_marks  # noqa: E402
from ocr.gates import BLANK_INK  # noqa: E402
from ocr.preprocess import ink_ratio, to_gray  # noqa: E402
from sample_scans import degrade  # noqa: E402
from sample_scans.render import A4_INCHES, available_fonts  # noqa: E402

LINES = ["同意", "情况属实", "特此证明。", "经核实，以上情况属实。", "本人签字：", "负责人签字：张三",
         "日期：2020年5月20日", "二〇一九年十二月", "（此页无正文）", "盖章", "已阅", "附：身份证复印件一份"]
CONDITIONS = ["clean", "noise", "jpeg", "dpi200", "aged", "skew", "faint", "combined"]
BLANK_CONDITIONS = ["noise", "specks", "dust", "hairs", "holes", "shadow", "fold", "bleed", "aged", "combined"]


def _page(dpi: int = 300) -> Image.Image:
    return Image.new("L", tuple(round(x * dpi) for x in A4_INCHES), 255)


def _signature(draw: ImageDraw.ImageDraw, x: float, y: float, mm: float, rng: random.Random, ink: int) -> None:
    """A handwritten signature: a few joined loops, ~35 mm wide, 0.5 mm pen."""
    points, cx = [], x
    for _ in range(rng.randint(18, 30)):
        cx += rng.uniform(0.6, 2.2) * mm
        points.append((cx, y + rng.uniform(-4, 4) * mm))
    draw.line(points, fill=ink, width=max(2, round(0.5 * mm)), joint="curve")


def short_lines_page(rng: random.Random, fonts: list[str]) -> tuple[Image.Image, int, str]:
    condition = rng.choice(CONDITIONS)
    dpi = 300
    img = _page(dpi)
    draw = ImageDraw.Draw(img)
    mm = dpi / 25.4
    ink = rng.randint(130, 170) if condition == "faint" else rng.randint(0, 60)
    y = rng.uniform(35, 200) * mm
    for _ in range(rng.randint(1, 3)):
        x = rng.uniform(25, 110) * mm
        if rng.random() < 0.2:
            _signature(draw, x, y, mm, rng, ink)
        else:
            size = round(rng.uniform(9, 16) / 72 * dpi)
            draw.text((x, y), rng.choice(LINES), font=ImageFont.truetype(rng.choice(fonts), size), fill=ink)
        y += rng.uniform(8, 25) * mm
    img, dpi = _scan(img, dpi, condition, rng)
    return img, dpi, condition


def _dots(img: Image.Image, rng: random.Random, count: int, lo_mm: float, hi_mm: float, dpi: int) -> None:
    draw, mm = ImageDraw.Draw(img), dpi / 25.4
    for _ in range(count):
        r = rng.uniform(lo_mm, hi_mm) * mm / 2
        x, y = rng.uniform(0, img.width), rng.uniform(0, img.height)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=rng.randint(0, 90))


def blank_page(rng: random.Random) -> tuple[Image.Image, int, str]:
    condition = rng.choice(BLANK_CONDITIONS)
    dpi = 300
    img = _page(dpi)
    mm = dpi / 25.4
    draw = ImageDraw.Draw(img)
    kinds = {condition} if condition != "combined" else set(rng.sample(BLANK_CONDITIONS[:-1], 4))
    if "specks" in kinds:
        _dots(img, rng, rng.randint(50, 400), 0.1, 0.35, dpi)
    if "dust" in kinds:
        _dots(img, rng, rng.randint(5, 40), 0.3, 0.9, dpi)
    if "hairs" in kinds:
        for _ in range(rng.randint(1, 4)):
            x, y, a = rng.uniform(0, img.width), rng.uniform(0, img.height), rng.uniform(0, math.pi)
            length = rng.uniform(5, 30) * mm
            pts = [(x + t * length * math.cos(a) + rng.uniform(-1, 1) * mm * math.sin(t * 6),
                    y + t * length * math.sin(a)) for t in np.linspace(0, 1, 20)]
            draw.line(pts, fill=rng.randint(20, 80), width=max(1, round(rng.uniform(0.08, 0.2) * mm)))
    if "holes" in kinds:  # two punched holes, dark where the scanner lid is dark
        for cy in (img.height / 2 - 40 * mm, img.height / 2 + 40 * mm):
            r, cx = 3 * mm, rng.uniform(10, 14) * mm
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=rng.randint(20, 70))
    if "shadow" in kinds:  # the binding edge lifted off the glass
        a = np.asarray(img, dtype=np.float32)
        width = round(rng.uniform(4, 12) * mm)
        a[:, :width] *= np.linspace(0.25, 1.0, width)[None, :]
        img = Image.fromarray(a.astype(np.uint8))
        draw = ImageDraw.Draw(img)
    if "fold" in kinds:
        y = rng.uniform(0.3, 0.7) * img.height
        draw.line([(0, y), (img.width, y + rng.uniform(-5, 5) * mm)], fill=rng.randint(120, 180),
                  width=max(1, round(0.3 * mm)))
    if "bleed" in kinds:  # the back's text showing through, mirrored and faint
        back = _page(dpi)
        font = ImageFont.truetype(next(iter(available_fonts().values())), round(12 / 72 * dpi))
        bd = ImageDraw.Draw(back)
        for i in range(rng.randint(5, 25)):
            bd.text((25 * mm, (30 + 9 * i) * mm), "".join(rng.choice(LINES) for _ in range(3)), font=font, fill=0)
        back = ImageOps.mirror(back).filter(ImageFilter.GaussianBlur(2))
        shade = rng.uniform(0.08, 0.2)
        img = Image.fromarray(np.minimum(np.asarray(img, dtype=np.float32),
                                         255 - shade * (255 - np.asarray(back, dtype=np.float32))).astype(np.uint8))
    img, dpi = _scan(img, dpi, "aged" if "aged" in kinds else "noise" if "noise" in kinds else "jpeg", rng)
    return img, dpi, condition


def _scan(img: Image.Image, dpi: int, condition: str, rng: random.Random) -> tuple[Image.Image, int]:
    quality = 85
    if condition in ("aged", "combined"):
        img = degrade.aged(img, rng)
    if condition in ("dpi200",):
        img, dpi = degrade.resample_dpi(img, dpi, 200), 200
    if condition in ("skew", "combined"):
        img = degrade.skew(img, rng.uniform(-3, 3))
    if condition in ("noise", "combined"):
        img = degrade.noise(img, rng, sigma=rng.uniform(6, 12))
    if condition in ("jpeg", "combined"):
        quality = rng.randint(30, 60)
    buf = io.BytesIO()
    img.convert("RGB" if img.mode == "RGB" else "L").save(buf, "JPEG", quality=quality)
    scanned = Image.open(io.BytesIO(buf.getvalue()))
    scanned.load()  # decoded now: else the rule timed first would pay every page's decoding, the second none
    return scanned, dpi


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=200, help="pages of each kind")
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    fonts = sorted(available_fonts().values())
    text = [short_lines_page(rng, fonts) for _ in range(args.pages)]
    blank = [blank_page(rng) for _ in range(args.pages)]

    def ink_rule(gray: Image.Image, dpi: int) -> bool:
        return ink_ratio(gray) < BLANK_INK

    def marks_rule(gray: Image.Image, dpi: int) -> bool:
        return text_marks(gray, dpi).blank

    print(f"{args.pages} pages with 1-3 short lines, {args.pages} blank pages (seed {args.seed})")
    print(f"{'rule':<12} {'false blank':>12} {'missed blank':>13} {'ms/page':>8} {'x ink':>6}   false blanks by"
          " condition")
    base_ms = None
    for name, rule in (("ink share", ink_rule), ("text marks", marks_rule)):
        t0 = time.perf_counter()
        text_verdicts = [(c, rule(to_gray(img), dpi)) for img, dpi, c in text]
        blank_verdicts = [(c, rule(to_gray(img), dpi)) for img, dpi, c in blank]
        ms = (time.perf_counter() - t0) / (2 * args.pages) * 1000
        base_ms = base_ms or ms
        false_blank = sum(v for _, v in text_verdicts) / len(text_verdicts)
        missed = sum(not v for _, v in blank_verdicts) / len(blank_verdicts)
        by = {c: sum(v for cc, v in text_verdicts if cc == c) for c in CONDITIONS}
        missed_by = {c: sum(not v for cc, v in blank_verdicts if cc == c) for c in BLANK_CONDITIONS}
        print(f"{name:<12} {false_blank:>12.1%} {missed:>13.1%} {ms:>8.2f} {ms / base_ms:>5.1f}x   "
              + " ".join(f"{c}:{n}" for c, n in by.items() if n)
              + " | missed: " + " ".join(f"{c}:{n}" for c, n in missed_by.items() if n))


if __name__ == "__main__":
    main()
