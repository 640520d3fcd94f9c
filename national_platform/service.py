"""What the platform does with a record and for a reader, apart from HTTP (national_platform/api.py).

A record is accepted when it keeps the schema (crossregion/schema.py), was sent by the agency it
names as sender, is addressed to an agency the platform knows, and its signature holds with the
key the platform's registry has for the sender at the record's time. Then:

- the same record id again, with the same content, is a duplicate: answered as stored, kept once;
  with other content, a conflict;
- record n of a transfer is taken only after record n-1 (a sender that lost one retries);
- a transfer id belongs to its sender: records of another agency under the same id are another
  transfer's, so no agency can take the place of another's records;
- a step older than 30 days is refused (crossregion.trust.MAX_AGE): a retired key cannot sign
  records backdated to when it was valid, beyond that.

Records are numbered under a lock, so the numbers are also their commit order: a reader that
has read up to n never misses one numbered below n that commits later.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
import uuid
from dataclasses import dataclass

from crossregion.schema import RecordInvalid, check, has_nul
from crossregion.trust import distrust
from errors import ArchiveError
from storage.db import Database
from transfer import registry
from transfer.signing import canonical_json

_SEQ_LOCK = 0x5041_0018
CLOCK_SKEW = dt.timedelta(minutes=5)
MAX_RECORD_BYTES = 256 * 1024


class Refused(ArchiveError):
    """A record or request the platform does not take; `code` says which rule it broke."""

    def __init__(self, code: str, status: int, zh: str, en: str, *, path: str = "", item: str | None = None) -> None:
        super().__init__(zh, en, item=item)
        self.code, self.http_status, self.path = code, status, path

    def to_dict(self) -> dict:
        return {"code": self.code, "message_zh": self.message_zh, "message_en": self.message_en,
                **({"path": self.path} if self.path else {}), **({"item": self.item} if self.item else {})}


@dataclass(frozen=True)
class Accepted:
    platform_seq: int
    received_at: dt.datetime
    duplicate: bool

    def to_dict(self) -> dict:
        return {"platform_seq": self.platform_seq, "received_at": self.received_at.isoformat(),
                "duplicate": self.duplicate}


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(cur, agency: str, name: str = "") -> str:
    """A new token for `agency` (shown once; only its digest is kept)."""
    registry.agency(cur, agency)
    token = secrets.token_urlsafe(32)
    cur.execute("INSERT INTO platform_tokens (token_sha256, agency, name) VALUES (%s, %s, %s)",
                (_digest(token), agency, name))
    return token


def revoke_tokens(cur, agency: str) -> int:
    cur.execute("UPDATE platform_tokens SET revoked_at = now() WHERE agency = %s AND revoked_at IS NULL", (agency,))
    return cur.rowcount


def token_agency(db: Database, token: str) -> str | None:
    if not token:
        return None
    with db.transaction() as cur:
        cur.execute("SELECT agency FROM platform_tokens WHERE token_sha256 = %s AND revoked_at IS NULL",
                    (_digest(token),))
        row = cur.fetchone()
    return row["agency"] if row else None


def logged(db: Database, agency: str | None, action: str, status: int, target: str = "", rows: int = 0) -> None:
    with db.transaction() as cur:
        cur.execute("INSERT INTO access_log (agency, action, target, status, rows) VALUES (%s, %s, %s, %s, %s)",
                    (agency, action, target[:200], status, rows))


def accept(db: Database, agency: str, raw: bytes, idempotency_key: str | None) -> Accepted:
    """Stores the record `agency` posted, or raises Refused naming why not (and keeps the refusal)."""
    record: dict = {}
    try:
        if len(raw) > MAX_RECORD_BYTES:
            raise Refused("too_large", 413, f"记录超过 {MAX_RECORD_BYTES} 字节",
                          f"a record is at most {MAX_RECORD_BYTES} bytes")
        try:
            record = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise Refused("not_json", 400, "记录不是 JSON", "the record is not JSON") from None
        try:
            check(record)
        except RecordInvalid as exc:
            raise Refused("schema", 422, exc.message_zh, exc.message_en, path=exc.path,
                          item=str(record.get("record_id", ""))[:40] if isinstance(record, dict) else None) from None
        rid = record["record_id"]
        if has_nul(record):
            raise Refused("schema", 422, "记录含有 NUL 字符", "the record holds NUL characters", item=rid)
        try:
            canonical_json(record)
        except ValueError as exc:  # RFC 8785 cannot write it (an integer beyond 2^53): no signature can cover it
            raise Refused("schema", 422, "记录无法规范化（RFC 8785）", f"the record has no canonical form: {exc}",
                          item=rid) from None
        if idempotency_key != rid:
            raise Refused("idempotency_key", 400, "请求头 Idempotency-Key 应等于记录的 record_id",
                          "the Idempotency-Key header must be the record's record_id", item=rid)
        if record["sender"]["code"] != agency:
            raise Refused("not_your_record", 403, f"记录的发送机构 {record['sender']['code']} 不是令牌所属的 {agency}",
                          f"the record's sender {record['sender']['code']} is not the token's agency {agency}",
                          item=rid)
        return _store(db, agency, record)
    except Refused as exc:
        with db.transaction() as cur:
            cur.execute("INSERT INTO refusals (agency, record_id, code, detail) VALUES (%s, %s, %s, %s)",
                        (agency, str(record.get("record_id", ""))[:60] if isinstance(record, dict) else "",
                         exc.code, exc.message_en[:1000]))
        raise


def _store(db: Database, agency: str, record: dict) -> Accepted:
    rid, tid = record["record_id"], record["transfer_id"]
    changed = dt.datetime.fromisoformat(record["changed_at"])
    body_sha = hashlib.sha256(canonical_json(record)).hexdigest()
    with db.transaction() as cur:
        cur.execute("SELECT 1 FROM agencies WHERE code = %s", (record["receiver"]["code"],))
        if cur.fetchone() is None:
            raise Refused("unknown_receiver", 422, f"接收机构 {record['receiver']['code']} 未在平台登记",
                          f"the receiving agency {record['receiver']['code']} is not registered here", item=rid)
        if changed.tzinfo is None or changed > dt.datetime.now(dt.UTC) + CLOCK_SKEW:
            raise Refused("time", 422, "记录时间晚于当前时间", "the record's time is in the future", item=rid)
        if doubt := distrust(cur, record, "the platform's", "平台"):
            raise Refused(doubt.code, 422, doubt.message_zh, doubt.message_en, item=rid)
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SEQ_LOCK,))
        cur.execute("SELECT platform_seq, received_at, body_sha256 FROM records WHERE record_id = %s", (rid,))
        if (same := cur.fetchone()) is not None:
            if same["body_sha256"] != body_sha:
                raise Refused("conflict", 409, "同一记录编号已有不同内容的记录",
                              "a different record was stored under this record id", item=rid)
            return Accepted(same["platform_seq"], same["received_at"], duplicate=True)
        # a transfer id is its sender's: another agency using the same id makes another transfer
        cur.execute("SELECT max(sequence) AS n FROM records WHERE sender = %s AND transfer_id = %s", (agency, tid))
        have = cur.fetchone()["n"] or 0
        if record["sequence"] <= have:
            raise Refused("conflict", 409, f"该转递的第 {record['sequence']} 条记录已是另一条",
                          f"another record is this transfer's number {record['sequence']}", item=rid)
        if record["sequence"] != have + 1:
            raise Refused("out_of_order", 409, f"该转递缺少第 {have + 1} 条记录，请先发送",
                          f"record {have + 1} of this transfer has not arrived: send it first", item=rid)
        cur.execute("INSERT INTO records (record_id, transfer_id, sequence, sender, receiver, status, body,"
                    " body_sha256) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING platform_seq, received_at",
                    (rid, tid, record["sequence"], agency, record["receiver"]["code"], record["status"],
                     json.dumps(record, ensure_ascii=False), body_sha))
        row = cur.fetchone()
    return Accepted(row["platform_seq"], row["received_at"], duplicate=False)


def feed(db: Database, agency: str, after: int, limit: int) -> list[dict]:
    """Records addressed to `agency` or sent by it, numbered after `after`, oldest first."""
    with db.transaction() as cur:
        cur.execute("SELECT platform_seq, received_at, body FROM records WHERE (receiver = %s OR sender = %s)"
                    " AND platform_seq > %s ORDER BY platform_seq LIMIT %s", (agency, agency, after, limit))
        return [{"platform_seq": r["platform_seq"], "received_at": r["received_at"].isoformat(), "record": r["body"]}
                for r in cur.fetchall()]


def of_transfer(db: Database, agency: str, transfer_id: str) -> list[dict]:
    try:
        tid = str(uuid.UUID(transfer_id))
    except ValueError:
        return []
    with db.transaction() as cur:
        cur.execute("SELECT platform_seq, received_at, body FROM records WHERE transfer_id = %s"
                    " AND (receiver = %s OR sender = %s) ORDER BY sender, sequence", (tid, agency, agency))
        return [{"platform_seq": r["platform_seq"], "received_at": r["received_at"].isoformat(), "record": r["body"]}
                for r in cur.fetchall()]
