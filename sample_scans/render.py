"""Renders page layouts (titles, prose, ruled forms) to 300 dpi images plus their ground truth.

Ground truth is the drawn text in reading order: one line per printed line, table rows
left to right.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field

from PIL import Image, ImageDraw, ImageFont

from errors import SetupError

A4_INCHES = (8.27, 11.69)
FONT_CANDIDATES = {
    "hei": ["/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc", "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"],
    "song": ["/usr/share/fonts/truetype/arphic/uming.ttc", "/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc"],
    "kai": ["/usr/share/fonts/truetype/arphic/ukai.ttc"],
}


class FontMissing(SetupError):
    """No CJK font to render sample pages with."""


def available_fonts() -> dict[str, str]:
    """Style name -> font file, for the CJK fonts installed on this machine."""
    found = {}
    for style, paths in FONT_CANDIDATES.items():
        for path in paths + sorted(glob.glob(f"/usr/share/fonts/**/*{style}*.tt[cf]", recursive=True)):
            if os.path.exists(path):
                found[style] = path
                break
    if not found:
        raise FontMissing("未找到中文字体，请运行 `make setup`", "no CJK font found: install fonts-wqy-zenhei "
                          "(run `make setup`)")
    return found


@dataclass
class Page:
    """A page being laid out at a given dpi; `lines` collects the ground truth."""

    font_path: str
    dpi: int = 300
    image: Image.Image = field(init=False)
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        w, h = (round(x * self.dpi) for x in A4_INCHES)
        self.image = Image.new("L", (w, h), 255)
        self.draw = ImageDraw.Draw(self.image)
        self.margin = round(0.9 * self.dpi)
        self.y = round(0.9 * self.dpi)

    def px(self, points: float) -> int:
        return round(points / 72 * self.dpi)

    def font(self, points: float) -> ImageFont.FreeTypeFont:
        return ImageFont.truetype(self.font_path, self.px(points))

    @property
    def width(self) -> int:
        return self.image.width - 2 * self.margin

    def title(self, text: str, points: float = 18) -> None:
        font = self.font(points)
        w = font.getlength(text)
        self.draw.text(((self.image.width - w) / 2, self.y), text, font=font, fill=0)
        self.lines.append(text)
        self.y += round(self.px(points) * 2.2)

    def paragraph(self, text: str, points: float = 12, indent: bool = True) -> None:
        font = self.font(points)
        size = self.px(points)
        rows, current = [], "\u3000\u3000" if indent else ""
        for ch in text:
            if font.getlength(current + ch) > self.width:
                rows.append(current)
                current = ""
            current += ch
        rows.append(current)
        for row in rows:
            self.draw.text((self.margin, self.y), row, font=font, fill=0)
            self.lines.append(row.strip("\u3000 "))
            self.y += round(size * 1.7)
        self.y += round(size * 0.5)

    def table(self, rows: list[list[str]], widths: list[float], points: float = 11) -> None:
        """A ruled table; `widths` are column fractions of the text width."""
        font = self.font(points)
        size = self.px(points)
        xs = [self.margin]
        for frac in widths:
            xs.append(xs[-1] + round(frac * self.width))
        row_h = round(size * 2.2)
        line_w = max(2, self.dpi // 150)
        for row in rows:
            top = self.y
            for i, cell in enumerate(row):
                x0, x1 = xs[i], xs[i + 1] if i + 1 < len(row) else xs[-1]
                self.draw.rectangle([x0, top, x1, top + row_h], outline=0, width=line_w)
                if cell:
                    self.draw.text((x0 + size * 0.4, top + (row_h - size) / 2), cell, font=font, fill=0)
            self.lines.append(" ".join(c for c in row if c))
            self.y += row_h
        self.y += round(size * 1.2)

    def room(self, points: float = 12) -> int:
        """Lines of body text that still fit above the bottom margin."""
        return max(0, (self.image.height - self.margin - self.y) // round(self.px(points) * 1.7))

    def truth(self) -> str:
        return "\n".join(line for line in self.lines if line) + "\n"
