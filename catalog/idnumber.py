"""Resident ID numbers (身份证号): check digit, birth date, masking, keyed hash."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
_SHAPE = re.compile(r"^\d{17}[\dX]$")


def check_digit(first17: str) -> str:
    """ISO 7064 MOD 11-2 check character for the first 17 digits."""
    total = sum(int(c) * w for c, w in zip(first17, _WEIGHTS, strict=True))
    return _CHECK[total % 11]


def birth_date(id_number: str) -> dt.date | None:
    try:
        return dt.datetime.strptime(id_number[6:14], "%Y%m%d").date()
    except ValueError:
        return None


def validate(id_number: str, today: dt.date | None = None) -> str | None:
    """None when valid, else the reason in English (callers add the Chinese wording)."""
    value = id_number.strip().upper()
    if not _SHAPE.match(value):
        return "must be 17 digits followed by a digit or X"
    born = birth_date(value)
    if born is None or born.year < 1900 or born > (today or dt.date.today()):
        return "the birth date in it is not a real date"  # its digits would complete the masked number
    if check_digit(value[:17]) != value[17]:
        return f"check digit should be {check_digit(value[:17])}"
    return None


def mask(id_number: str) -> str:
    """First 6 and last 4 characters, the rest starred: the only form shown in logs and UIs."""
    value = id_number.strip()
    if len(value) <= 10:
        return "*" * len(value)
    return value[:6] + "*" * (len(value) - 10) + value[-4:]


def lookup_hash(id_number: str, key: bytes) -> str:
    """Keyed hash for exact lookup without exposing the number (HMAC-SHA256, hex)."""
    return hmac.new(key, id_number.strip().upper().encode(), hashlib.sha256).hexdigest()


# An ID number inside text: 18 characters (17 digits and a digit or X) or the 15-digit form of
# before 1999, not part of a longer run of digits; written in one run, or with a space, hyphen
# or dot between some digits (forms print one digit a box, OCR reads "5 2 0 1 0 3 ..."), in
# ASCII or full-width digits.
_DIGIT = "0-9\uff10-\uff19"
_SEP = " \u3000\\-\uff0d.\u00b7"
_CANDIDATE = re.compile(f"(?<![{_DIGIT}])[{_DIGIT}](?:[{_SEP}]?[{_DIGIT}Xx\uff38\uff58]){{14,17}}(?![{_DIGIT}Xx])")
_FULL_WIDTH = str.maketrans("０１２３４５６７８９Ｘｘ", "0123456789XX")


def _born(number: str) -> bool:
    """Its birth-date digits make a date: YYYYMMDD (18) or YYMMDD (15)."""
    digits = number[6:14] if len(number) == 18 else "19" + number[6:12]
    try:
        return 1900 <= dt.datetime.strptime(digits, "%Y%m%d").year <= dt.date.today().year
    except ValueError:
        return False


def _masked(match: re.Match) -> str:
    text = match.group()
    chars = [c for c in text.translate(_FULL_WIDTH).upper() if c.isdigit() or c == "X"]
    number = "".join(chars)
    if "X" in number[:-1] or len(number) not in (15, 18) or (len(number) == 15 and "X" in number):
        return text
    if (len(chars) != len(text) or len(number) == 15) and not _born(number):
        return text  # no ID number: a file number 2026-0070001-0001, a list of years, a 15-digit serial
    return mask(number)


def masked_data(data):
    """A JSON-shaped value (dicts, lists, strings, numbers) with ID-like numbers masked in every
    string: for what is shown whole, such as a report or a file view (a page named by its
    owner's ID number, say)."""
    if isinstance(data, str):
        return mask_ids(data)
    if isinstance(data, dict):
        return {k: masked_data(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [masked_data(v) for v in data]
    return data


def mask_ids(text: str) -> str:
    """`text` with every ID-like number masked (first 6 and last 4 shown): for what leaves the
    system (snippets, messages, logs, audit rows) and the page text kept for search."""
    return _CANDIDATE.sub(_masked, text) if text else text
