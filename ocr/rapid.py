"""RapidOCR's PP-OCRv4 models (inside its wheel), run on OpenVINO (ocr/runtime.py).

We drive its three models ourselves instead of its all-in-one call, to add what scans need:
sideways and upside-down pages, skew, and reading order by rows, and to feed them cheaper
inputs (see det_input, rec_input). Line boxes are on the page as scanned, turned upright by
`rotation` but not deskewed.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ocr.engine import OcrSetupError, RawPage
from ocr.layout import Line, reading_order, skew_angle, tall_fraction
from ocr.preprocess import rotate
from ocr.runtime import OpenVinoModel

MIN_SKEW = 0.3        # degrees; below this, rows are formed on the page as it is
MIN_TEXT_SCORE = 0.5  # recognitions below this are noise (RapidOCR's own default)
REC_HEIGHT = 48       # the recognition model's input height
REC_WIDTH_STEP = 32   # line inputs padded to a multiple of this, not to RapidOCR's 320 minimum
REC_MARGIN = 16       # blank after the text: with none, a line-final 。 was read as °


def rec_input(crop: np.ndarray) -> np.ndarray:
    """A line crop as the recogniser's input: height 48, its own width plus a margin, padded to
    a multiple of 32.

    RapidOCR pads every line to at least 320 px (ratio 6.7); most lines of a form are shorter
    (table cells), so that padding was recognition time spent on blank.
    """
    h, w = crop.shape[:2]
    width = max(1, math.ceil(REC_HEIGHT * w / h))
    padded_width = math.ceil((width + REC_MARGIN) / REC_WIDTH_STEP) * REC_WIDTH_STEP
    padded = np.zeros((1, 3, REC_HEIGHT, padded_width), np.float32)
    shrinking = h > REC_HEIGHT
    line = cv2.resize(crop, (width, REC_HEIGHT), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    line = line.astype(np.float32).transpose(2, 0, 1)
    padded[0, :, :, :width] = line / 127.5 - 1.0  # RapidOCR's normalisation: mean 0.5, std 0.5
    return padded


def det_input(gray: np.ndarray) -> np.ndarray:
    """A gray page as the detector's input: sides rounded to multiples of 32, three channels."""
    h, w = gray.shape[:2]
    size = (max(32, round(w / 32) * 32), max(32, round(h / 32) * 32))
    if size != (w, h):
        gray = cv2.resize(gray, size)
    x = gray.astype(np.float32) / 127.5 - 1.0  # RapidOCR's normalisation: mean 0.5, std 0.5
    return np.ascontiguousarray(np.broadcast_to(x, (1, 3, size[1], size[0])))


class RapidEngine:
    name = "rapidocr"

    def __init__(self, det_side: int = 1024, rec_side: int = 2048) -> None:
        try:
            import rapidocr_onnxruntime
            from rapidocr_onnxruntime import RapidOCR
        except ImportError as exc:  # opencv needs libGL at import time
            raise OcrSetupError("无法加载 RapidOCR，请运行 `make setup`",
                                f"rapidocr cannot be loaded ({exc}); run `make setup` "
                                "(apt-get install libgl1 libglib2.0-0)") from exc
        self.det_side, self.rec_side = det_side, rec_side
        self.ocr = RapidOCR(intra_op_num_threads=1, inter_op_num_threads=1, use_cls=False)
        models = Path(rapidocr_onnxruntime.__file__).parent / "models"  # shipped in the wheel
        self.ocr.text_det.infer = OpenVinoModel(models / "ch_PP-OCRv4_det_infer.onnx")
        self.ocr.text_cls.infer = OpenVinoModel(models / "ch_ppocr_mobile_v2.0_cls_infer.onnx")
        # Our own input: RapidOCR's scales the short side up to 736 px (so a det_side below
        # ~1040 px was silently undone on A4) and normalises three identical channels.
        self.ocr.text_det.get_preprocess = lambda _longest_side: det_input
        self.rec = OpenVinoModel(models / "ch_PP-OCRv4_rec_infer.onnx")
        self.decode = self.ocr.text_rec.postprocess_op  # CTC over the character list in the model

    def _rec(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        # One line per call: a batch is padded to its widest line, so table cells beside
        # prose lines would be recognised at the prose's width.
        return [self.decode(self.rec(rec_input(crop))[0])[0][:2] for crop in crops]

    def _det(self, page: Image.Image) -> list[np.ndarray]:
        """Text line boxes, found on a small copy (detection cost grows with area), on `page`."""
        factor = min(1.0, self.det_side / max(page.size))
        small = page.resize((round(page.width * factor), round(page.height * factor)), Image.Resampling.BILINEAR,
                            reducing_gap=1.0) if factor < 1 else page
        boxes, _ = self.ocr.text_det(np.asarray(small))
        if boxes is None or len(boxes) == 0:
            return []
        return list(self.ocr.sorted_boxes(np.asarray(boxes, dtype=np.float32) / factor))

    def _turn_180(self, boxes: list[np.ndarray], page: Image.Image) -> list[np.ndarray]:
        """The boxes as they lie once `page` is turned 180 degrees: an upside-down page is not
        detected twice (the same lines are found either way). Not done for sideways pages: the
        detector finds sideways lines less well, so their turned boxes read worse than lines
        detected again."""
        w, h = page.size
        turned = [self.ocr.text_det.order_points_clockwise(np.stack([w - box[:, 0], h - box[:, 1]], axis=1))
                  for box in boxes]
        return list(self.ocr.sorted_boxes(np.asarray(turned, dtype=np.float32)))

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
        # Lanczos: bilinear is cheaper but reads a few characters worse
        page = gray.resize((round(gray.width * scale), round(gray.height * scale)), Image.Resampling.LANCZOS) \
            if scale < 1 else gray
        rotation = 0
        boxes = self._det(page)
        if len(boxes) >= 3 and tall_fraction(boxes) > 0.5:  # lying sideways
            page, rotation = rotate(page, 90), 90
            boxes = self._det(page)
        arr = np.asarray(page.convert("RGB"))
        if self._upside_down(arr, boxes):
            boxes, page, rotation = self._turn_180(boxes, page), rotate(page, 180), (rotation + 180) % 360
            arr = np.asarray(page.convert("RGB"))
        # Skew needs no rotated image: each line is cut out along its own box angle, and the
        # reading order below is computed in deskewed coordinates (a second detection pass on a
        # rotated page would cost time for the same text).
        angle = skew_angle(boxes)
        skew = angle if abs(angle) > MIN_SKEW else 0.0
        lines = []
        if boxes:
            results = self._rec(self.ocr.get_crop_img_list(arr, boxes))
            for box, (text, score) in zip(boxes, results, strict=True):
                if text.strip() and score >= MIN_TEXT_SCORE:
                    lines.append(Line(text.strip(), float(score), np.asarray(box, dtype=np.float32) / scale))
        return RawPage(reading_order(lines, skew), rotation, round(skew, 2), scale)

    def close(self) -> None:
        pass
