"""Page clean-up on a working copy (originals are never touched): colour, ink, rotation."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image


def to_gray(img: Image.Image) -> Image.Image:
    """Grayscale with red ink suppressed.

    Seals (red) stamped over text are the commonest clutter on personnel materials. In the red
    channel red ink is as light as paper while black and blue ink stay dark, and yellowed paper
    stays light. Cost: genuinely red text (a red letterhead) fades too.
    """
    if img.mode == "L":
        return img
    rgb = img if img.mode == "RGB" else img.convert("RGB")  # converting RGB to RGB copies the whole page
    return rgb.getchannel("R")


def shrink(gray: Image.Image, width: int = 640) -> Image.Image:
    """A box-averaged copy about `width` px wide (integer factor: fast), for page-level measures."""
    factor = max(1, round(gray.width / width))
    return gray.reduce(factor) if factor > 1 else gray


PAPER_PERCENTILE = 90  # brighter than nine pixels in ten: the paper, whatever its age or tint


def paper_level(a: np.ndarray) -> float:
    """The paper's brightness in a non-empty 2-D uint8 page array: its 90th percentile exactly as
    `np.percentile(a, 90)` gives it (linear), taken from its histogram, because np.percentile
    sorts a copy of the page, which cost more than the rest of the blank-page rule."""
    if a.size < 2**24:  # calcHist counts in float32, exact only below 2**24
        hist = cv2.calcHist([a], [0], None, [256], [0, 256]).ravel().astype(np.int64)
    else:  # a later frame of a TIFF may be any size
        hist = np.bincount(a.ravel(), minlength=256)
    cum = np.cumsum(hist)
    position = (a.size - 1) * (PAPER_PERCENTILE / 100)  # numpy's own arithmetic, for the same float
    low = int(np.floor(position))
    below = int(np.searchsorted(cum, low, side="right"))
    above = int(np.searchsorted(cum, min(low + 1, a.size - 1), side="right"))
    gamma, diff = position - low, float(above - below)
    return above - diff * (1 - gamma) if gamma >= 0.5 else below + diff * gamma  # numpy's lerp, both halves


def ink_ratio(gray: Image.Image) -> float:
    """Share of dark pixels, margins excluded; a blank page is below ~0.002. Any size: it works
    on a ~640 px copy (a 300 dpi A4 page shrunk 4x), so a copy already shrunk costs nothing more."""
    a = np.asarray(shrink(gray), dtype=np.uint8)
    h, w = a.shape
    inner = a[h // 20: h - h // 20, w // 20: w - w // 20]
    if inner.size == 0:
        return 0.0
    # local threshold against the page's own paper brightness (aged paper is not white)
    paper = paper_level(inner)
    return float((inner < paper * 0.6).mean())


def rotate(img: Image.Image, degrees: float) -> Image.Image:
    """Counter-clockwise rotation, canvas expanded, new area filled with paper colour."""
    if degrees % 360 == 0:
        return img
    if degrees % 90 == 0:
        method = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180,
                  270: Image.Transpose.ROTATE_270}[int(degrees) % 360]
        return img.transpose(method)
    fill = 255 if img.mode == "L" else (255,) * len(img.getbands())
    return img.rotate(degrees, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=fill)
