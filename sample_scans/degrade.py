"""Scan degradations: skew, sensor noise, low JPEG quality, lower resolution."""

from __future__ import annotations

import io
import random

import numpy as np
from PIL import Image


def skew(img: Image.Image, degrees: float) -> Image.Image:
    return img.rotate(degrees, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=255)


def noise(img: Image.Image, rng: random.Random, sigma: float = 12.0, speckle: float = 0.002) -> Image.Image:
    gen = np.random.default_rng(rng.randrange(2**32))
    a = np.asarray(img, dtype=np.float32)
    a = a + gen.normal(0.0, sigma, a.shape)
    dots = gen.random(a.shape) < speckle
    a[dots] = gen.choice([0.0, 255.0], size=int(dots.sum()))
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def resample_dpi(img: Image.Image, from_dpi: int, to_dpi: int) -> Image.Image:
    w, h = (round(x * to_dpi / from_dpi) for x in img.size)
    return img.resize((w, h), Image.Resampling.LANCZOS)


def encode(img: Image.Image, fmt: str, dpi: int, quality: int = 85) -> bytes:
    buf = io.BytesIO()
    if fmt == "jpg":
        img.save(buf, "JPEG", quality=quality, dpi=(dpi, dpi), optimize=True)
    elif fmt == "png":
        img.save(buf, "PNG", dpi=(dpi, dpi), optimize=True)
    elif fmt == "tif":
        img.save(buf, "TIFF", compression="tiff_lzw", dpi=(dpi, dpi))
    else:
        raise ValueError(f"unknown format {fmt}")
    return buf.getvalue()


# name -> (skew degrees range, noise, jpeg quality or None, dpi)
VARIANTS: dict[str, dict] = {
    "clean": {},
    "skew": {"skew": (1.0, 3.0)},
    "noise": {"noise": 10.0},
    "jpeg": {"quality": 35},
    "dpi200": {"dpi": 200},
    "combined": {"skew": (1.0, 2.0), "noise": 8.0, "quality": 50},
}


def apply(img: Image.Image, variant: str, rng: random.Random, dpi: int = 300) -> tuple[Image.Image, int, int]:
    """Returns (image, dpi, jpeg quality) for a named variant of a clean 300 dpi page."""
    spec = VARIANTS[variant]
    if "dpi" in spec:
        img = resample_dpi(img, dpi, spec["dpi"])
        dpi = spec["dpi"]
    if "skew" in spec:
        lo, hi = spec["skew"]
        img = skew(img, rng.choice((-1, 1)) * rng.uniform(lo, hi))
    if "noise" in spec:
        img = noise(img, rng, sigma=spec["noise"])
    return img, dpi, spec.get("quality", 85)
