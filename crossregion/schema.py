"""The national transfer record's JSON Schema, one file per major version (schemas/), and its
check. A reader of major version N accepts every N.x record: minor versions only add optional
properties, which it ignores (docs/national-platform.md)."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

import jsonschema
from jsonschema.validators import Draft202012Validator

from errors import BadInput

SCHEMA = "personnel-archive/national-transfer-record"
MAJOR = 1
VERSION = "1.0"   # what this installation writes


class RecordInvalid(BadInput):
    """A record that breaks the schema; `path` names where (`file.page_count`)."""

    def __init__(self, zh: str, en: str, path: str = "", item: str | None = None) -> None:
        super().__init__(zh, en, item=item)
        self.path = path


@cache
def validator(major: int = MAJOR) -> Draft202012Validator:
    text = (resources.files("crossregion") / "schemas" / f"national-record-{major}.json").read_text(encoding="utf-8")
    schema = json.loads(text)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def check(record: object) -> dict:
    """The record if it is one this reader understands; RecordInvalid naming the first problem
    (the one nearest the top, so a missing block is named before what it would have held)."""
    item = str(record.get("record_id"))[:40] if isinstance(record, dict) else None
    if not isinstance(record, dict):
        raise RecordInvalid("登记记录应为 JSON 对象", "a record must be a JSON object")
    version = record.get("schema_version")
    major = str(version).split(".", 1)[0]
    if isinstance(version, str) and major.isdigit() and int(major) != MAJOR:
        raise RecordInvalid(f"不支持的记录版本 {version}（本系统读取 {MAJOR}.x）",
                            f"record version {version} is not supported (this reader reads {MAJOR}.x)",
                            "schema_version", item)
    errors = sorted(validator().iter_errors(record), key=lambda e: (len(e.absolute_path), list(map(str, e.path))))
    if errors:
        e = errors[0]
        where = [str(p) for p in e.absolute_path]
        if e.validator == "required" and isinstance(e.instance, dict):  # name what is missing, not its holder
            where += [p for p in e.validator_value if p not in e.instance][:1]
        path = ".".join(where) or "(record)"
        raise RecordInvalid(f"登记记录不符合格式（{path}）：{_short(e)}", f"the record breaks the schema at {path}: "
                            f"{_short(e)}", path, item)
    return record


def _short(e: jsonschema.ValidationError) -> str:
    return e.message if len(e.message) <= 200 else e.message[:197] + "..."


def has_nul(record: dict) -> bool:
    """A NUL character anywhere: PostgreSQL's text and jsonb cannot hold one."""
    return "\\u0000" in json.dumps(record)
