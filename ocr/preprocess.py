"""Page clean-up on a working copy (originals are never touched): colour, ink, rotation."""

from __future__ import annotations

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


def ink_ratio(gray: Image.Image) -> float:
    """Share of dark pixels, margins excluded; a blank page is below ~0.002. Any size: it works
    on a ~640 px copy (a 300 dpi A4 page shrunk 4x), so a copy already shrunk costs nothing more."""
    a = np.asarray(shrink(gray), dtype=np.uint8)
    h, w = a.shape
    inner = a[h // 20: h - h // 20, w // 20: w - w // 20]
    if inner.size == 0:
        return 0.0
    # local threshold against the page's own paper brightness (aged paper is not white)
    paper = float(np.percentile(inner, 90))
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
