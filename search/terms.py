"""Index terms for Chinese text without a segmenter.

PostgreSQL's full-text search sees a run of Chinese characters as one token, and pg_trgm
cannot serve 2-character queries such as 张三. Every CJK character and every pair of adjacent
CJK characters becomes a term, and so does every Latin or digit word (lowercased). A query's
terms must all be present (a GIN index answers that), then the exact substring is checked:
the result is exactly what `LIKE '%q%'` finds, only fast.
"""

from __future__ import annotations

import re

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]+|[0-9A-Za-z]+")


def terms(text: str) -> list[str]:
    """Sorted distinct terms of a text: CJK unigrams and bigrams, Latin/digit words."""
    out: set[str] = set()
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
    """The fewest terms every text containing `query` must have: its bigrams (or the lone
    character) per CJK run, and the Latin/digit words, whole words only when the query
    cannot start or end inside a longer word."""
    out: set[str] = set()
    tokens = list(_TOKEN.finditer(query))
    for i, m in enumerate(tokens):
        run = m.group()
        if run[0].isascii():
            # a query word touching the query's edge may be part of a longer word in the text
            if 0 < i < len(tokens) - 1 or (m.start() > 0 and m.end() < len(query)):
                out.add(run.lower())
            continue
        if len(run) == 1:
            out.add(run)
        else:
            out.update(run[j:j + 2] for j in range(len(run) - 1))
    return sorted(out)
