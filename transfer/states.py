"""A transfer's states and the steps between them, each step a timestamped row of
`transfer_events` written in the transaction that takes it.

    requested → packaged → available → fetched → received
                                             ↘ rejected (the receiver's signed rejection)
    requested, packaged, available → cancelled (by the sending agency)
    available, fetched → expired (no receipt before the record's expiry)

Each step also writes the national platform's record of it into the outbox, in the same
transaction (crossregion/outbox.py): the platform hears of every step taken, and of no other.
"""

from __future__ import annotations

import json

from crossregion import outbox
from errors import NotFound, NotReady

ACTIVE = ("requested", "packaged", "available", "fetched")
FINAL = ("received", "rejected", "cancelled", "expired")
STEPS: dict[str, tuple[str, ...]] = {   # to: the states it may be taken from
    "packaged": ("requested",),
    "available": ("packaged",),
    "fetched": ("available",),
    "received": ("available", "fetched"),
    "rejected": ("available", "fetched"),
    "cancelled": ("requested", "packaged", "available"),
    "expired": ("available", "fetched"),
}
STATUS_ZH = {"requested": "已申请", "packaged": "已打包", "available": "待接收方下载", "fetched": "接收方已下载",
             "received": "已接收", "rejected": "被拒收", "cancelled": "已撤销", "expired": "已过期",
             "prepared": "已生成记录（旧版）"}


class WrongState(NotReady):
    """The transfer is not in a state the step may be taken from."""


def move(cur, transfer_id: str, to: str, detail: dict | None = None, **columns) -> dict:
    """Takes the step to `to` (with `columns` of `transfers` set alongside) and records it;
    WrongState when the transfer is elsewhere. Returns the row as it was before."""
    cur.execute("SELECT * FROM transfers WHERE transfer_id = %s FOR UPDATE", (transfer_id,))
    row = cur.fetchone()
    if row is None:
        raise NotFound(f"没有编号为 {transfer_id} 的转递", f"no transfer {transfer_id}", item=transfer_id)
    if row["status"] not in STEPS[to]:
        raise WrongState(f"转递 {transfer_id} 当前为“{STATUS_ZH.get(row['status'], row['status'])}”，"
                         f"不能变为“{STATUS_ZH[to]}”",
                         f"transfer {transfer_id} is {row['status']}: it cannot become {to}", item=transfer_id)
    sets = "".join(f", {name} = %({name})s" for name in columns)
    cur.execute(f"UPDATE transfers SET status = %(to)s, updated_at = now(){sets} WHERE transfer_id = %(id)s",
                {**columns, "to": to, "id": transfer_id})
    _step(cur, transfer_id, to, detail)
    return row


def begin(cur, transfer_id: str, detail: dict) -> None:
    """The first step of a transfer whose `requested` row the caller has just inserted."""
    _step(cur, transfer_id, "requested", detail)


def _step(cur, transfer_id: str, to: str, detail: dict | None) -> None:
    cur.execute("INSERT INTO transfer_events (transfer_id, status, detail) VALUES (%s, %s, %s)",
                (transfer_id, to, json.dumps(detail or {}, ensure_ascii=False)))
    outbox.enqueue(cur, transfer_id, to)


def steps(cur, transfer_id: str) -> list[dict]:
    cur.execute("SELECT status, at, detail FROM transfer_events WHERE transfer_id = %s ORDER BY at, event_id",
                (transfer_id,))
    return [{"status": r["status"], "status_zh": STATUS_ZH.get(r["status"], r["status"]),
             "at": r["at"].isoformat(), "detail": r["detail"] or {}} for r in cur.fetchall()]
