"""Is a page blank? Blank means no text-like marks, not little ink.

A page holding one short line (a one-line certificate, a signature line) has less ink than the
old ink-share rule allowed, while a blank back of a sheet has specks, dust, hairs, punched holes
and shadows. So marks are judged by their shape, on a copy that keeps each block's darkest
pixel: dark connected components the size of written or printed characters (1.2-20 mm high,
strokes of 0.5 mm on average), and a page is not blank when some of them form a line (two side
by side on one row) or one of them is as wide and as dense as a written word or a signature.
Specks are too small, hairs and folds too thin or too long, holes and stains stand alone.
Thresholds chosen on generated pages (benchmarks/blank_bench.py, docs/benchmarks.md): seed 11
chose them, seed 12 checked them.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from ocr.preprocess import paper_level

WORK_WIDTH = 640
MARGIN = 0.05            # of each side, left out: binding holes, edge shadows, scanner lids
DARK = 0.75              # of the paper's brightness: faint pencil and light ink still count
MIN_HEIGHT_MM, MAX_HEIGHT_MM = 1.2, 20.0   # a 5 pt character to a large handwritten one
MIN_STROKE_MM = 0.5      # mean thickness over its longest extent: thinner is a hair or a fold, not writing
MAX_WIDTH_MM = 120.0     # wider: a ruled or fold line, not a word
WORD_ASPECT = 1.8        # one component this much wider than high: a word or a signature,
WORD_STROKE_MM = 0.8     # if that dense (a single curve of that shape is a hair or a dash)
ROW_GAP = 3.0            # neighbours on a line are at most this many heights apart


@dataclass(frozen=True)
class Marks:
    components: int      # text-sized components
    line: bool           # some of them read as a line: a word-wide one, or neighbours on a row

    @property
    def blank(self) -> bool:
        return not self.line


def text_marks(gray: Image.Image, dpi: float) -> Marks:
    """The text-like marks of a grayscale page scanned at `dpi`. Measured on a copy ~640 px wide
    whose pixels are the darkest of their block of 2 x 2 half-size averages: averaging alone, as
    for the ink share, fades a 0.25 mm serif stroke at 300 dpi past the threshold, and a full-size
    array costs more to take from PIL than the rest of the measure."""
    factor = max(1, round(gray.width / WORK_WIDTH))
    half = 2 if factor >= 2 else 1
    a = np.asarray(gray.reduce(half) if half > 1 else gray, dtype=np.uint8)
    step = max(1, factor // half)
    if step > 1:
        a = cv2.erode(a, np.ones((step, step), np.uint8))[step // 2::step, step // 2::step]
    px_per_mm = dpi / (half * step) / 25.4
    h, w = a.shape
    inner = a[round(h * MARGIN): h - round(h * MARGIN), round(w * MARGIN): w - round(w * MARGIN)]
    if inner.size == 0:
        return Marks(0, False)
    paper = paper_level(inner)
    dark = (inner < paper * DARK).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(dark, connectivity=8)
    widths = stats[1:, cv2.CC_STAT_WIDTH] / px_per_mm
    heights = stats[1:, cv2.CC_STAT_HEIGHT] / px_per_mm
    areas = stats[1:, cv2.CC_STAT_AREA] / px_per_mm**2
    # mean stroke thickness: area over the longer extent (a hair of 10 mm is ~0.2 mm thick)
    strokes = areas / np.maximum(np.maximum(widths, heights), 1e-6)
    sized = ((heights >= MIN_HEIGHT_MM) & (heights <= MAX_HEIGHT_MM) & (widths <= MAX_WIDTH_MM)
             & (strokes >= MIN_STROKE_MM))
    boxes = stats[1:][sized]
    return Marks(int(sized.sum()), _has_line(boxes, px_per_mm))


def _has_line(boxes: np.ndarray, px_per_mm: float) -> bool:
    """One word-wide box, or two neighbours overlapping vertically by half the smaller height
    and apart by at most ROW_GAP of the taller one. Stops at the first: a page of text finds
    one at once, a near-blank page has few boxes."""
    x, y = boxes[:, cv2.CC_STAT_LEFT], boxes[:, cv2.CC_STAT_TOP]
    bw, bh = boxes[:, cv2.CC_STAT_WIDTH], boxes[:, cv2.CC_STAT_HEIGHT]
    density = boxes[:, cv2.CC_STAT_AREA] / np.maximum(bw, bh)  # px of ink per px of its length
    if ((bw >= WORD_ASPECT * bh) & (density >= WORD_STROKE_MM * px_per_mm)).any():
        return True
    order = np.argsort(x)
    reach = ROW_GAP * (int(bh.max()) if len(bh) else 0)
    for pos, i in enumerate(order):
        for j in order[pos + 1:]:
            if x[j] - (x[i] + bw[i]) > reach:
                break  # sorted by left edge: every later box is further away
            gap = x[j] - (x[i] + bw[i])
            overlap = min(y[i] + bh[i], y[j] + bh[j]) - max(y[i], y[j])
            if gap <= ROW_GAP * max(bh[i], bh[j]) and overlap >= 0.5 * min(bh[i], bh[j]):
                return True
    return False
