"""Event history (PREMIS-like): one row per thing that happened to an object or a file."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version

import psycopg2.extras

try:
    AGENT = f"personnel-archive-pipeline {version('personnel-archive-pipeline')}"
except PackageNotFoundError:  # running from a checkout without installing
    AGENT = "personnel-archive-pipeline"


@dataclass
class Event:
    event_type: str
    outcome: str = "success"
    batch_id: str | None = None
    file_number: str | None = None
    object_sha256: str | None = None
    detail: dict = field(default_factory=dict)
    agent: str = AGENT


def record(cur, events: list[Event]) -> None:
    """Inserts the events in the caller's transaction, so they commit with the work they describe."""
    if not events:
        return
    psycopg2.extras.execute_values(
        cur, "INSERT INTO events (event_type, outcome, agent, batch_id, file_number, object_sha256, detail) VALUES %s",
        [(e.event_type, e.outcome, e.agent, e.batch_id, e.file_number, e.object_sha256,
          json.dumps(e.detail, ensure_ascii=False)) for e in events])
