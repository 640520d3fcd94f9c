"""The audit trail: one row for every read of personal data and every change, hash-chained.

Each row's hash is an HMAC-SHA256, under ARCHIVE_AUDIT_KEY (which the database never holds),
of the previous row's hash and the row's own fields in canonical JSON (RFC 8785), and rows
are numbered by the writer under a lock: an edited row breaks its own hash, a deleted one
leaves a gap in the numbers and breaks the next row's link, reordered rows break the links,
and without the key no one can compute a chain anew. Rows cut from the end leave no gap: `verify`
is given a head exported earlier (`head()`) to notice them. The table refuses UPDATE, DELETE and
TRUNCATE (a trigger that fires in every session, and no grant: storage/migrations/0013_access.sql).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from dataclasses import dataclass, field

import rfc8785

from catalog.idnumber import mask_ids

GENESIS = "0" * 64
_LOCK_ID = 0x5041_0002  # advisory lock: one writer of the chain at a time


@dataclass(frozen=True)
class Actor:
    """Who did it, as authenticated: never taken from a request header."""

    name: str                  # user:NAME, token:ID, cli:OS-USER, anonymous
    client: str                # the client's address, or "cli"
    agency: str | None = None


@dataclass(frozen=True)
class AuditRow:
    seq: int
    at: dt.datetime
    actor: str
    actor_agency: str | None
    client: str
    action: str
    outcome: str
    target: str
    file_numbers: list[str] = field(default_factory=list)
    detail: dict = field(default_factory=dict)
    prev_hash: str = GENESIS
    hash: str = ""

    def content(self) -> dict:
        """The fields the hash covers, in the form they read back from PostgreSQL."""
        return {"seq": self.seq, "at": self.at.astimezone(dt.UTC).isoformat(timespec="microseconds"),
                "actor": self.actor, "actor_agency": self.actor_agency, "client": self.client,
                "action": self.action, "outcome": self.outcome, "target": self.target,
                "file_numbers": list(self.file_numbers), "detail": self.detail}

    def expected_hash(self, prev_hash: str, key: bytes) -> str:
        return hmac.new(key, prev_hash.encode() + rfc8785.dumps(self.content()), hashlib.sha256).hexdigest()


def _key() -> bytes:
    from settings import Settings

    return Settings.from_env().audit_key


def record(cur, actor: Actor, action: str, *, outcome: str = "ok", target: str = "",
           file_numbers: list[str] | tuple[str, ...] = (), detail: dict | None = None) -> int:
    """Appends one row in the caller's transaction (it commits with the work it describes);
    returns its number. ID-like numbers in the target and detail are masked."""
    cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
    cur.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
    last = cur.fetchone()
    # a plain dict round-trips through jsonb; the masking keeps ID numbers out of the trail
    clean = json.loads(mask_ids(json.dumps(detail or {}, ensure_ascii=False, default=str)))
    row = AuditRow(seq=(last["seq"] + 1) if last else 1, at=dt.datetime.now(dt.UTC), actor=mask_ids(actor.name),
                   actor_agency=actor.agency, client=actor.client, action=action, outcome=outcome,
                   target=mask_ids(target), file_numbers=sorted(set(file_numbers)), detail=clean,
                   prev_hash=last["hash"] if last else GENESIS)
    digest = row.expected_hash(row.prev_hash, _key())
    cur.execute("INSERT INTO audit_log (seq, at, actor, actor_agency, client, action, outcome, target, file_numbers,"
                " detail, prev_hash, hash) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (row.seq, row.at, row.actor, row.actor_agency, row.client, row.action, row.outcome, row.target,
                 row.file_numbers, json.dumps(row.detail, ensure_ascii=False), row.prev_hash, digest))
    return row.seq


@dataclass(frozen=True)
class Verdict:
    rows: int
    first_bad: int | None      # seq of the first row that is not what the chain says
    reason: str = ""           # why, in English
    reason_zh: str = ""

    @property
    def intact(self) -> bool:
        return self.first_bad is None


def _rows(cur, after: int = 0, batch: int = 5000):
    while True:
        cur.execute("SELECT * FROM audit_log WHERE seq > %s ORDER BY seq LIMIT %s", (after, batch))
        rows = cur.fetchall()
        if not rows:
            return
        for r in rows:
            yield AuditRow(**r)
        after = rows[-1]["seq"]


def head(cur) -> str:
    """`seq:hash` of the last row: exported now and then (printed, signed, sent elsewhere), it
    lets a later `verify` notice rows cut from the end."""
    cur.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
    row = cur.fetchone()
    return f"{row['seq']}:{row['hash']}" if row else f"0:{GENESIS}"


def verify(cur, expected_head: str | None = None) -> Verdict:
    """Walks the chain from the first row; the first row edited, missing or out of order, or
    the row of an exported head no longer there as it was."""
    key = _key()
    want_seq, _, want_hash = (expected_head or "").partition(":")
    prev, expected_seq, n = GENESIS, 1, 0
    for row in _rows(cur):
        n += 1
        if row.seq != expected_seq:
            return Verdict(n, expected_seq, f"row {expected_seq} is missing (the next one is {row.seq})",
                           f"第 {expected_seq} 条记录缺失（其后为第 {row.seq} 条）")
        if row.prev_hash != prev:
            return Verdict(n, row.seq, f"row {row.seq} does not follow row {row.seq - 1} (reordered or replaced)",
                           f"第 {row.seq} 条记录与前一条不相接（顺序被改或被替换）")
        if row.hash != row.expected_hash(prev, key):
            return Verdict(n, row.seq, f"row {row.seq} was changed after it was written",
                           f"第 {row.seq} 条记录写入后被修改")
        if want_seq.isdigit() and row.seq == int(want_seq) and row.hash != want_hash:
            return Verdict(n, row.seq, f"row {row.seq} is not the head exported earlier",
                           f"第 {row.seq} 条记录与先前导出的链尾不符")
        prev, expected_seq = row.hash, row.seq + 1
    if want_seq.isdigit() and expected_seq <= int(want_seq):
        return Verdict(n, expected_seq, f"rows {expected_seq} to {want_seq} are missing from the end",
                       f"第 {expected_seq} 至 {want_seq} 条记录已从末尾删除")
    return Verdict(n, None)


def query(cur, *, actor: str | None = None, file_number: str | None = None, since: dt.datetime | None = None,
          until: dt.datetime | None = None, limit: int = 200) -> list[AuditRow]:
    cur.execute("SELECT * FROM audit_log WHERE (%(actor)s::text IS NULL OR actor = %(actor)s)"
                " AND (%(file)s::text IS NULL OR file_numbers @> ARRAY[%(file)s::text] OR target = %(file)s)"
                " AND (%(since)s::timestamptz IS NULL OR at >= %(since)s)"
                " AND (%(until)s::timestamptz IS NULL OR at < %(until)s)"
                " ORDER BY seq DESC LIMIT %(limit)s",
                {"actor": actor, "file": file_number, "since": since, "until": until, "limit": limit})
    return [AuditRow(**r) for r in cur.fetchall()]
