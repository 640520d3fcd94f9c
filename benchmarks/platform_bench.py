"""Records delivered per second through the outbox to the in-project national platform, and the
delay from a transfer's state change to its record's arrival there (p50, p95).

The platform runs as its own process (`national-platform serve`), as a real one would, on its
own database in the same PostgreSQL. Two sending installations hold the same number of transfer
steps (synthetic files, real state changes through transfer/states.py, so each step writes its
record into the outbox):

- baseline: one installation's records, read from its outbox (not timed), then signed and POSTed
  (timed) by a thread pool of raw httpx clients, each thread sending whole transfers in order: no
  outbox bookkeeping;
- outbox: the other's, delivered by crossregion/outbox.deliver_due with as many deliverers
  (claim, sign, check the schema, POST, record the attempt, mark delivered).

Both sides sign every record in their timed part and keep their HTTP connections for the whole
run (the baseline one client a sender, the outbox its PlatformClient's pool); both first deliver
--warmup transfers of their own untimed, then the timed transfers in two halves, in the order
baseline, outbox, outbox, baseline, so that neither gains from going second to a warmed or
fuller platform. The ratio is the cost of the outbox's guarantees. Then the delay: the outbox's `follow` loop runs
while steps are taken at a steady rate; for each, the platform's received_at minus the step's
own time (one clock: both are PostgreSQL's now()).

    python benchmarks/platform_bench.py [--transfers 300] [--warmup 20] [--workers 4] [--rate 20] [--seconds 15]
"""

from __future__ import annotations

import argparse
import os
import queue
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import datetime as dt  # noqa: E402

import httpx  # noqa: E402

from crossregion import outbox  # noqa: E402
from crossregion.client import PlatformClient  # noqa: E402
from devservices.postgres import LocalPostgres  # noqa: E402
from devservices.s3 import free_port  # noqa: E402
from national_platform import service  # noqa: E402
from national_platform.cli import platform_database  # noqa: E402
from settings import (
    Settings,  # noqa: E402
    StorageSettings,  # noqa: E402
)
from stages.services import Services  # noqa: E402
from tests.synthetic_transfers import WALK, add_file, request, step  # noqa: E402
from transfer import registry  # noqa: E402
from transfer.signing import Signer, canonical_json  # noqa: E402

GZ, GD = "520000", "440000"


def installation(pg: LocalPostgres, name: str, root: Path) -> Services:
    pg.ensure_database(name)
    svc = Services.from_settings(StorageSettings(pg.url(name), None, str(root / name), f"{name}-s", f"{name}-a"),
                                 settings=Settings.from_env(), keep_connections=8)
    svc.prepare()
    with svc.db.transaction() as cur:
        registry.add_agency(cur, GD, "广东省人才交流服务中心")
    return svc


def make_steps(svc: Services, key: Signer, transfers: int, tag: str) -> list[str]:
    tids = []
    for i in range(transfers):
        add_file(svc, f"{tag}-{i}")
        tid = request(svc, f"{tag}-{i}", GD)
        for to in WALK:
            step(svc, tid, to, key)
        tids.append(tid)
    return tids


def start_platform(url: str, port: int) -> subprocess.Popen:
    env = {**os.environ, "NATIONAL_PLATFORM_DATABASE_URL": url}
    proc = subprocess.Popen([sys.executable, "-m", "national_platform.cli", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, start_new_session=True)
    for _ in range(200):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("the platform did not start")


def baseline(svc: Services, key: Signer, tids: list[str], senders: queue.Queue) -> float:
    """Seconds to sign and POST the records of `tids`, each transfer's in order, one sender's
    client a thread."""
    with svc.db.transaction() as cur:
        cur.execute("SELECT transfer_id, body FROM platform_outbox WHERE transfer_id::text = ANY(%s)"
                    " ORDER BY transfer_id, sequence", (tids,))
        rows = cur.fetchall()
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(str(r["transfer_id"]), []).append(r["body"])

    def send(bodies: list[dict]) -> None:
        http = senders.get()
        try:
            for body in bodies:
                rec = key.sign(body)
                res = http.post("/api/v1/records", content=canonical_json(rec),
                                headers={"Content-Type": "application/json", "Idempotency-Key": rec["record_id"]})
                assert res.status_code == 201, res.text
        finally:
            senders.put(http)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(senders.qsize()) as pool:
        list(pool.map(send, by.values()))
    return time.perf_counter() - t0


def outboxed(svc: Services, client: PlatformClient, key: Signer, transfers: int, workers: int) -> float:
    """Seconds deliver_due takes to deliver every record due, which must be `transfers` transfers'."""
    t0 = time.perf_counter()
    run = outbox.deliver_due(svc.db, client, key, retry_seconds=1, workers=workers)
    seconds = time.perf_counter() - t0
    assert run.count("delivered") == 5 * transfers and outbox.backlog(svc.db).pending == 0, run.count("delivered")
    return seconds


def delays(svc: Services, platform_url: str) -> list[float]:
    """Seconds from each step (its outbox row's time) to its record's arrival at the platform."""
    with svc.db.transaction() as cur:
        cur.execute("SELECT record_id::text, created_at FROM platform_outbox")
        made = {r["record_id"]: r["created_at"] for r in cur.fetchall()}
    import psycopg2

    with psycopg2.connect(platform_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT record_id::text, received_at FROM records WHERE record_id::text = ANY(%s)", (list(made),))
        got = dict(cur.fetchall())
    return sorted((got[k] - made[k]).total_seconds() for k in made if k in got)


def pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--transfers", type=int, default=300, help="transfers of 5 records each, per side")
    ap.add_argument("--warmup", type=int, default=20, help="transfers each side delivers untimed first")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--rate", type=float, default=20, help="steps a second during the delay measurement")
    ap.add_argument("--seconds", type=float, default=15)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="platform-bench-"))
    root.chmod(0o755)
    pg = LocalPostgres(root / "pg", free_port())
    pg.start()
    proc = None
    try:
        pg.ensure_database("platform")
        pdb = platform_database(pg.url("platform"))
        key = Signer.generate()
        with pdb.transaction() as cur:
            registry.add_agency(cur, GZ, "贵州省人才交流服务中心")
            registry.add_agency(cur, GD, "广东省人才交流服务中心")
            registry.add_key(cur, GZ, key.key_id, key.public_bytes(), dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
            token = service.issue_token(cur, GZ)
        port = free_port()
        proc = start_platform(pg.url("platform"), port)
        url = f"http://127.0.0.1:{port}"
        raw_side, box_side = installation(pg, "raw", root), installation(pg, "box", root)
        senders: queue.Queue = queue.Queue()
        for _ in range(args.workers):
            senders.put(httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10))
        client = PlatformClient(url, token)
        halves = [args.transfers // 2, args.transfers - args.transfers // 2]
        t0 = time.perf_counter()
        raw_warm = make_steps(raw_side, key, args.warmup, "RAW-W")
        make_steps(box_side, key, args.warmup, "BOX-W")
        raw_tids = [make_steps(raw_side, key, k, f"RAW-{h}") for h, k in enumerate(halves)]
        made = 5 * (2 * args.warmup + args.transfers)
        print(f"{made} transfer steps taken, each writing its record to the outbox: "
              f"{made / (time.perf_counter() - t0):.0f} steps/s (not timed below)", flush=True)
        baseline(raw_side, key, raw_warm, senders)  # the same warm-up for both, untimed
        outboxed(box_side, client, key, args.warmup, args.workers)
        make_steps(box_side, key, halves[0], "BOX-0")  # after: deliver_due sends whatever is due
        raw = baseline(raw_side, key, raw_tids[0], senders)
        box = outboxed(box_side, client, key, halves[0], args.workers)
        make_steps(box_side, key, halves[1], "BOX-1")
        box += outboxed(box_side, client, key, halves[1], args.workers)
        raw += baseline(raw_side, key, raw_tids[1], senders)
        while not senders.empty():
            senders.get().close()
        n = args.transfers * 5
        print(f"\nthroughput, {n} records, {args.workers} senders at once:")
        print(f"  raw httpx POSTs (no outbox)      {n / raw:8.0f} records/s")
        print(f"  outbox → platform                {n / box:8.0f} records/s   {raw / box * 100:.0f}% of the raw rate")

        # the delay, with the follow loop running while steps are taken at a steady rate
        lag_side = installation(pg, "lag", root)
        stop = threading.Event()
        deliverer = threading.Thread(target=outbox.follow, args=(lag_side.db, client, key),
                                     kwargs={"retry_seconds": 1, "stop": stop, "workers": args.workers})
        deliverer.start()
        steps_total = int(args.rate * args.seconds)
        t0 = time.perf_counter()
        i = 0
        tid = ""
        while i < steps_total:
            if i % 5 == 0:
                add_file(lag_side, f"LAG-{i}")
                tid = request(lag_side, f"LAG-{i}", GD)
            else:
                step(lag_side, tid, WALK[i % 5 - 1], key)
            i += 1
            time.sleep(max(0.0, t0 + i / args.rate - time.perf_counter()))
        end = time.monotonic() + 30
        while outbox.backlog(lag_side.db).pending and time.monotonic() < end:
            time.sleep(0.05)
        stop.set()
        deliverer.join(10)
        d = delays(lag_side, pg.url("platform"))
        print(f"\ndelay from a state change to its arrival at the platform ({len(d)} steps at {args.rate:.0f}/s, "
              f"follow loop woken by NOTIFY):")
        print(f"  p50 {pct(d, 50) * 1000:7.1f} ms   p95 {pct(d, 95) * 1000:7.1f} ms   max {d[-1] * 1000:7.1f} ms   "
              f"mean {statistics.mean(d) * 1000:.1f} ms")
        client.close()
    finally:
        if proc is not None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
