"""Clean-up of tesseract's Chinese output.

Tesseract separates CJK characters with spaces and prints ASCII punctuation (`:` for `：`).
Chinese text has no spaces between characters and uses full-width punctuation after CJK.
"""

from __future__ import annotations

import re

_CJK = r"\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
_SPACE_BETWEEN_CJK = re.compile(rf"(?<=[{_CJK}])[ \t]+(?=[{_CJK}])")
_FULLWIDTH = {":": "：", ",": "，", ";": "；", "?": "？", "!": "！", "(": "（", ")": "）"}
# ASCII punctuation directly after a CJK character (spaces allowed between) becomes full-width;
# `1990.07`, `10:30` and English text keep theirs.
_PUNCT_AFTER_CJK = re.compile(rf"(?<=[{_CJK}])[ \t]*([:,;?!()])")
_OPEN_PAREN_BEFORE_CJK = re.compile(rf"\((?=[ \t]*[{_CJK}])")
# A date range 1990.09—1992.07: engines read the dash as 一 ("one"), which never stands
# between Arabic digits in Chinese text.
_DASH_BETWEEN_DIGITS = re.compile(r"(?<=\d)[ \t]*[一_~～－][ \t]*(?=\d)")


def normalise(text: str) -> str:
    """Remove inter-CJK spaces, restore full-width punctuation, trim each line."""
    out = []
    for line in text.splitlines():
        line = _PUNCT_AFTER_CJK.sub(lambda m: _FULLWIDTH[m.group(1)], line)
        line = _OPEN_PAREN_BEFORE_CJK.sub("（", line)
        line = _DASH_BETWEEN_DIGITS.sub("—", line)
        # a second pass: substitution may have created new CJK neighbours
        line = _SPACE_BETWEEN_CJK.sub("", _SPACE_BETWEEN_CJK.sub("", line))
        line = line.strip()
        if line:
            out.append(line)
    return "\n".join(out)


def is_cjk(ch: str) -> bool:
    return re.match(f"[{_CJK}]", ch) is not None
