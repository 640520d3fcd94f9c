"""A personnel file's history: every version of every material, and every event recorded for it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from errors import NotFound
from stages.services import Services


@dataclass(frozen=True)
class MaterialVersion:
    material: str                # class-sequence, e.g. 10-9
    version: int
    batch_id: str | None         # the batch that handed it in
    current: bool
    title: str
    formed: str
    pdf_sha256: str | None
    pages: list[dict]            # page_no, source_sha256, source_page, source_path, ocr_sha256
    created_at: dt.datetime | None   # None: indexed before versions were recorded
    superseded_at: dt.datetime | None = None
    superseded_by: str | None = None


@dataclass(frozen=True)
class HistoryEvent:
    at: dt.datetime
    event_type: str
    outcome: str
    agent: str
    batch_id: str | None
    object_sha256: str | None
    detail: dict


@dataclass
class FileHistory:
    file_number: str
    name: str
    versions: list[MaterialVersion] = field(default_factory=list)  # by material, then version
    events: list[HistoryEvent] = field(default_factory=list)       # oldest first


_CURRENT = """
SELECT m.class_code || '-' || m.seq AS material, m.version, m.batch_id, m.title, m.formed, m.pdf_sha256,
       m.versioned_at AS created_at,
       coalesce(jsonb_agg(jsonb_build_object('page_no', p.page_no, 'source_sha256', p.source_sha256,
                                             'source_page', p.source_page, 'source_path', p.source_path,
                                             'ocr_sha256', p.ocr_sha256) ORDER BY p.page_no)
                FILTER (WHERE p.page_id IS NOT NULL), '[]') AS pages
FROM materials m LEFT JOIN pages p USING (material_id) WHERE m.file_number = %s GROUP BY m.material_id
"""
_SUPERSEDED = """
SELECT m.class_code || '-' || m.seq AS material, v.version, v.batch_id, v.title, v.formed, v.pdf_sha256,
       v.created_at, v.pages, v.superseded_at, v.superseded_by
FROM material_versions v JOIN materials m USING (material_id) WHERE m.file_number = %s
"""
# Events of the file itself and of every object its versions hold (captured, validated, ocr,
# stored), those of batches of the file's own agency only: the same scan handed in by another
# agency is that agency's business.
_EVENTS = """
SELECT e.at, e.event_type, e.outcome, e.agent, e.batch_id, e.object_sha256, e.detail
FROM events e LEFT JOIN batches b USING (batch_id)
WHERE e.file_number = %(file)s
   OR (e.object_sha256 = ANY(%(objects)s) AND (e.batch_id IS NULL OR b.holding_agency = %(agency)s))
ORDER BY e.at, e.event_id
"""


def _material_key(code: str) -> tuple[int, ...]:
    return tuple(int(part) for part in code.split("-"))


def file_history(file_number: str, services: Services) -> FileHistory:
    """Raises NotFound when the file is not indexed."""
    with services.db.transaction() as cur:
        cur.execute("SELECT name, holding_agency FROM personnel_files WHERE file_number = %s", (file_number,))
        person = cur.fetchone()
        if person is None:
            raise NotFound(f"没有档号为 {file_number} 的档案", f"no personnel file {file_number} is indexed")
        cur.execute(_CURRENT, (file_number,))
        versions = [MaterialVersion(current=True, **r) for r in cur.fetchall()]
        cur.execute(_SUPERSEDED, (file_number,))
        versions += [MaterialVersion(current=False, **r) for r in cur.fetchall()]
        objects = sorted({sha for v in versions for sha in [v.pdf_sha256] + [p["source_sha256"] for p in v.pages]
                          + [p["ocr_sha256"] for p in v.pages] if sha})
        cur.execute(_EVENTS, {"file": file_number, "objects": objects, "agency": person["holding_agency"]})
        events = [HistoryEvent(**r) for r in cur.fetchall()]
    versions.sort(key=lambda v: (_material_key(v.material), v.version))
    return FileHistory(file_number, person["name"], versions, events)
