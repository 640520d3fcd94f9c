"""Reading order from text-line boxes: skew estimate, rows, left to right.

Rows are formed after rotating box centres by the page's skew, so a 3° tilt does not
interleave neighbouring lines, and cells of one table row come out as one line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


@dataclass
class Line:
    text: str
    score: float                 # 0-1
    box: np.ndarray              # 4x2 corner points, clockwise from top-left

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        xs, ys = self.box[:, 0], self.box[:, 1]
        return int(xs.min()), int(ys.min()), int(math.ceil(xs.max())), int(math.ceil(ys.max()))


def box_angle(box: np.ndarray) -> float:
    """Angle in degrees of a box's top edge (positive: clockwise in image coordinates)."""
    (x0, y0), (x1, y1) = box[0], box[1]
    return math.degrees(math.atan2(y1 - y0, x1 - x0))


def skew_angle(boxes: list[np.ndarray]) -> float:
    """Median top-edge angle of the clearly horizontal, wide boxes; 0 when there are none."""
    angles = []
    for b in boxes:
        w = np.linalg.norm(b[1] - b[0])
        h = np.linalg.norm(b[3] - b[0])
        if w > 3 * h and h > 0:
            angles.append(box_angle(b))
    return float(np.median(angles)) if angles else 0.0


def tall_fraction(boxes: list[np.ndarray]) -> float:
    """Share of boxes taller than wide: most boxes tall means the page lies sideways."""
    if not boxes:
        return 0.0
    tall = 0
    for b in boxes:
        w = np.linalg.norm(b[1] - b[0])
        h = np.linalg.norm(b[3] - b[0])
        tall += h > 1.5 * w
    return tall / len(boxes)


class _Placed(NamedTuple):
    """A line's centre in the page's upright frame (y down the page, x along it) and its height."""

    y: float
    x: float
    height: float
    line: Line


def reading_order(lines: list[Line], angle: float = 0.0) -> list[list[Line]]:
    """Rows of lines, top to bottom, each row left to right."""
    if not lines:
        return []
    rad = math.radians(-angle)
    cos, sin = math.cos(rad), math.sin(rad)
    items = []
    for ln in lines:
        cx, cy = ln.box[:, 0].mean(), ln.box[:, 1].mean()
        height = np.linalg.norm(ln.box[3] - ln.box[0])
        items.append(_Placed(cx * sin + cy * cos, cx * cos - cy * sin, height, ln))
    items.sort(key=lambda t: t.y)
    rows: list[list[_Placed]] = []
    for item in items:
        if rows:
            row = rows[-1]
            row_y = sum(t.y for t in row) / len(row)
            row_h = sum(t.height for t in row) / len(row)
            if abs(item.y - row_y) < 0.5 * min(row_h, item.height):
                row.append(item)
                continue
        rows.append([item])
    return [[t.line for t in sorted(row, key=lambda t: t.x)] for row in rows]
