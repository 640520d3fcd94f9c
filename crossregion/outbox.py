"""The outbox: each step of a transfer writes its national record here in the transaction that
takes it (`enqueue`, called by transfer/states.py), so a step is never taken without its record
nor a record sent for a step that was rolled back. A deliverer sends them:

- one transfer's records in their order: a record is due only when every earlier one of its
  transfer is delivered, so a `fetched` never overtakes its `available`, even with many
  deliverers at once (rows are claimed with FOR UPDATE SKIP LOCKED);
- each under its record id as idempotency key: a platform that stored a record and then failed
  to say so gets it again and answers "duplicate", leaving one;
- retried with doubling, jittered delays on no answer, 5xx and 429; refused records (a schema
  or signature the platform does not accept) are marked failed with its reason, told to staff in
  the file's history and the transfer's page, and hold the rest of their transfer until
  `archive platform retry`;
- every attempt recorded in platform_attempts.

`follow` wakes on PostgreSQL NOTIFY, which is sent when the step's transaction commits: a
record leaves milliseconds after its step.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import select
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from crossregion import record as national
from crossregion.client import Answer, PlatformClient
from crossregion.schema import RecordInvalid, check
from errors import ArchiveError, BadInput
from storage import events
from storage.db import Database, connect
from storage.events import Event
from transfer.signing import Signer

log = logging.getLogger(__name__)

CHANNEL = "platform_outbox"
MAX_DELAY = 600.0   # seconds between attempts, at most
OUT_OF_ORDER_LIMIT = 20   # attempts answered "an earlier record is missing" before staff are told

_HEAD = """
SELECT o.*, t.file_number FROM platform_outbox o JOIN transfers t USING (transfer_id)
WHERE o.state = 'pending' AND o.next_attempt_at <= now() AND o.record_id <> ALL(%s::uuid[])
  AND NOT EXISTS (SELECT 1 FROM platform_outbox p WHERE p.transfer_id = o.transfer_id
                  AND p.sequence < o.sequence AND p.state <> 'delivered')
ORDER BY o.next_attempt_at, o.created_at LIMIT %s FOR UPDATE OF o SKIP LOCKED"""
CLAIM = 8   # heads (each of its own transfer) a deliverer claims at once: one commit for their bookkeeping


def enqueue(cur, transfer_id: str, status: str) -> str | None:
    """The record of the step just taken, in the caller's transaction; its record id. The
    transfer's row is locked by the step, so sequence numbers cannot collide. A transfer
    requested before the outbox existed (migration 0018) has no person hash for the platform
    and no first record there: it is not reported (None)."""
    cur.execute("SELECT person_ref IS NOT NULL AS reported FROM transfers WHERE transfer_id = %s", (transfer_id,))
    if not cur.fetchone()["reported"]:
        return None
    cur.execute("SELECT coalesce(max(sequence), 0) + 1 AS n FROM platform_outbox WHERE transfer_id = %s",
                (transfer_id,))
    sequence = cur.fetchone()["n"]
    body = national.build(cur, transfer_id, status, sequence)
    cur.execute("INSERT INTO platform_outbox (record_id, transfer_id, sequence, status, body)"
                " VALUES (%s, %s, %s, %s, %s)",
                (body["record_id"], transfer_id, sequence, status, json.dumps(body, ensure_ascii=False)))
    cur.execute(f"NOTIFY {CHANNEL}")
    return body["record_id"]


@dataclass(frozen=True)
class Attempted:
    record_id: str
    transfer_id: str
    sequence: int
    status: str
    outcome: str            # delivered | duplicate | retry | refused
    code: str
    message: str
    delay: float | None     # seconds from the step to its delivery, once delivered


@dataclass
class DeliveryRun:
    attempted: list[Attempted] = field(default_factory=list)

    def count(self, *outcomes: str) -> int:
        return sum(1 for a in self.attempted if a.outcome in outcomes)

    @property
    def delays(self) -> list[float]:
        return sorted(a.delay for a in self.attempted if a.delay is not None)


def backoff(attempts: int, first: float) -> float:
    """Seconds before the next attempt: doubling from `first`, at most MAX_DELAY, jittered over
    its upper half so many senders retrying at once spread out."""
    return min(MAX_DELAY, first * 2 ** max(0, attempts - 1)) * random.uniform(0.5, 1.0)


class Tried:
    """The records a delivery run's deliverers have claimed, shared between them, so that each is
    tried once a run: read as a deliverer queries and added to as it claims, so a retry one
    deliverer committed cannot be claimed again by another that had looked before it was added
    (a retry falls due in `retry_seconds`, 20 ms in the tests, which a busy machine can exceed)."""

    def __init__(self) -> None:
        self._ids: set = set()
        self._lock = threading.Lock()

    def ids(self) -> list:
        with self._lock:
            return list(self._ids)

    def add(self, ids) -> None:
        with self._lock:
            self._ids.update(ids)

    def discard(self, ids) -> None:
        with self._lock:
            self._ids.difference_update(ids)


def deliver_some(db: Database, client: PlatformClient, signer: Signer, retry_seconds: float,
                 tried: Tried | None = None, claim: int = CLAIM) -> list[Attempted]:
    """Claims up to `claim` due records (heads of different transfers, none `tried`, to which
    they are added) and sends them one after another; [] when nothing is due. The claim is held
    until their outcomes are committed, so no other deliverer sends them, or their successors,
    meanwhile."""
    tried = tried or Tried()
    out, rows = [], []
    try:
        with db.transaction() as cur:
            cur.execute(_HEAD, (tried.ids(), claim))
            rows = cur.fetchall()
            tried.add(row["record_id"] for row in rows)
            for row in rows:
                out.append(_send(cur, row, client, signer, retry_seconds))
    except Exception:
        tried.discard(row["record_id"] for row in rows)  # rolled back: untried, for the run's other deliverers
        raise
    return out


# One statement a record: its attempt, and its outcome (the signed bytes kept from the first). The
# back-off counts from the answer (clock_timestamp), not from the claim's start: a claim's 8 sends
# at a 10 s timeout would otherwise have used it up before it was recorded.
_OUTCOME = """
WITH tried AS (INSERT INTO platform_attempts (record_id, outcome, http_status, detail, seconds)
               VALUES (%(id)s, %(kind)s, %(http)s, %(detail)s, %(seconds)s))
UPDATE platform_outbox SET signed = coalesce(signed, %(signed)s), attempts = attempts + 1, state = %(state)s,
    delivered_at = CASE WHEN %(state)s = 'delivered' THEN now() END, answer = %(answer)s,
    next_attempt_at = clock_timestamp() + make_interval(secs => %(wait)s),
    failure_code = %(code)s, failure = %(failure)s
WHERE record_id = %(id)s RETURNING delivered_at - created_at AS delay"""


def _send(cur, row: dict, client: PlatformClient, signer: Signer, retry_seconds: float) -> Attempted:
    # signed once: a retry after a key change must not become another record under the same id
    signed = row["signed"] or signer.sign(row["body"])
    try:
        check(signed)
    except RecordInvalid as exc:  # ours, never sent: a bug here or a record rewritten behind our back
        answer = Answer("refused", None, "schema", f"our own check: {exc.message_en}")
    else:
        answer = client.post_record(signed)
    if answer.code == "out_of_order" and row["attempts"] + 1 >= OUT_OF_ORDER_LIMIT:
        answer = Answer("refused", answer.http_status, "out_of_order",
                        f"the platform still lacks an earlier record of this transfer after {OUT_OF_ORDER_LIMIT} "
                        "attempts: it lost one we delivered; ask its operators", answer.body, answer.seconds)
    kind = {"stored": "delivered"}.get(answer.kind, answer.kind)
    state = {"delivered": "delivered", "duplicate": "delivered", "retry": "pending"}.get(kind, "failed")
    cur.execute(_OUTCOME, {
        "id": row["record_id"], "kind": kind, "http": answer.http_status, "seconds": answer.seconds,
        "detail": f"{answer.code} {answer.message}".strip()[:1000], "state": state,
        "signed": None if row["signed"] else json.dumps(signed, ensure_ascii=False),
        "answer": json.dumps(answer.body, ensure_ascii=False) if state == "delivered" else None,
        "wait": backoff(row["attempts"] + 1, retry_seconds) if state == "pending" else 0,
        "code": answer.code if state == "failed" else None,
        "failure": answer.message[:1000] if state == "failed" else None})
    delay = cur.fetchone()["delay"]
    if state == "failed":
        _told(cur, row, answer)
    return Attempted(str(row["record_id"]), str(row["transfer_id"]), row["sequence"], row["status"], kind,
                     answer.code, answer.message, delay.total_seconds() if delay is not None else None)


def _told(cur, row: dict, answer: Answer) -> None:
    """A refusal into the file's history, where staff see it."""
    zh = str(answer.body.get("message_zh") or answer.message)
    events.record(cur, [Event("platform_refused", outcome="failure", file_number=row["file_number"], detail={
        "transfer_id": str(row["transfer_id"]), "record_id": str(row["record_id"]), "status": row["status"],
        "sequence": row["sequence"], "code": answer.code, "http_status": answer.http_status,
        "reason_zh": zh[:500], "reason_en": answer.message[:500]})])


def deliver_due(db: Database, client: PlatformClient, signer: Signer, *, retry_seconds: float, workers: int = 4,
                seconds: float | None = None) -> DeliveryRun:
    """Sends what is due with `workers` deliverers until nothing is, or `seconds` have passed;
    a record is tried once a run (a retry falling due meanwhile waits for the next)."""
    run, lock, tried = DeliveryRun(), threading.Lock(), Tried()
    end = time.monotonic() + seconds if seconds else None

    failures: list[Exception] = []

    def work() -> None:
        try:
            deliver()
        except Exception as exc:  # told to the caller after the others end, not lost with the thread
            failures.append(exc)

    def deliver() -> None:
        while end is None or time.monotonic() < end:
            got = deliver_some(db, client, signer, retry_seconds, tried)
            if not got:
                return
            with lock:
                run.attempted.extend(got)

    threads = [threading.Thread(target=work, name=f"deliver-{i}") for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise failures[0]
    return run


def next_due_in(db: Database) -> float | None:
    """Seconds until the next pending record is due (0: now); None when none is pending."""
    with db.transaction() as cur:
        cur.execute("SELECT extract(epoch FROM min(next_attempt_at) - now()) AS s FROM platform_outbox"
                    " WHERE state = 'pending'")
        s = cur.fetchone()["s"]
    return None if s is None else max(0.0, float(s))


def follow(db: Database, client: PlatformClient, signer: Signer, *, retry_seconds: float, stop: threading.Event,
           workers: int = 4, on_run: Callable[[DeliveryRun], None] | None = None) -> None:
    """Delivers until `stop` is set: at once when a step commits (LISTEN), and when a retry
    falls due."""
    listener = connect(db.url)
    listener.autocommit = True
    try:
        listener.cursor().execute(f"LISTEN {CHANNEL}")
        while not stop.is_set():
            try:
                run = deliver_due(db, client, signer, retry_seconds=retry_seconds, workers=workers)
                wait = next_due_in(db)
            except ArchiveError as exc:
                if not exc.transient:
                    raise
                log.warning("platform delivery paused for a second: %s", exc)  # a database restarting
                stop.wait(1.0)
                continue
            if run.attempted and on_run:
                on_run(run)
            wait = 1.0 if wait is None else min(1.0, wait)  # the stop flag is looked at every second
            if select.select([listener], [], [], wait) != ([], [], []):
                listener.poll()
                listener.notifies.clear()
    finally:
        listener.close()


def oldest_due(db: Database) -> str:
    """`record_id:attempts` of the record due longest: a key that changes once it is tried."""
    with db.transaction() as cur:
        cur.execute("SELECT record_id, attempts FROM platform_outbox WHERE state = 'pending'"
                    " AND next_attempt_at <= now() ORDER BY next_attempt_at, created_at LIMIT 1")
        r = cur.fetchone()
    return f"{r['record_id']}:{r['attempts']}" if r else ""


@dataclass(frozen=True)
class Backlog:
    pending: int
    delivered: int
    failed: int
    oldest_pending_seconds: float | None
    failures: list[dict]     # the failed records: transfer, status, code, reason

    @property
    def healthy(self) -> bool:
        return self.failed == 0


def backlog(db: Database) -> Backlog:
    with db.transaction() as cur:
        cur.execute("SELECT state, count(*) AS n, extract(epoch FROM now() - min(created_at)) AS age"
                    " FROM platform_outbox GROUP BY state")
        by = {r["state"]: r for r in cur.fetchall()}
        cur.execute("SELECT o.record_id, o.transfer_id, t.file_number, o.status, o.sequence, o.failure_code,"
                    " o.failure, o.attempts FROM platform_outbox o JOIN transfers t USING (transfer_id)"
                    " WHERE o.state = 'failed' ORDER BY o.created_at LIMIT 100")
        failures = [{**r, "record_id": str(r["record_id"]), "transfer_id": str(r["transfer_id"])}
                    for r in cur.fetchall()]
    pending = by.get("pending")
    return Backlog(pending["n"] if pending else 0, by["delivered"]["n"] if "delivered" in by else 0,
                   by["failed"]["n"] if "failed" in by else 0, float(pending["age"]) if pending else None, failures)


def retry_failed(db: Database, record_id: str | None = None) -> int:
    """Failed records (one, or all) pending again, due now; how many."""
    if record_id is not None:
        try:
            record_id = str(uuid.UUID(record_id))
        except ValueError:
            raise BadInput(f"记录编号 {record_id[:60]} 无效", f"{record_id[:60]!r} is not a record id",
                           item=record_id[:60]) from None
    with db.transaction() as cur:  # signed again: a refused record was not stored, the key may be new
        cur.execute("UPDATE platform_outbox SET state = 'pending', next_attempt_at = now(), failure_code = NULL,"
                    " failure = NULL, signed = NULL, attempts = 0"
                    " WHERE state = 'failed' AND (%s::uuid IS NULL OR record_id = %s::uuid)", (record_id, record_id))
        n = cur.rowcount
        cur.execute(f"NOTIFY {CHANNEL}")
    return n


# A transfer's national records in two columns, for a query over `transfers t` (stages/transfer.py):
# none | pending | delivered | failed (staff must act), and why the first that failed was refused.
TRANSFER_COLUMNS = {
    "platform_state": "(SELECT CASE WHEN bool_or(o.state = 'failed') THEN 'failed' WHEN bool_or(o.state = 'pending')"
                      " THEN 'pending' WHEN count(*) > 0 THEN 'delivered' ELSE 'none' END FROM platform_outbox o"
                      " WHERE o.transfer_id = t.transfer_id)",
    "platform_failure": "(SELECT o.failure FROM platform_outbox o WHERE o.transfer_id = t.transfer_id"
                        " AND o.state = 'failed' ORDER BY o.sequence LIMIT 1)",
}


def of_transfer(cur, transfer_id: str) -> list[dict]:
    """The transfer's national records and how each fared, for its page."""
    cur.execute("SELECT record_id, sequence, status, state, attempts, created_at, delivered_at, failure_code,"
                " failure FROM platform_outbox WHERE transfer_id = %s ORDER BY sequence", (transfer_id,))
    return [{**r, "record_id": str(r["record_id"]),
             **{k: r[k].isoformat() if isinstance(r[k], dt.datetime) else r[k] for k in ("created_at", "delivered_at")}}
            for r in cur.fetchall()]
