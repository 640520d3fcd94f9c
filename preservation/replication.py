"""Every stored object copied to each replica, read back there and recorded.

The archive stage writes only to the primary store, so a replica that is down delays this and
never a batch; each run copies what each replica lacks, oldest first, and stops a replica at
the first sign it is down (the others go on).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from errors import ArchiveError, IntegrityFailure
from preservation.copies import Copy, replicas
from stages.services import Services
from storage import events
from storage.events import Event
from storage.objects import CopyDamaged, ObjectStoreUnavailable, copy_verified

COPIERS = 8       # objects in flight to one replica: page-sized objects wait on round trips
BATCH = 256


@dataclass
class ReplicaState:
    name: str
    copied: int = 0
    bytes_copied: int = 0
    behind: int = 0                       # objects not yet on this replica
    behind_bytes: int = 0
    oldest_behind: dt.datetime | None = None
    problem: str = ""                     # why this run stopped early: the replica down
    skipped: list[str] = field(default_factory=list)   # objects whose primary copy failed its digest


def lag(services: Services, name: str) -> ReplicaState:
    with services.db.transaction() as cur:
        cur.execute("SELECT count(*) AS n, coalesce(sum(o.bytes), 0) AS b, min(o.verified_at) AS oldest"
                    " FROM stored_objects o WHERE NOT EXISTS (SELECT 1 FROM object_copies c WHERE c.bucket = o.bucket"
                    " AND c.key = o.key AND c.copy = %s)", (name,))
        r = cur.fetchone()
    return ReplicaState(name, behind=r["n"], behind_bytes=int(r["b"]), oldest_behind=r["oldest"])


def _behind(services: Services, name: str, after: tuple) -> list[dict]:
    with services.db.transaction() as cur:
        cur.execute("SELECT bucket, key, sha256, bytes, media_type, verified_at FROM stored_objects o"
                    " WHERE (verified_at, bucket, key) > (%s, %s, %s) AND NOT EXISTS (SELECT 1 FROM object_copies c"
                    " WHERE c.bucket = o.bucket AND c.key = o.key AND c.copy = %s)"
                    " ORDER BY verified_at, bucket, key LIMIT %s", (*after, name, BATCH))
        return cur.fetchall()


def replicate_to(services: Services, replica: Copy, deadline: float | None = None) -> ReplicaState:
    state = ReplicaState(replica.name)
    try:
        replica.store.ensure_bucket(replica.bucket, protect=True)
    except ArchiveError as exc:
        state.problem = exc.message_en
        return _with_lag(services, state)
    after: tuple = (dt.datetime.min.replace(tzinfo=dt.UTC), "", "")

    stop = threading.Event()   # the replica is down or time is up: nothing more is started

    def one(row: dict) -> dict | None:
        if stop.is_set() or (deadline is not None and time.monotonic() > deadline):
            return None
        how = copy_verified(services.store, row["bucket"], row["key"], replica.store, replica.bucket, row["key"],
                            row["sha256"], row["bytes"], row["media_type"] or "application/octet-stream")
        return {**row, "how": how}

    with ThreadPoolExecutor(COPIERS) as pool:
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            rows = _behind(services, replica.name, after)
            if not rows:
                break
            after = (rows[-1]["verified_at"], rows[-1]["bucket"], rows[-1]["key"])
            done = []
            for r, f in [(r, pool.submit(one, r)) for r in rows]:
                try:
                    if (copied := f.result()) is not None:
                        done.append(copied)
                except (ObjectStoreUnavailable, CopyDamaged) as exc:   # the replica down, or not keeping bytes
                    state.problem = state.problem or exc.message_en
                    stop.set()
                except IntegrityFailure as exc:  # the primary's copy is bad: skipped; the fixity audit repairs it
                    state.skipped.append(f"{r['key']}: {exc.message_en}")
            _record(services, replica, done)
            state.copied += len(done)
            state.bytes_copied += sum(r["bytes"] for r in done)
    return _with_lag(services, state)


def _record(services: Services, replica: Copy, rows: list[dict]) -> None:
    if not rows:
        return
    with services.db.transaction() as cur:
        for r in rows:
            cur.execute("INSERT INTO object_copies (bucket, key, copy, state, verified_at) VALUES"
                        " (%s, %s, %s, 'verified', now()) ON CONFLICT DO NOTHING RETURNING key",
                        (r["bucket"], r["key"], replica.name))
            if cur.fetchone():
                events.record(cur, [Event("replicated", object_sha256=r["sha256"], detail={
                    "copy": replica.name, "store": replica.store.description, "bucket": replica.bucket,
                    "key": r["key"], "bytes": r["bytes"], "verified": r["how"]})])


def _with_lag(services: Services, state: ReplicaState) -> ReplicaState:
    behind = lag(services, state.name)
    state.behind, state.behind_bytes, state.oldest_behind = behind.behind, behind.behind_bytes, behind.oldest_behind
    return state


def replicate(services: Services, seconds: float | None = None) -> list[ReplicaState]:
    """One pass over every replica; `seconds` bounds the run (a later one goes on)."""
    deadline = time.monotonic() + seconds if seconds else None
    return [replicate_to(services, r, deadline) for r in replicas(services)]


def status(services: Services) -> list[ReplicaState]:
    return [lag(services, r.name) for r in replicas(services)]
