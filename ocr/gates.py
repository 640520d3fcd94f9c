"""Quality gates on one page's OCR: what a person would notice at a glance.

Tesseract can return nothing on a noisy page while reporting confidence 95, so emptiness is
judged against the ink on the page, not against the engine's own confidence.
"""

from __future__ import annotations

from ocr.quality import strip_ws

BLANK_INK = 0.002          # below this share of dark pixels a page is blank (flagged, not failed)
MIN_CONFIDENCE = 70.0      # mean line confidence, 0-100
# Ink per character (share of dark pixels, ink_ratio, per character of ground truth), measured
# with ink_ratio on its ~640 px box-reduced copy on 30 generated pages (forms and prose; clean,
# noisy, aged, 200 dpi, sealed, archive, combined): 0.000055-0.000135, median 0.00008. The gate
# fires when a page shows more than 0.00025 per character read (INK_PER_CHAR /
# MIN_SHARE_OF_EXPECTED), 1.85x the heaviest page measured.
INK_PER_CHAR = 0.00005
MIN_SHARE_OF_EXPECTED = 0.2


GATES = ("empty", "too_short_for_ink", "low_confidence")


def check(text: str, confidence: float, ink: float) -> list[str]:
    """Names of the gates the page fails; empty when it passes."""
    if ink < BLANK_INK:
        return []
    chars = len(strip_ws(text))
    if chars < 3:
        return ["empty"]
    flags = []
    if chars < MIN_SHARE_OF_EXPECTED * ink / INK_PER_CHAR:
        flags.append("too_short_for_ink")
    if confidence < MIN_CONFIDENCE:
        flags.append("low_confidence")
    return flags
