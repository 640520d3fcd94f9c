"""`archive storage` and `archive rebuild-index`: the copies of the archive and what describes it.

    archive storage status             # each copy's store, how far each replica is behind, damaged copies
    archive storage replicate          # copy to each replica what it lacks (exit 3 while one is behind)
    archive storage audit [--all]      # the fixity audit: the day's share, or every object (exit 5 if damaged)
    archive storage inventories [--all]   # write the inventories of files that changed (--all: check every file)
    archive rebuild-index              # the archive's tables from the inventories, into an empty database
"""

from __future__ import annotations

import argparse

from cli.admin import cli_actor
from cli.transfers import installation
from errors import IntegrityFailure, NotReady


def _replicas_line(s) -> str:
    since = f", oldest since {s.oldest_behind:%Y-%m-%d %H:%M}" if s.oldest_behind else ""
    why = f"  ({s.problem})" if getattr(s, "problem", "") else ""
    return f"  {s.name:<12} 落后 / behind {s.behind} objects, {s.behind_bytes} bytes{since}{why}"


def cmd_storage(args: argparse.Namespace) -> int:
    from access import audit
    from preservation import fixity, inventory, replication
    from preservation.copies import copies

    with installation() as services:
        if args.action == "status":
            for c in copies(services):
                print(f"{c.name:<12} {c.store.description} bucket {c.bucket}")
            states = replication.status(services)
            for s in states:
                print(_replicas_line(s))
            damaged = fixity.damaged(services)
            for d in damaged:
                print(f"  损坏 / damaged: {d['key']} on {d['copy']}: {d['state']} (checked {d['checked_at']})")
            if damaged:
                raise IntegrityFailure(f"{len(damaged)} 个副本损坏或缺失且未能修复",
                                       f"{len(damaged)} copies are corrupt or missing and were not repaired")
            return 0
        if args.action == "replicate":
            states = replication.replicate(services)
            for s in states:
                print(f"  {s.name:<12} 已复制 / copied {s.copied} ({s.bytes_copied} bytes)")
                print(_replicas_line(s))
            if not states:
                print("未配置副本 / no replicas configured (ARCHIVE_REPLICAS)")
            if behind := [s for s in states if s.behind]:
                raise NotReady(f"副本 {', '.join(s.name for s in behind)} 尚未追上，稍后再运行",
                               f"replicas {', '.join(s.name for s in behind)} are still behind: run again later")
            return 0
        if args.action == "audit":
            run = fixity.audit(services, "all" if args.all else "due")
            inventory.refresh(services, inventory.files_holding(services, sorted(set(run.objects))))
            with services.db.transaction() as cur:
                audit.record(cur, cli_actor(), "storage.audit", detail={"checked": run.checked,
                                                                        "repaired": len(run.repaired)})
            print(f"已核验 / checked {run.checked} objects, read {run.bytes_read} bytes; "
                  f"已修复 / repaired {len(run.repaired)}; 无法修复 / unrepairable {len(run.unrepairable)}")
            for key, copy, src in run.repaired:
                print(f"  修复 / repaired {key} on {copy} from {src}")
            for key, copy, why in run.unrepairable:
                print(f"  无法修复 / unrepairable {key} on {copy}: {why}")
            for copy, why in run.unreachable.items():
                print(f"  无法读取 / unreachable {copy}: {why}")
            if run.unrepairable:
                raise IntegrityFailure(f"{len(run.unrepairable)} 个副本无法修复", f"{len(run.unrepairable)} copies "
                                       "could not be repaired")
            return 0
        files = inventory.stale(services, limit=10**9) if not args.all else _all_files(services)
        written = inventory.refresh(services, files)
        print(f"已写入清单 / inventories written: {len(written)} of {len(files)} files looked at")
        return 0


def _all_files(services) -> list[str]:
    with services.db.transaction() as cur:
        cur.execute("SELECT file_number FROM personnel_files ORDER BY file_number")
        return [r["file_number"] for r in cur.fetchall()]


def cmd_rebuild(args: argparse.Namespace) -> int:
    from access import audit
    from preservation.rebuild import rebuild

    with installation() as services:
        def progress(done: int, total: int) -> None:
            print(f"  {done}/{total} files", flush=True)

        r = rebuild(services, progress, resume=args.resume)
        with services.db.transaction() as cur:
            audit.record(cur, cli_actor(), "storage.rebuild_index", detail={"files": r.files})
        print(f"已重建 / rebuilt {r.files} files from the inventories in {services.store.description}")
        for table, n in r.rows.items():
            print(f"  {table:<20} {n}")
        for problem in r.refused:
            print(f"  未采用 / refused: {problem}")
        for used in r.fallbacks:
            print(f"  改用 / used instead: {used}")
        for file_number in r.lost:
            print(f"  无可用清单 / no usable inventory: {file_number}")
        if r.lost:
            raise IntegrityFailure(f"{len(r.lost)} 份档案没有可用的清单，未重建", f"{len(r.lost)} files have no "
                                   "inventory that passes its digest in any copy and were not rebuilt")
        return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("storage", help="preservation copies: status, replicate, fixity audit, inventories")
    p.add_argument("action", choices=["status", "replicate", "audit", "inventories"])
    p.add_argument("--all", action="store_true", help="audit: every object; inventories: every file")
    p.set_defaults(func=cmd_storage)
    p = sub.add_parser("rebuild-index", help="recreate the archive's tables from the store's inventories "
                                             "(into an empty database)")
    p.add_argument("--resume", action="store_true", help="go on with a rebuild that stopped part way")
    p.set_defaults(func=cmd_rebuild)
