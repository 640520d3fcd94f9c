"""Index terms for Chinese text without a segmenter, as 32-bit codes.

PostgreSQL's full-text search sees a run of Chinese characters as one token, and pg_trgm
cannot serve 2-character queries such as 张三. A text's terms are
  - every CJK character (1-character queries);
  - every pair of adjacent characters, neither a space: CJK bigrams (张三), a character beside
    punctuation (力。 。不) or a digit (9年), two digits (20);
  - every Latin/digit word of three characters or more (CET4, 2009; shorter ones are pairs);
and a page also carries its material's class (cls:4, cls:4-1) and year of formation (yr:2016),
so a class filter, or one on formation dates within a few years, narrows the index lookup
itself. A query's terms must all be present (a GIN index answers that), then the
exact substring is checked: the result is exactly what `LIKE '%q%'` finds, only fast. Whether
two characters make a term depends on those two characters only, so a query's pairs are always
among its matches' terms.

Terms are int4 codes, not text: GIN over int4[] builds faster and the rows are smaller, and
COPY takes them in binary without parsing. A character
is its code point; a pair is first << 16 | second (both in the Basic Multilingual Plane, where
every CJK character and punctuation mark in use is); a word or class is its CRC-32. Characters
and pairs never share a code; a word may share one with either (1 in 2^32), which only adds a
candidate the LIKE check drops.

Shards: a page's codes are stored XORed with the salt of one of SHARDS shards, chosen by its
personnel file, which no rescan or resubmission changes (a page's codes stay the same) and whose
pages lie together in the table. A query looks its codes up shard by shard, salted the same
way, and stops once it has its window of pages: GIN builds the whole candidate list of a lookup
before the first row, so a phrase on thousands of pages pays for one shard's candidates, not
all of them (docs/benchmarks.md). Shard 0's salt is 0: its codes are the codes themselves. A
salted code can meet another code, which only adds a candidate the LIKE check drops.
"""

from __future__ import annotations

import functools
import string
import zlib
from collections.abc import Sequence

import numpy as np

_CJK_RANGES = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x2FA1F), (0x30000, 0x3134F))
_IS_CJK = np.zeros(0x10000, dtype=bool)  # by BMP code point
for _lo, _hi in _CJK_RANGES[:3]:
    _IS_CJK[_lo:_hi + 1] = True
# U+FFFF (a noncharacter) is in no pair and no word is given its code, so it can mark "no term"
_IN_PAIRS = np.array([not (chr(i).isspace() or i < 0x20 or 0xD800 <= i < 0xE000 or i == 0xFFFF)
                      for i in range(0x10000)])
_NONE = np.uint32(0xFFFFFFFF)
_IS_WORD = np.zeros(0x10000, dtype=bool)
_IS_WORD[[ord(ch) for ch in string.digits + string.ascii_letters]] = True


def _classify(c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For code points along the last axis: (is CJK, whether characters i and i+1 make a pair,
    the code of that pair); one beyond the BMP is never in a pair."""
    bmp = np.minimum(c, 0xFFFF)
    cjk, in_pairs = _IS_CJK[bmp], _IN_PAIRS[bmp]
    beyond = c > 0xFFFF
    if beyond.any():
        cjk = np.where(beyond, np.any([(c >= lo) & (c <= hi) for lo, hi in _CJK_RANGES[3:]], axis=0), cjk)
        in_pairs &= ~beyond
    return cjk, in_pairs[..., :-1] & in_pairs[..., 1:], (c[..., :-1] << 16) | c[..., 1:]


@functools.lru_cache(maxsize=1 << 16)  # years, numbers and class terms come back on every page
def _word_code(word: str) -> int:
    code = zlib.crc32(word.encode())
    return code if code != _NONE else code - 1


SHARDS = 8
# multiples of the golden ratio's 32 bits: salts that differ in many bits; shard 0's is 0
SALTS = np.array([(s * 0x9E3779B9) & 0xFFFFFFFF for s in range(SHARDS)], dtype=np.uint32)


def shard_of(file_number: str) -> int:
    """The shard of a personnel file's pages."""
    return zlib.crc32(file_number.encode()) % SHARDS


def salted(codes: Sequence[int], shard: int) -> list[int]:
    """`codes` as they are stored in `shard`."""
    return (np.asarray(codes, dtype=np.int32).view(np.uint32) ^ SALTS[shard]).view(np.int32).tolist()


def salted_all(code: int) -> list[int]:
    """One code as each shard stores it."""
    return (np.uint32(code & 0xFFFFFFFF) ^ SALTS).view(np.int32).tolist()


def many_codes(texts: Sequence[str], extras: Sequence[tuple[str, ...]] | None = None,
               shards: Sequence[int] | None = None) -> list[np.ndarray]:
    """Distinct codes of each text's terms and of its `extras` words, as int4, salted for its
    shard if `shards` are given. Texts of similar length are laid out as the rows of one array,
    padded with spaces, so the array operations run once for them all: each costs about the same
    however short the text."""
    extras = extras or [()] * len(texts)
    out: list[np.ndarray] = [np.empty(0, dtype=np.int32)] * len(texts)
    by_width: dict[int, list[int]] = {}
    for i, text in enumerate(texts):  # at least one space after each text: no word runs on
        by_width.setdefault(len(text or "") // 64 * 64 + 64, []).append(i)
    for width, rows in by_width.items():
        block = "".join((texts[i] or "").ljust(width) for i in rows)
        c = np.frombuffer(block.encode("utf-32-le", "surrogatepass"), dtype="<u4").reshape(len(rows), width)
        cjk, pairs, pair_codes = _classify(c)
        starts, _, words = _words(block, c)
        per_row = np.bincount(starts // width, minlength=len(rows))
        n_extra = max(len(extras[i]) for i in rows)
        codes = np.full((len(rows), 2 * width - 1 + int(per_row.max(initial=0)) + n_extra), _NONE, dtype=np.uint32)
        codes[:, :width] = np.where(cjk, c, _NONE)
        codes[:, width:2 * width - 1] = np.where(pairs, pair_codes, _NONE)
        if words:  # each word in its row's next free column
            row_of = starts // width
            nth = np.arange(len(words)) - np.concatenate(([0], np.cumsum(per_row)))[row_of]
            codes[row_of, 2 * width - 1 + nth] = words
        if n_extra:  # each row's extra words in the last columns, padded
            codes[:, codes.shape[1] - n_extra:] = [_extra_codes(tuple(extras[i]), n_extra) for i in rows]
        codes.sort(axis=1)
        keep = codes != _NONE
        keep[:, 1:] &= codes[:, 1:] != codes[:, :-1]
        counts = keep.sum(axis=1)
        flat = codes[keep]
        if shards is not None:  # each row's codes XOR its shard's salt
            flat ^= np.repeat(SALTS[[shards[i] for i in rows]], counts)
        flat = flat.view(np.int32)
        offsets = np.concatenate(([0], np.cumsum(counts))).tolist()
        for row, i in enumerate(rows):
            out[i] = flat[offsets[row]:offsets[row + 1]]
    return out


@functools.lru_cache(maxsize=1 << 12)  # a page's class and year: a few hundred combinations
def _extra_codes(words: tuple[str, ...], width: int) -> tuple[int, ...]:
    return tuple(_word_code(w) for w in words) + (int(_NONE),) * (width - len(words))


def _words(block: str, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(starts, ends, codes) of the Latin/digit words of three characters or more in `block`
    (shorter ones are pairs already); `c` its code points."""
    is_word = _IS_WORD[np.minimum(c.ravel(), 0xFFFF)]
    edges = np.flatnonzero(is_word[1:] != is_word[:-1]) + 1  # where a run of word characters starts or ends
    if len(is_word) and is_word[0]:
        edges = np.concatenate(([0], edges))
    if len(is_word) and is_word[-1]:
        edges = np.append(edges, len(is_word))
    starts, ends = edges[0::2], edges[1::2]
    long = ends - starts >= 3
    starts, ends = starts[long], ends[long]
    return starts, ends, [_word_code(block[s:e]) for s, e in zip(starts.tolist(), ends.tolist(), strict=True)]


def text_codes(text: str, extra: tuple[str, ...] = ()) -> np.ndarray:
    """Distinct codes of a text's terms (and of `extra` words), as int4 values."""
    return many_codes([text], [extra])[0]


def class_terms(class_code: str) -> tuple[str, ...]:
    """Terms of a material's class: `4-1` gives cls:4 and cls:4-1 (a filter on 4 covers 4-1 to
    4-4). No word of a text contains a colon, so they never meet one."""
    parent = class_code.split("-")[0]
    return (f"cls:{parent}",) + ((f"cls:{class_code}",) if class_code != parent else ())


def class_code_term(class_code: str) -> int:
    """The code a class filter asks for (the class itself: cls:4 or cls:4-1)."""
    return term_code(class_terms(class_code)[-1])


def year_term(year: int) -> str:
    """The term of a material's year of formation (yr:2016): a filter on formation dates within
    a few years asks for one of them, so the index narrows by dates too."""
    return f"yr:{year}"


def year_codes(years: Sequence[int]) -> list[int]:
    """The codes a filter on those years of formation asks for, one of which a page must have."""
    return [term_code(year_term(y)) for y in years]


def page_codes(text: str, class_code: str, year: int, shard: int) -> np.ndarray:
    """What a page stores: its text's term codes, its material's class terms and year of
    formation, salted for its shard."""
    return many_page_codes([text], [class_code], [year], [shard])[0]


def many_page_codes(texts: Sequence[str], class_codes: Sequence[str], years: Sequence[int],
                    shards: Sequence[int]) -> list[np.ndarray]:
    """page_codes of many pages at once (see many_codes for how much faster)."""
    terms = [class_terms(c) + (year_term(y),) for c, y in zip(class_codes, years, strict=True)]
    return many_codes(texts, terms, shards)


def query_codes(query: str) -> list[int]:
    """The fewest codes every text containing `query` must have: its pairs, a CJK character only
    when no pair holds it (能力。不 asks for 能力 力。 。不, not for 不, which is on nearly every
    page), and its words, whole words only when the query cannot start or end inside a longer
    word of the text. A single character that is not CJK gives none: the caller scans."""
    c = np.frombuffer(query.encode("utf-32-le", "surrogatepass"), dtype="<u4")
    cjk, pairs, pair_codes = _classify(c)
    held = np.zeros(len(c), dtype=bool)
    held[:-1] |= pairs
    held[1:] |= pairs
    starts, ends, words = _words(query, c)
    interior = [code for s, e, code in zip(starts.tolist(), ends.tolist(), words, strict=True) if s > 0 and e < len(c)]
    codes = np.concatenate((c[cjk & ~held], pair_codes[pairs], np.array(interior, dtype=np.uint32)), dtype=np.uint32)
    return sorted(set(codes.view(np.int32).tolist()))


def term_code(term: str) -> int:
    """The code of one term written out, as stored (int4): a character (张), a pair (张三 力。
    20), or a word (CET4 cls:4)."""
    if len(term) > 2:
        code = _word_code(term)
    elif len(term) == 1:
        code = ord(term)
    else:
        code = ord(term[0]) << 16 | ord(term[1])
    return code - (1 << 32) if code >= 1 << 31 else code
