"""`archive platform`: this installation and the national platform (ARCHIVE_PLATFORM_URL).

    archive platform status                  # the outbox; exit 3 while a record is refused
    archive platform deliver [--follow]      # send what is due; --follow: until stopped (SIGINT, SIGTERM)
    archive platform retry RECORD_ID | --all # refused records again, once the cause is mended
    archive platform feed                    # what the platform says is addressed to us
"""

from __future__ import annotations

import argparse
import signal
import threading

from cli.admin import cli_actor
from cli.transfers import installation, platform_client, signer
from errors import BadInput, NotReady


def _print_run(run) -> None:
    d = run.delays
    p50 = f", delay p50 {d[len(d) // 2]:.3f} s" if d else ""
    print(f"已报送 / delivered {run.count('delivered')} (duplicates {run.count('duplicate')}), "
          f"待重试 / to retry {run.count('retry')}, 被拒 / refused {run.count('refused')}{p50}", flush=True)


def cmd_platform(args: argparse.Namespace) -> int:
    from access import audit
    from crossregion import feed, outbox

    with installation() as services:
        if args.action == "status":
            b = outbox.backlog(services.db)
            age = f", oldest {b.oldest_pending_seconds:.0f} s" if b.oldest_pending_seconds is not None else ""
            where = services.settings.platform_url or "未配置 / not configured: records wait"
            print(f"全国平台 / platform: {where}")
            print(f"待报送 / pending {b.pending}{age}; 已报送 / delivered {b.delivered}; 被拒 / refused {b.failed}")
            for f in b.failures:
                print(f"  {f['record_id']}  {f['file_number']} {f['status']} #{f['sequence']}: "
                      f"{f['failure_code']}: {f['failure']}")
            if b.failures:
                raise NotReady(f"{b.failed} 条记录被全国平台拒收，请处理后 archive platform retry",
                               f"{b.failed} records were refused: mend the cause, then `archive platform retry`")
            return 0
        if args.action == "retry":
            if not args.record_id and not args.all:
                raise BadInput("请给出记录编号或 --all", "give the record id, or --all")
            n = outbox.retry_failed(services.db, None if args.all else args.record_id)
            with services.db.transaction() as cur:
                audit.record(cur, cli_actor(), "platform.retry", target=args.record_id or "all", detail={"records": n})
            print(f"已重新排队 / queued again: {n}")
            return 0
        client = platform_client(services)
        try:
            if args.action == "feed":
                read = feed.read(services, client)
                with services.db.transaction() as cur:
                    audit.record(cur, cli_actor(), "platform.feed", detail={"records": read.new},
                                 file_numbers=sorted({w.file_number for w in read.waiting}))
                print(f"读到 / read {read.new} records; 待接收 / waiting for us: {len(read.waiting)}")
                for w in read.waiting:
                    print(f"  {w.transfer_id}  {w.file_number}  from {w.sender}  {w.package_bytes} bytes")
                for seq, problem in read.problems:
                    print(f"  不可信 / not believed: platform record {seq}: {problem}")
                return 0
            retry = float(services.settings.platform_retry_seconds)
            if not args.follow:
                run = outbox.deliver_due(services.db, client, signer(), retry_seconds=retry, workers=args.workers)
                _print_run(run)
                return 0
            stop = threading.Event()
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: stop.set())
            print(f"报送至 / delivering to {client.url} until stopped (Ctrl-C)", flush=True)
            outbox.follow(services.db, client, signer(), retry_seconds=retry, stop=stop, workers=args.workers,
                          on_run=_print_run)
            return 0
        finally:
            client.close()


def add_parsers(sub) -> None:
    p = sub.add_parser("platform", help="the national platform: outbox status, delivery, retries, feed")
    p.add_argument("action", choices=["status", "deliver", "retry", "feed"])
    p.add_argument("record_id", nargs="?", help="retry: the refused record's id")
    p.add_argument("--all", action="store_true", help="retry: every refused record")
    p.add_argument("--follow", action="store_true", help="deliver: until stopped, each step as it is taken")
    p.add_argument("--workers", type=int, default=4, help="deliver: records sent at once (different transfers)")
    p.set_defaults(func=cmd_platform)
