"""RapidOCR (PP-OCRv4 detection and recognition on onnxruntime, models inside the wheel).

We drive its three models ourselves instead of its all-in-one call, to add what scans need:
sideways and upside-down pages, skew, and reading order by rows. Line boxes are on the page
as scanned, turned upright by `rotation` but not deskewed.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ocr.engine import OcrSetupError, RawPage
from ocr.layout import Line, reading_order, skew_angle, tall_fraction
from ocr.preprocess import rotate

MIN_SKEW = 0.3        # degrees; below this, rows are formed on the page as it is
MIN_TEXT_SCORE = 0.5  # recognitions below this are noise (RapidOCR's own default)


class RapidEngine:
    name = "rapidocr"

    def __init__(self, det_side: int = 1024, rec_side: int = 2048) -> None:
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ImportError as exc:  # opencv needs libGL at import time
            raise OcrSetupError(f"rapidocr cannot be loaded ({exc}); run `make setup` "
                                "(apt-get install libgl1 libglib2.0-0)") from exc
        self.det_side, self.rec_side = det_side, rec_side
        self.ocr = RapidOCR(intra_op_num_threads=1, inter_op_num_threads=1, use_cls=False)
        # One line per batch: a batch is padded to its widest line, and table cells beside
        # prose lines made recognition 1.8x slower at the default of 6 (measured).
        self.ocr.text_rec.rec_batch_num = 1

    def _det(self, page: Image.Image) -> tuple[np.ndarray, list[np.ndarray]]:
        """Detects on a small copy (detection cost grows with area), crops from `page`."""
        factor = min(1.0, self.det_side / max(page.size))
        small = page.resize((round(page.width * factor), round(page.height * factor)), Image.Resampling.BILINEAR) \
            if factor < 1 else page
        boxes, _ = self.ocr.text_det(np.asarray(small.convert("RGB")))
        arr = np.asarray(page.convert("RGB"))
        if boxes is None or len(boxes) == 0:
            return arr, []
        return arr, list(self.ocr.sorted_boxes(np.asarray(boxes, dtype=np.float32) / factor))

    def _upside_down(self, arr: np.ndarray, boxes: list[np.ndarray]) -> bool:
        """Majority vote of the line-direction classifier over the widest lines."""
        widest = sorted(boxes, key=lambda b: -np.linalg.norm(b[1] - b[0]))[:15]
        if not widest:
            return False
        _, votes, _ = self.ocr.text_cls(self.ocr.get_crop_img_list(arr, widest))
        flipped = sum(1 for label, score in votes if label == "180" and score > 0.8)
        return flipped > len(votes) / 2

    def recognise(self, gray: Image.Image, dpi: int = 300) -> RawPage:  # sizes come from pixels, not dpi
        scale = min(1.0, self.rec_side / max(gray.size))
        page = gray.resize((round(gray.width * scale), round(gray.height * scale)), Image.Resampling.LANCZOS) \
            if scale < 1 else gray
        rotation, skew = 0, 0.0
        arr, boxes = self._det(page)
        if len(boxes) >= 3 and tall_fraction(boxes) > 0.5:  # lying sideways
            rotation = 90
            page = rotate(page, 90)
            arr, boxes = self._det(page)
        # Skew needs no rotated image: each line is cut out along its own box angle, and the
        # reading order below is computed in deskewed coordinates (a second detection pass on a
        # rotated page made skewed pages 1.6x slower for the same text).
        angle = skew_angle(boxes)
        if abs(angle) > MIN_SKEW:
            skew = angle
        if self._upside_down(arr, boxes):
            rotation = (rotation + 180) % 360
            page = rotate(page, 180)
            arr, boxes = self._det(page)
        lines = []
        if boxes:
            results, _ = self.ocr.text_rec(self.ocr.get_crop_img_list(arr, boxes))
            for box, (text, score) in zip(boxes, results, strict=True):
                if text.strip() and score >= MIN_TEXT_SCORE:
                    lines.append(Line(text.strip(), float(score), np.asarray(box, dtype=np.float32) / scale))
        return RawPage(reading_order(lines, skew), rotation, round(skew, 2), scale)

    def close(self) -> None:
        pass
