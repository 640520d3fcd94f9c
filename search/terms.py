"""Index terms for Chinese text without a segmenter.

PostgreSQL's full-text search sees a run of Chinese characters as one token, and pg_trgm
cannot serve 2-character queries such as 张三. Every CJK character and every pair of adjacent
CJK characters becomes a term, and so does every Latin or digit word (lowercased), and every
CJK character with the punctuation mark beside it (力。 。不). A query's terms must all be
present (a GIN index answers that), then the exact substring is checked: the result is exactly
what `LIKE '%q%'` finds, only fast. Whether two characters make a term depends on those two
characters only, so a query's pairs are always among its matches' terms.
"""

from __future__ import annotations

import re

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_PUNCT = "\u2014\u2018-\u201d\u2026\u3000-\u303f\uff00-\uffef"  # — ‘’“” … 、。《》 ，：；！？（）
_TOKEN = re.compile(rf"[{_CJK}]+|[0-9A-Za-z]+")
# A CJK character and a punctuation mark side by side; valid in PostgreSQL's regular expressions
# too (the migration that added these terms finds the pages holding any).
PUNCT_PAIR_SQL = f"[{_CJK}][{_PUNCT}]|[{_PUNCT}][{_CJK}]"
_PUNCT_PAIR = re.compile(f"(?=({PUNCT_PAIR_SQL}))")  # every pair, overlapping: the lookahead captures


def terms(text: str) -> list[str]:
    """Sorted distinct terms of a text: CJK unigrams and bigrams, CJK-punctuation pairs,
    Latin/digit words."""
    out: set[str] = set(_PUNCT_PAIR.findall(text or ""))
    for run in _TOKEN.findall(text or ""):
        if run[0].isascii():
            out.add(run.lower())
        else:
            out.update(run)
            out.update(run[i:i + 2] for i in range(len(run) - 1))
    return sorted(out)


def terms_text(text: str) -> str:
    """The terms space-joined, as stored (no term contains a space)."""
    return " ".join(terms(text))


def class_terms(class_code: str) -> list[str]:
    """Terms of a material's class, so a class filter narrows the index lookup itself instead of
    filtering pages after it: `4-1` gives cls:4 and cls:4-1 (a filter on 4 covers 4-1 to 4-4).
    No text term contains a colon, so they never meet a word of the text."""
    parent = class_code.split("-")[0]
    return [f"cls:{parent}"] + ([f"cls:{class_code}"] if class_code != parent else [])


def page_terms_text(text: str, class_code: str) -> str:
    """What a page stores: its text's terms, then its material's class terms."""
    return " ".join(filter(None, [terms_text(text), *class_terms(class_code)]))


def query_terms(query: str) -> list[str]:
    """The fewest terms every text containing `query` must have: its bigrams per CJK run, its
    CJK-punctuation pairs (a lone character only when no pair holds it: 能力。不 asks for 能力
    力。 。不, not for 不, which is on nearly every page), and the Latin/digit words, whole words
    only when the query cannot start or end inside a longer word."""
    pairs = list(_PUNCT_PAIR.finditer(query))
    out: set[str] = {m.group(1) for m in pairs}
    paired = {m.start() for m in pairs} | {m.start() + 1 for m in pairs}
    tokens = list(_TOKEN.finditer(query))
    for i, m in enumerate(tokens):
        run = m.group()
        if run[0].isascii():
            # a query word touching the query's edge may be part of a longer word in the text
            if 0 < i < len(tokens) - 1 or (m.start() > 0 and m.end() < len(query)):
                out.add(run.lower())
            continue
        if len(run) == 1:
            if m.start() not in paired:
                out.add(run)
        else:
            out.update(run[j:j + 2] for j in range(len(run) - 1))
    return sorted(out)
