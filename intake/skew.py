"""Skew estimate at intake: how far a page's text lines lean, in degrees, without any OCR model.

Projection profiles: rotate the coordinates of the ink pixels by each candidate angle and count
them per row; when the angle matches the page's, text lines and ruled lines collapse into few
rows and the profile is sharpest (largest sum of squares). Coarse then fine search on a
shrunk copy, so a 300 dpi page costs milliseconds. Positive = the page was turned counter-
clockwise (as PIL's `rotate(+a)` turns it); the OCR stage deskews on its own, this estimate is
for the scanning operator (DA/T 31: no visible skew, in practice at most 1-3 degrees).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ocr.preprocess import paper_level, shrink

WORK_WIDTH = 640          # px of the shrunk copy: ~0.1 degree resolution on an A4 page
MAX_DEGREES = 10.0
MIN_INK_PIXELS = 500      # fewer than this: blank or nearly so, no estimate


def _sharpness(ys: np.ndarray, xs: np.ndarray, degrees: np.ndarray, rows: int) -> np.ndarray:
    scores = np.empty(len(degrees))
    for i, d in enumerate(degrees):
        t = np.deg2rad(d)
        # row of each ink pixel after turning the page back by d (image y grows downwards)
        r = np.round(ys * np.cos(t) + xs * np.sin(t)).astype(np.int64) + rows
        counts = np.bincount(r, minlength=3 * rows)
        scores[i] = float(np.dot(counts, counts))
    return scores


def estimate_skew(gray: Image.Image) -> float | None:
    """Degrees the page's lines lean (counter-clockwise positive), or None for a near-blank page."""
    a = np.asarray(shrink(gray, WORK_WIDTH), dtype=np.uint8)
    h, w = a.shape
    inner = a[h // 20: h - h // 20, w // 20: w - w // 20]  # scanner edges and shadows are not lines
    paper = paper_level(inner) if inner.size else 0.0
    ys, xs = np.nonzero(inner < paper * 0.6)
    if len(ys) < MIN_INK_PIXELS:
        return None
    # Sub-pixel jitter, fixed seed: without it, angle 0 maps every pixel row onto exactly one
    # bin and wins on quantisation alone (a page turned 0.7 degrees read as 0).
    jitter = np.random.default_rng(0).uniform(-0.5, 0.5, len(ys))
    ys = ys.astype(np.float64) + jitter - inner.shape[0] / 2
    xs = xs.astype(np.float64) - inner.shape[1] / 2
    rows = int(np.hypot(*inner.shape)) + 1
    coarse = np.arange(-MAX_DEGREES, MAX_DEGREES + 1e-9, 0.5)
    best = coarse[int(np.argmax(_sharpness(ys, xs, coarse, rows)))]
    fine = np.arange(best - 0.5, best + 0.5 + 1e-9, 0.05)
    return round(float(fine[int(np.argmax(_sharpness(ys, xs, fine, rows)))]), 2)
