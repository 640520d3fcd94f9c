"""Scan degradations: skew, sensor noise, low JPEG quality, lower resolution."""

from __future__ import annotations

import io
import math
import random

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from sample_scans.render import available_fonts


def skew(img: Image.Image, degrees: float) -> Image.Image:
    fill = 255 if img.mode == "L" else (255,) * len(img.getbands())  # scanner lid: white
    return img.rotate(degrees, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=fill)


def noise(img: Image.Image, rng: random.Random, sigma: float = 12.0, speckle: float = 0.002) -> Image.Image:
    gen = np.random.default_rng(rng.randrange(2**32))
    if img.mode != "L":
        img = img.convert("L")
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


def seal(img: Image.Image, rng: random.Random, agency: str, center: tuple[float, float] | None = None,
         dpi: int = 300) -> Image.Image:
    """A red official seal (公章) stamped over the page: ring, star, agency name on the arc."""
    page = img.convert("RGB")
    r = round(0.8 * dpi)  # ~42 mm across, as real seals
    size = 2 * r + 20
    stamp = Image.new("L", (size, size), 0)  # seal ink coverage
    d = ImageDraw.Draw(stamp)
    c = size / 2
    d.ellipse([c - r, c - r, c + r, c + r], outline=255, width=max(4, dpi // 40))
    star = [(c + 0.28 * r * math.cos(math.radians(-90 + i * 36)) * (1 if i % 2 == 0 else 0.4),
             c + 0.28 * r * math.sin(math.radians(-90 + i * 36)) * (1 if i % 2 == 0 else 0.4)) for i in range(10)]
    d.polygon(star, fill=255)
    font = ImageFont.truetype(available_fonts().get("song") or next(iter(available_fonts().values())), round(r * 0.22))
    n = len(agency)
    for i, ch in enumerate(agency):
        angle = -150 + 300 * (i + 0.5) / n  # arc over the top, clockwise
        glyph = Image.new("L", (round(r * 0.3), round(r * 0.3)), 0)
        ImageDraw.Draw(glyph).text((glyph.width / 2, glyph.height / 2), ch, font=font, fill=255, anchor="mm")
        glyph = glyph.rotate(-angle, expand=True)
        x = c + 0.75 * r * math.sin(math.radians(angle)) - glyph.width / 2
        y = c - 0.75 * r * math.cos(math.radians(angle)) - glyph.height / 2
        stamp.paste(255, (round(x), round(y)), glyph)
    ImageDraw.Draw(stamp).text((c, c + 0.55 * r), "专用章", font=font, fill=255, anchor="mm")
    stamp = stamp.rotate(rng.uniform(-20, 20)).filter(ImageFilter.GaussianBlur(1.2))
    # uneven inking: a real stamp is never solid
    grain = np.asarray(Image.effect_noise(stamp.size, 60).filter(ImageFilter.GaussianBlur(2)), dtype=np.float32)
    alpha = np.asarray(stamp, dtype=np.float32) / 255 * np.clip(0.55 + (grain - 128) / 255, 0.3, 0.95)
    cx, cy = center or (rng.uniform(0.55, 0.75), rng.uniform(0.3, 0.8))
    x0, y0 = round(cx * page.width - size / 2), round(cy * page.height - size / 2)
    region = np.asarray(page.crop((x0, y0, x0 + size, y0 + size)), dtype=np.float32)
    red = np.array([205.0, 35.0, 45.0])
    blended = region * (1 - alpha[..., None]) + np.minimum(region, red) * alpha[..., None]  # ink over ink
    page.paste(Image.fromarray(blended.astype(np.uint8)), (x0, y0))
    return page


def aged(img: Image.Image, rng: random.Random) -> Image.Image:
    """Yellowed paper of uneven brightness with a few stains (multiplied under the ink)."""
    w, h = img.size
    yy, xx = np.mgrid[0:h:8, 0:w:8].astype(np.float32)
    cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
    dist = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2) / math.hypot(w, h)
    light = 1.0 - rng.uniform(0.25, 0.4) * dist - rng.uniform(0.0, 0.08) * (yy / h)  # darker edges, one side
    for _ in range(rng.randint(1, 3)):  # tea or water stains
        sx, sy, sr = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.04, 0.1) * w
        light -= 0.12 * np.exp(-(((xx - sx) ** 2 + (yy - sy) ** 2) / (2 * sr ** 2)))
    light_img = Image.fromarray((np.clip(light, 0.4, 1.0) * 255).astype(np.uint8)).resize((w, h), Image.BILINEAR)
    base = np.asarray(light_img, dtype=np.float32)[..., None] / 255 * np.array([0.96, 0.90, 0.74])
    page = np.asarray(img.convert("RGB"), dtype=np.float32) * base
    return Image.fromarray(np.clip(page, 0, 255).astype(np.uint8))


# name -> (skew degrees range, noise, jpeg quality or None, dpi)
VARIANTS: dict[str, dict] = {
    "clean": {},
    "skew": {"skew": (1.0, 3.0)},
    "noise": {"noise": 10.0},
    "jpeg": {"quality": 35},
    "dpi200": {"dpi": 200},
    "combined": {"skew": (1.0, 2.0), "noise": 8.0, "quality": 50},
    "seal": {"seal": True},
    "aged": {"aged": True, "seal": True, "quality": 70},
    "upside_down": {"turn": 180},
    "sideways": {"turn": 90},
    # a real archive mix: aged, sealed, skewed, JPEG, and now and then turned over
    "archive": {"aged": True, "seal": True, "skew": (0.5, 2.5), "quality": 60},
}


def apply(img: Image.Image, variant: str, rng: random.Random, dpi: int = 300) -> tuple[Image.Image, int, int]:
    """Returns (image, dpi, jpeg quality) for a named variant of a clean 300 dpi page."""
    spec = VARIANTS[variant]
    if spec.get("aged"):
        img = aged(img, rng)
    if spec.get("seal"):
        img = seal(img, rng, rng.choice(SEAL_AGENCIES), dpi=dpi)
    if "dpi" in spec:
        img = resample_dpi(img, dpi, spec["dpi"])
        dpi = spec["dpi"]
    if "skew" in spec:
        lo, hi = spec["skew"]
        img = skew(img, rng.choice((-1, 1)) * rng.uniform(lo, hi))
    if "noise" in spec:
        img = noise(img, rng, sigma=spec["noise"])
    if "turn" in spec:
        img = img.rotate(spec["turn"] * rng.choice((1, -1)) if spec["turn"] == 90 else spec["turn"], expand=True)
    return img, dpi, spec.get("quality", 85)


SEAL_AGENCIES = ["贵阳市人才服务中心", "遵义市人力资源和社会保障局", "贵州某信息技术有限公司", "贵州大学学生工作部"]
