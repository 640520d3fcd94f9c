"""Validation findings: a code, the item concerned, and the reason in Chinese and English."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum

from catalog.idnumber import mask_ids


class Severity(StrEnum):
    ERROR = "error"      # the item is rejected (quarantined), the rest of the batch goes on
    WARNING = "warning"  # the item is accepted and the finding reported


@dataclass(frozen=True)
class Finding:
    code: str
    item: str
    severity: Severity
    message_zh: str
    message_en: str

    def __str__(self) -> str:
        return f"[{self.severity}] {self.item}: {self.message_zh} / {self.message_en} ({self.code})"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Finding:
        return cls(**{**data, "severity": Severity(data["severity"])})


def _finding(code: str, item: str, severity: Severity, zh: str, en: str) -> Finding:
    # findings go to reports, logs and Dagster: an ID number in a cell quoted never goes whole
    return Finding(code, mask_ids(item), severity, mask_ids(zh), mask_ids(en))


def error(code: str, item: str, zh: str, en: str) -> Finding:
    return _finding(code, item, Severity.ERROR, zh, en)


def warning(code: str, item: str, zh: str, en: str) -> Finding:
    return _finding(code, item, Severity.WARNING, zh, en)
