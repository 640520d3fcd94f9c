"""Where a batch is on its way through the stages, for the staff pages and the scheduler.

Each stage moves its batch forward when its work is committed, never back: a rerun of an
earlier stage (new intake rules, say) leaves an archived batch archived.
"""

from __future__ import annotations

import json

from errors import ArchiveError, NotFound
from stages.services import Services

# (status, Chinese, English) in pipeline order; a batch's status is the last stage it finished
STAGES = (
    ("submitted", "已提交", "handed in"),
    ("validated", "已校验", "validated"),
    ("ocr_done", "已识别", "OCR done"),
    ("indexed", "已入库", "indexed"),
    ("archived", "已归档，可移交", "archived, ready to transfer"),
)
ORDER = [s[0] for s in STAGES]


def advance(cur, batch_id: str, status: str) -> None:
    """Moves the batch to `status` if it is not already there or further (inside the stage's
    transaction); a failure recorded before is over once a stage commits."""
    earlier = ORDER[: ORDER.index(status)]
    cur.execute("UPDATE batches SET failure = NULL WHERE batch_id = %s AND failure IS NOT NULL", (batch_id,))
    cur.execute("UPDATE batches SET status = %s WHERE batch_id = %s AND status = ANY(%s)",
                (status, batch_id, earlier))


# the stage a batch at each status goes through next (the assets' names): where a run that
# stopped outside its steps stopped
NEXT_STAGE = {"submitted": "intake", "validated": "ocr", "ocr_done": "index", "indexed": "archive"}


def _failure(stage: str, run_id: str, error: ArchiveError) -> str:
    return json.dumps({"stage": stage, "kind": error.kind, "message_zh": error.message_zh,
                       "message_en": error.message_en, "item": error.item, "run_id": run_id}, ensure_ascii=False)


def record_failure(services: Services, batch_id: str, stage: str, run_id: str, error: ArchiveError | None) -> None:
    """Records why a stage of the batch failed for good; `error` None for a bug (its traceback is
    in the run's log, which the message names)."""
    if error is None:
        error = ArchiveError(f"{stage} 阶段出现程序错误，详见 Dagster 运行 {run_id} 的日志",
                             f"the {stage} stage hit a bug: see run {run_id} in the Dagster UI")
    with services.db.transaction() as cur:
        cur.execute("UPDATE batches SET failure = %s::jsonb || jsonb_build_object('at', now()) WHERE batch_id = %s",
                    (_failure(stage, run_id, error), batch_id))


_RUN_FAILURE_STATE = "SELECT status, failure->>'run_id' AS run_id FROM batches WHERE batch_id = %s"


def _run_failure_recordable(row: dict | None, run_id: str) -> bool:
    # the batch is on its way, and what it records is not already that run's own reason
    return row is not None and row["status"] in NEXT_STAGE and row["run_id"] != run_id


def run_failure_wanted(services: Services, batch_id: str, run_id: str) -> bool:
    """Whether record_run_failure would record the run's failure now: asked first, so that a
    caller skips working out a reason for a batch that already has it."""
    with services.db.transaction() as cur:
        cur.execute(_RUN_FAILURE_STATE, (batch_id,))
        return _run_failure_recordable(cur.fetchone(), run_id)


def record_run_failure(services: Services, batch_id: str, run_id: str, error: ArchiveError) -> bool:
    """Records why a run of the batch ended outside its steps (its worker gone, say), at the stage
    the batch had reached; nothing if a step of that run recorded its own reason, or the batch
    is archived. True if recorded."""
    with services.db.transaction() as cur:
        cur.execute(_RUN_FAILURE_STATE + " FOR UPDATE", (batch_id,))
        row = cur.fetchone()
        if not _run_failure_recordable(row, run_id):
            return False
        cur.execute("UPDATE batches SET failure = %s::jsonb || jsonb_build_object('at', now()) WHERE batch_id = %s",
                    (_failure(NEXT_STAGE[row["status"]], run_id, error), batch_id))
        return True


def awaiting_processing(services: Services, limit: int = 100) -> list[str]:
    """Batches handed in through any channel (web, CLI, inbox) that no stage has touched yet."""
    with services.db.transaction() as cur:
        # a batch whose stage failed for good waits for a person, not for the sensor's next look
        cur.execute("SELECT batch_id FROM batches WHERE status = 'submitted' AND failure IS NULL"
                    " ORDER BY submitted_at, batch_id LIMIT %s", (limit,))
        return [r["batch_id"] for r in cur.fetchall()]


def _summary(row: dict) -> dict:
    reached = ORDER.index(row["status"]) if row["status"] in ORDER else 0
    return {
        "batch_id": row["batch_id"], "name": row["name"], "status": row["status"],
        "status_zh": STAGES[reached][1], "status_en": STAGES[reached][2],
        "submitted_at": row["submitted_at"].isoformat(), "files": row["files"],
        "pages_accepted": row["accepted"], "pages_warned": row["warned"], "pages_rejected": row["rejected"],
        "stages": [{"stage": s, "zh": zh, "en": en, "done": i <= reached} for i, (s, zh, en) in enumerate(STAGES)],
        "failure": row["failure"],
    }


_SELECT = ("SELECT b.batch_id, b.name, b.status, b.submitted_at, b.failure, count(f.path) AS files,"
           " count(*) FILTER (WHERE f.role = 'page' AND f.status = 'accepted') AS accepted,"
           " count(*) FILTER (WHERE f.role = 'page' AND f.status = 'accepted' AND f.findings IS NOT NULL) AS warned,"
           " count(*) FILTER (WHERE f.role = 'page' AND f.status = 'rejected') AS rejected"
           " FROM batches b LEFT JOIN batch_files f USING (batch_id) {where}"
           " GROUP BY b.batch_id ORDER BY b.submitted_at DESC, b.batch_id LIMIT %s")


def batch_status(batch_id: str, services: Services, agency: str | None = None) -> dict:
    """The batch's progress; NotFound for another agency's batch (`agency` given) as for none."""
    with services.db.transaction() as cur:
        cur.execute(_SELECT.format(where="WHERE b.batch_id = %s AND (%s::text IS NULL OR b.holding_agency = %s)"),
                    (batch_id, agency, agency, 1))
        row = cur.fetchone()
    if row is None:
        raise NotFound(f"没有批次 {batch_id}", f"batch {batch_id} is unknown", item=batch_id)
    return _summary(row)


def recent_batches(services: Services, limit: int = 50, agency: str | None = None) -> list[dict]:
    """The latest batches, of `agency` only when given."""
    with services.db.transaction() as cur:
        cur.execute(_SELECT.format(where="WHERE (%s::text IS NULL OR b.holding_agency = %s)"), (agency, agency, limit))
        return [_summary(r) for r in cur.fetchall()]
