"""Receiving side: what the national platform's feed says is waiting for us. Each record is
kept (platform_feed) with whether it keeps the schema and whether its signature holds with the
key *our* registry has for the sender: the platform's word alone never makes a transfer waiting.
A waiting transfer is then fetched from the sender's pull API, at the endpoint our registry
holds for it (stages/receive.py), and verified there in full."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

from crossregion.client import PlatformClient, PlatformUnavailable
from crossregion.schema import RecordInvalid, check, has_nul
from crossregion.trust import distrust
from stages.services import Services

WAITING = ("available", "fetched")   # the platform's last word: the sender serves it, no receipt yet
PAGE = 200
MAX_SEQ = 2**63 - 1


@dataclass(frozen=True)
class Waiting:
    transfer_id: str
    sender: str
    file_number: str
    package_bytes: int

    def listing(self) -> dict:
        """As the sender's pull API lists it (what stages/receive.fetch_one takes)."""
        return {"transfer_id": self.transfer_id, "sending_agency": self.sender, "file_number": self.file_number,
                "package_bytes": self.package_bytes}


@dataclass(frozen=True)
class FeedRead:
    new: int                      # records read this time
    problems: list[tuple[int, str]]   # (platform number, why it was not believed)
    waiting: list[Waiting]


def _problem(cur, record: dict) -> str | None:
    try:
        check(record)
    except RecordInvalid as exc:
        return exc.message_en
    if has_nul(record):
        return "it holds NUL characters"
    doubt = distrust(cur, record, "our", "本机构")
    return doubt.message_en if doubt else None


def read(services: Services, client: PlatformClient, wait: float = 0) -> FeedRead:
    """Reads the feed from where we stopped (waiting up to `wait` seconds for something new),
    keeps what it says, and returns the transfers waiting for us."""
    with services.db.transaction() as cur:
        cur.execute("SELECT coalesce(max(platform_seq), 0) AS n FROM platform_feed")
        after = cur.fetchone()["n"]
    new, problems = 0, []
    while True:
        rows = client.feed(after, wait=wait if new == 0 else 0)["records"]
        for item in rows:  # the numbering is checked whole before any of the page is kept
            seq = item.get("platform_seq") if isinstance(item, dict) else None
            if type(seq) is not int or not after < seq <= MAX_SEQ:
                raise PlatformUnavailable(f"全国平台的通知编号无效（在 {after} 之后）：{str(seq)[:30]}",
                                          f"the national platform's feed numbered a record {str(seq)[:30]!r} after "
                                          f"{after}: not read further", item=client.url)
            after = seq
        with services.db.transaction() as cur:
            for item in rows:
                record = item.get("record") if isinstance(item.get("record"), dict) else {}
                problem = _problem(cur, record) if record else "not a JSON object"
                if problem:
                    problems.append((item["platform_seq"], problem))
                cur.execute("INSERT INTO platform_feed (platform_seq, record_id, transfer_id, sender, receiver, status,"
                            " sequence, body, verified, problem) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                            " ON CONFLICT DO NOTHING", _row(item["platform_seq"], record, problem))
        new += len(rows)
        if len(rows) < PAGE:
            break
    return FeedRead(new, problems, waiting(services))


def _row(seq: int, record: dict, problem: str | None) -> tuple:
    """A feed row; a record not believed keeps its place with what could be read of it (never
    what PostgreSQL cannot hold: NUL characters, numbers beyond its integers)."""
    def text(*path: str) -> str:
        value: object = record
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        return str(value).replace("\x00", "")[:100] if value is not None else ""

    def an_id(value: str) -> str:
        try:
            return str(uuid.UUID(value))
        except ValueError:
            return str(uuid.uuid4())

    body = json.dumps({"unreadable": "it holds NUL characters"}) if has_nul(record) else \
        json.dumps(record, ensure_ascii=False)
    sequence = record["sequence"] if problem is None else 0
    return (seq, an_id(text("record_id")), an_id(text("transfer_id")), text("sender", "code"),
            text("receiver", "code"), text("status"), sequence, body, problem is None, problem)


def waiting(services: Services) -> list[Waiting]:
    """Transfers to us whose latest believed record says the sender serves them, and that we
    have not received or rejected."""
    with services.db.transaction() as cur:
        cur.execute("SELECT * FROM (SELECT DISTINCT ON (sender, transfer_id) transfer_id, sender, status, body"
                    " FROM platform_feed WHERE verified AND receiver = %s ORDER BY sender, transfer_id, sequence DESC)"
                    " last WHERE status = ANY(%s) AND NOT EXISTS (SELECT 1 FROM received_transfers r"
                    " WHERE r.transfer_id = last.transfer_id AND r.sender = last.sender"
                    " AND r.outcome IN ('received', 'rejected')) ORDER BY sender, transfer_id",
                    (services.agency, list(WAITING)))
        return [Waiting(str(r["transfer_id"]), r["sender"], r["body"]["file"]["file_number"],
                        int((r["body"].get("package") or {}).get("bytes") or 0)) for r in cur.fetchall()]
