"""Character error rate against ground truth, on whitespace-stripped text."""

from __future__ import annotations

import re

from rapidfuzz.distance import Levenshtein

_WS = re.compile(r"\s+")


def strip_ws(text: str) -> str:
    return _WS.sub("", text)


def edit_distance(reference: str, hypothesis: str) -> int:
    return Levenshtein.distance(strip_ws(reference), strip_ws(hypothesis))


def cer(reference: str, hypothesis: str) -> float:
    """Edits needed to turn the hypothesis into the reference, per reference character."""
    ref = strip_ws(reference)
    if not ref:
        return 0.0 if not strip_ws(hypothesis) else 1.0
    return Levenshtein.distance(ref, strip_ws(hypothesis)) / len(ref)


def corpus_cer(pairs: list[tuple[str, str]]) -> float:
    """Total edits over total reference characters (long pages weigh more than short ones)."""
    chars = sum(len(strip_ws(r)) for r, _ in pairs)
    edits = sum(edit_distance(r, h) for r, h in pairs)
    return edits / chars if chars else 0.0
