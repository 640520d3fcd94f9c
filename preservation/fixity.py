"""Fixity audit: every copy of an object read again and compared with the sha256 it was stored
with; a corrupt or missing copy rewritten from a good one.

A daily run checks the objects re-read longest ago, enough of them (total / period) that each
is checked within ARCHIVE_FIXITY_PERIOD_DAYS, plus any already overdue. Each check is an event
in the history of the files the object belongs to; so is each repair. A copy that cannot be
repaired (no good copy left, or the write fails) stays marked and fails the asset check.
"""

from __future__ import annotations

import datetime as dt
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from errors import ArchiveError
from preservation.copies import PRIMARY, Copy, copies
from stages.services import Services
from storage import events
from storage.events import Event
from storage.objects import CHUNK, ObjectMissing, copy_verified

CHECKERS = 4   # objects read at once: enough to keep the store busy, few enough for 2 cores to hash


@dataclass(frozen=True)
class CopyCheck:
    copy: str
    state: str                 # verified | missing | corrupt | unreachable
    detail: str = ""


@dataclass
class Audited:
    bucket: str
    key: str
    sha256: str
    checks: list[CopyCheck]
    repaired: list[tuple[str, str, str]] = field(default_factory=list)   # (copy, from copy, how verified)
    unrepaired: list[tuple[str, str]] = field(default_factory=list)  # (copy, why)


@dataclass
class FixityRun:
    checked: int = 0
    bytes_read: int = 0
    repaired: list[tuple[str, str, str]] = field(default_factory=list)     # (key, copy, from)
    unrepairable: list[tuple[str, str, str]] = field(default_factory=list)  # (key, copy, why)
    unreachable: dict[str, str] = field(default_factory=dict)               # copy: why
    objects: list[str] = field(default_factory=list)   # sha256 of each object found damaged: its files change
    stopped: str = ""                                   # why it ended before its share: time | unreachable

    @property
    def intact(self) -> bool:
        return not self.unrepairable


PAGE = 500   # objects read from the database at a time: the audit's memory does not grow with the archive

_ROW = ("SELECT o.bucket, o.key, o.sha256, o.bytes, o.media_type, o.checked_at IS NOT NULL AS was_checked,"
        " coalesce(o.checked_at, o.verified_at) AS last_read, coalesce(array_agg(c.copy)"
        " FILTER (WHERE c.copy IS NOT NULL), '{}') AS held FROM stored_objects o"
        " LEFT JOIN object_copies c USING (bucket, key)")


def share_of(services: Services, now: dt.datetime) -> int:
    """Objects a daily run checks: total / period, or every overdue one if more are."""
    period = services.storage_settings.fixity_period_days
    with services.db.transaction() as cur:
        cur.execute("SELECT count(*) AS n, count(*) FILTER (WHERE coalesce(checked_at, verified_at) < %s) AS overdue"
                    " FROM stored_objects", (now - dt.timedelta(days=period - 1),))
        r = cur.fetchone()
    return max(math.ceil(r["n"] / period), r["overdue"])


def _page(services: Services, share: str, after: tuple | None, limit: int) -> list[dict]:
    with services.db.transaction() as cur:
        if share == "all":   # in key order, from where the last page ended
            cur.execute(f"{_ROW} WHERE (o.bucket, o.key) > (%s, %s) GROUP BY o.bucket, o.key"
                        " ORDER BY o.bucket, o.key LIMIT %s", (*(after or ("", "")), limit))
        elif share == "new":  # only those never re-read since stored, in key order
            cur.execute(f"{_ROW} WHERE o.checked_at IS NULL AND (o.bucket, o.key) > (%s, %s)"
                        " GROUP BY o.bucket, o.key ORDER BY o.bucket, o.key LIMIT %s", (*(after or ("", "")), limit))
        else:
            # never re-read since stored first (a write the endpoint's digest confirmed is read
            # here within days), then the longest unchecked, from where the last page ended (an
            # object no copy of which could be read stays behind, not at the front of every page)
            after = after or (False, dt.datetime.min.replace(tzinfo=dt.UTC), "", "")
            cur.execute(f"{_ROW} WHERE (o.checked_at IS NOT NULL, coalesce(o.checked_at, o.verified_at), o.bucket,"
                        " o.key) > (%s, %s, %s, %s) GROUP BY o.bucket, o.key ORDER BY o.checked_at IS NOT NULL,"
                        " coalesce(o.checked_at, o.verified_at), o.bucket, o.key LIMIT %s", (*after, limit))
        return cur.fetchall()


def due(services: Services, share: str = "due", now: dt.datetime | None = None) -> list[dict]:
    """The first page a run would check (for `archive storage status` and the tests)."""
    n = share_of(services, now or dt.datetime.now(dt.UTC)) if share == "due" else PAGE
    return _page(services, share, None, min(n, PAGE))


def _check(c: Copy, bucket: str, key: str, sha256: str, size: int) -> CopyCheck:
    import hashlib

    try:
        info = c.store.head(c.bucket, key)
        if info is None:
            return CopyCheck(c.name, "missing", "no object under its key")
        h, got = hashlib.sha256(), 0
        for chunk in c.store.iter_range(c.bucket, key, 0, info.bytes - 1, CHUNK) if info.bytes else ():
            h.update(chunk)
            got += len(chunk)
        if got != size or h.hexdigest() != sha256:
            return CopyCheck(c.name, "corrupt", f"{got} bytes with sha256 {h.hexdigest()}, stored as {size} with "
                                                f"{sha256}")
        return CopyCheck(c.name, "verified")
    except ObjectMissing as exc:   # gone between the HEAD and the read
        return CopyCheck(c.name, "missing", exc.message_en)
    except ArchiveError as exc:
        return CopyCheck(c.name, "unreachable", exc.message_en)
    except OSError as exc:         # a disk's read error: this copy unreadable, the audit goes on
        return CopyCheck(c.name, "unreachable", f"{c.store.description}: {exc}")


def audit_object(row: dict, held: list[Copy]) -> Audited:
    """Checks every copy; repairs each corrupt or missing one from the first good copy."""
    a = Audited(row["bucket"], row["key"], row["sha256"],
                [_check(c, row["bucket"], row["key"], row["sha256"], row["bytes"]) for c in held])
    good = [c for c, k in zip(held, a.checks, strict=True) if k.state == "verified"]
    for c, k in zip(held, a.checks, strict=True):
        if k.state not in ("missing", "corrupt"):
            continue
        if not good:
            a.unrepaired.append((c.name, "no good copy left"))
            continue
        try:
            how = copy_verified(good[0].store, good[0].bucket, row["key"], c.store, c.bucket, row["key"],
                                row["sha256"], row["bytes"], row["media_type"] or "application/octet-stream")
            a.repaired.append((c.name, good[0].name, how))
        except ArchiveError as exc:
            a.unrepaired.append((c.name, exc.message_en))
        except OSError as exc:
            a.unrepaired.append((c.name, f"{c.store.description}: {exc}"))
    return a


def audit(services: Services, share: str = "due", now: dt.datetime | None = None,
          seconds: float | None = None) -> FixityRun:
    """`due`: the day's share (share_of); `new`: every object never re-read since stored; `all`:
    every object. `seconds` bounds the run: what is left stays due for the next one."""
    import time

    every = copies(services)
    run = FixityRun()
    wanted = share_of(services, now or dt.datetime.now(dt.UTC)) if share == "due" else None
    deadline = time.monotonic() + seconds if seconds else None
    after = None
    with ThreadPoolExecutor(CHECKERS) as pool:
        while wanted is None or run.checked < wanted:
            if deadline is not None and time.monotonic() > deadline:
                run.stopped = "time"
                break
            rows = _page(services, share, after, PAGE if wanted is None else min(PAGE, wanted - run.checked))
            if not rows:
                break
            last = rows[-1]
            after = (last["bucket"], last["key"]) if share != "due" else \
                (last["was_checked"], last["last_read"], last["bucket"], last["key"])
            # a replica without a row has not been given the object yet: behind, not missing
            held = [[c for c in every if c.name == PRIMARY or c.name in r["held"]] for r in rows]
            read_any = False
            for r, f in [(r, pool.submit(audit_object, r, h)) for r, h in zip(rows, held, strict=True)]:
                a = f.result()
                _record(services, r, a)
                run.checked += 1
                read_any = read_any or any(k.state != "unreachable" for k in a.checks)
                if a.repaired or a.unrepaired or any(k.state in ("missing", "corrupt") for k in a.checks):
                    run.objects.append(a.sha256)
                run.bytes_read += r["bytes"] * sum(1 for k in a.checks if k.state != "unreachable")
                run.repaired += [(a.key, c, src) for c, src, _ in a.repaired]
                run.unrepairable += [(a.key, c, why) for c, why in a.unrepaired]
                for k in a.checks:
                    if k.state == "unreachable":
                        run.unreachable.setdefault(k.copy, k.detail)
            if not read_any:   # no copy of a whole page could be read: the stores are down
                run.stopped = "unreachable"
                break
    return run


def _record(services: Services, row: dict, a: Audited) -> None:
    """The copies' states, the object's check time, and its events, in one transaction."""
    repaired = {c for c, _, _ in a.repaired}
    bad = [k for k in a.checks if k.state in ("missing", "corrupt")]
    with services.db.transaction() as cur:
        for k in a.checks:
            if k.state == "unreachable":
                continue
            state = "verified" if k.state == "verified" or k.copy in repaired else k.state
            cur.execute("INSERT INTO object_copies (bucket, key, copy, state, verified_at, checked_at) VALUES"
                        " (%s, %s, %s, %s, CASE WHEN %s = 'verified' THEN now() END, now())"
                        " ON CONFLICT (bucket, key, copy) DO UPDATE SET state = excluded.state, checked_at = now(),"
                        " verified_at = coalesce(excluded.verified_at, object_copies.verified_at)",
                        (a.bucket, a.key, k.copy, state, state))
        if any(k.state != "unreachable" for k in a.checks):  # a copy down does not hold the rest back
            cur.execute("UPDATE stored_objects SET checked_at = now() WHERE bucket = %s AND key = %s",
                        (a.bucket, a.key))
        found = {k.copy: k.state for k in a.checks}
        out = [Event("fixity_checked", outcome="failure" if bad else "success", object_sha256=a.sha256, detail={
            "key": a.key, "copies": found, "algorithm": "sha256",
            **({"problems": {k.copy: k.detail for k in bad}} if bad else {})})]
        out += [Event("repaired", object_sha256=a.sha256, detail={
            "key": a.key, "copy": c, "from": src, "was": found[c], "verified": how})
            for c, src, how in a.repaired]
        out += [Event("repair_failed", outcome="failure", object_sha256=a.sha256, detail={
            "key": a.key, "copy": c, "why": why}) for c, why in a.unrepaired]
        events.record(cur, out)


def damaged(services: Services) -> list[dict]:
    """Copies the last check found corrupt or missing and no repair has fixed since."""
    with services.db.transaction() as cur:
        cur.execute("SELECT c.bucket, c.key, c.copy, c.state, c.checked_at, o.sha256 FROM object_copies c"
                    " JOIN stored_objects o USING (bucket, key) WHERE c.state <> 'verified'"
                    " ORDER BY c.checked_at, c.key LIMIT 1000")
        return cur.fetchall()
