"""Work split into units that each fit one step (OCR, searchable PDFs): items in order, packed
up to a page budget, so that several workers share a large batch."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

T = TypeVar("T")


def pack(items: Iterable[tuple[T, int]], unit_pages: int) -> list[tuple[list[T], int]]:
    """Consecutive items, each with its page count, in groups of at most `unit_pages` pages, each
    with its pages; an item larger than that is a group alone."""
    groups: list[tuple[list[T], int]] = []
    group: list[T] = []
    pages = 0
    for item, n in items:
        if group and pages + n > unit_pages:
            groups.append((group, pages))
            group, pages = [], 0
        group.append(item)
        pages += n
    if group:
        groups.append((group, pages))
    return groups
