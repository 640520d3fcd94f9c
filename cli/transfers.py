"""`archive transfer|fetch|import-transfer`: sending a file, and receiving one.

Sending agency:
    archive transfer request GZ2026-0070001 --to 440000 --reason 工作调动 --handler 张三 [--package]
    archive transfer list [--incoming] [--state active|final|all]
    archive transfer show TRANSFER_ID
    archive transfer cancel TRANSFER_ID [--why ...]
    archive transfer watch            # flag late receipts, expire what is past its record's expiry

Receiving agency (its own installation, with a token the sender issued it, scope transfers:fetch):
    archive fetch --from 520000 [--import]    # list, download (resumes), verify, receipt
    archive fetch --waiting [--import]        # what the national platform says waits for us, from any sender
    archive import-transfer TRANSFER_ID       # into our archive, searchable here

The national platform (ARCHIVE_PLATFORM_URL, ARCHIVE_PLATFORM_TOKEN):
    archive platform status                   # the outbox: pending, delivered, failed and why
    archive platform deliver [--follow]       # send what is due (--follow: until stopped, at once on each step)
    archive platform retry RECORD_ID|--all    # a refused record again, once its cause is mended
    archive platform feed                     # read what the platform says is addressed to us
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from catalog.idnumber import mask_ids
from cli.admin import cli_actor
from errors import ArchiveError, BadInput, IntegrityFailure, NotReady, SetupError
from settings import Settings


@contextmanager
def installation() -> Iterator:
    """This installation's services, prepared (the demo's database started if none is configured)."""
    from devservices.instance import local_database_if_unconfigured
    from stages.services import Services

    with local_database_if_unconfigured():
        services = Services.from_env()
        services.prepare()
        yield services


def signer():
    from pipeline.resources import SignerResource

    return SignerResource().signer()


def _line(t) -> str:
    late = "  回执逾期 / receipt overdue" if t.overdue_at and t.status in ("available", "fetched") else ""
    return (f"{t.transfer_id}  {t.file_number:<16} {t.sending_agency} → {t.receiving_agency}  {t.status:<9} "
            f"{t.updated_at:%Y-%m-%d %H:%M}  {t.handler}{late}")


def cmd_transfer(args: argparse.Namespace) -> int:
    from access import audit
    from stages import transfer as stage
    from transfer.states import ACTIVE, FINAL

    with installation() as services:
        if args.action == "request":
            if not args.file_number or not args.to:
                raise BadInput("请给出档号和 --to 接收机构代码",
                               "give the file number and --to the receiving agency's code")
            t = stage.request_transfer(services, args.file_number, args.to, args.reason, args.handler or "",
                                       cli_actor())
            print(f"已申请 / requested: {_line(t)}")
            if args.package:
                return _package(t.transfer_id)
            print("由 Dagster 传感器 transfer_requests 打包（archive ui），或加 --package 立即打包 / "
                  "packaged by the transfer_requests sensor (archive ui), or now with --package")
            return 0
        if args.action == "list":
            status = {"active": ACTIVE, "final": FINAL, "all": None}[args.state]
            side = {"receiver": services.agency} if args.incoming else {"sender": services.agency}
            rows = stage.transfers(services, status=status, **side)
            with services.db.transaction() as cur:
                audit.record(cur, cli_actor(), "transfer.list", detail={"rows": len(rows)},
                             file_numbers=sorted({t.file_number for t in rows}))
            for t in rows:
                print(_line(t))
            if not rows:
                print("没有转递 / no transfers")
            return 0
        if args.action == "watch":
            w = stage.watch_receipts(services)
            print(f"回执逾期 / overdue: {len(w.overdue)} (new {w.newly_overdue}), 已过期 / expired now: {w.expired}")
            for t in w.overdue:
                print(_line(t))
            return 0
        if not args.file_number:
            raise BadInput("请给出转递编号", "give the transfer id")
        if args.action == "cancel":
            t = stage.cancel_transfer(services, args.file_number, cli_actor(), args.why or "")
            print(f"已撤销 / cancelled: {_line(t)}")
            return 0
        detail = stage.transfer_detail(services, args.file_number, services.agency)
        with services.db.transaction() as cur:
            audit.record(cur, cli_actor(), "transfer.view", target=detail["transfer_id"],
                         file_numbers=[detail["file_number"]])
        print(mask_ids(json.dumps(detail, ensure_ascii=False, indent=2, default=str)))
    return 0


def _package(transfer_id: str) -> int:
    """The transfer's package made now, through its Dagster asset, in this process."""
    import dagster as dg

    from pipeline.resources import archive_resources
    from pipeline.runner import run_transfer

    t0 = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        result = run_transfer(transfer_id, archive_resources(),
                              instance, {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}})
    meta = {k: v.value for ev in result.get_asset_materialization_events() for k, v in
            ev.materialization.metadata.items()}
    print(f"已打包、签名，待接收方下载 / packaged, signed, available: {meta.get('pages')} pages, "
          f"{meta.get('package_bytes')} bytes, sha256 {str(meta.get('package_sha256'))[:16]}… "
          f"({time.perf_counter() - t0:.1f} s)")
    return 0


def token_for(sender: str, token_file: str | None, chosen: bool = True) -> str:
    """The token the sender issued us: ARCHIVE_PULL_TOKEN, else --token-file, else
    DAGSTER_HOME/keys/pull-<sender>.token. ARCHIVE_PULL_TOKEN is one token for whichever sender
    the operator named (`chosen`): a sender the platform's feed names gets only its own file,
    so an agency posting a record to us never receives a token another agency issued us."""
    settings = Settings.from_env()
    if chosen and settings.pull_token:
        return settings.pull_token
    path = Path(token_file) if token_file else settings.keys_dir / f"pull-{sender}.token"
    if not path.is_file():
        raise SetupError(f"没有 {sender} 发给本机构的令牌：请设置 ARCHIVE_PULL_TOKEN 或把令牌存入 {path}",
                         f"no token from {sender}: set ARCHIVE_PULL_TOKEN or keep the token in {path}", item=str(path))
    return path.read_text(encoding="utf-8").strip()


def _pull_client(services, code: str, endpoint: str | None, token_file: str | None, chosen: bool = True):
    """A client of `code`'s pull API at the endpoint our registry holds for it (or `endpoint`)."""
    from transfer import registry
    from transfer.client import PullClient

    with services.db.transaction() as cur:
        sender = registry.agency(cur, code)
    if not (endpoint or sender.endpoint):
        raise SetupError(f"机构 {sender.code} 没有登记拉取接口地址：请用 --endpoint 给出或在机构登记中补上",
                         f"agency {sender.code} has no pull endpoint in the registry: give --endpoint",
                         item=sender.code)
    return sender, PullClient(endpoint or sender.endpoint, token_for(sender.code, token_file, chosen))


def platform_client(services):
    """The configured national platform's client; SetupError naming the settings when none is."""
    from crossregion.client import PlatformClient

    client = PlatformClient.from_settings(services.settings)
    if client is None:
        raise SetupError("未配置全国平台：请设置 ARCHIVE_PLATFORM_URL 和 ARCHIVE_PLATFORM_TOKEN",
                         "no national platform configured: set ARCHIVE_PLATFORM_URL and ARCHIVE_PLATFORM_TOKEN")
    return client


def cmd_fetch(args: argparse.Namespace) -> int:
    if bool(args.sender) == bool(args.waiting):
        raise BadInput("请给出 --from 发送机构代码，或 --waiting（按全国平台的通知）",
                       "give --from the sending agency's code, or --waiting (what the national platform tells us)")
    with installation() as services:
        me = signer()
        if args.sender:
            sender, client = _pull_client(services, args.sender, args.endpoint, args.token_file)
            listed = [(client, t) for t in client.list()]
            if not listed:
                print(f"{sender.name} 没有待本机构接收的转递 / nothing from {sender.code} for us")
        else:
            listed = _waiting(services)
        if args.transfer_id:
            listed = [(c, t) for c, t in listed if t["transfer_id"] == args.transfer_id]
        return _fetch_each(services, me, listed, args)


def _waiting(services) -> list:
    """(client, listing) of each transfer the platform's feed says waits for us. A feed that
    cannot be read, a sender we hold no token or endpoint for, is said and skipped: what can be
    fetched still is."""
    from crossregion import feed

    try:
        read = feed.read(services, platform_client(services))
        waiting, problems = read.waiting, read.problems
    except ArchiveError as exc:  # the platform is away or answers nonsense: what we knew still waits
        print(f"{exc.label}: {exc}", file=sys.stderr)
        waiting, problems = feed.waiting(services), []
    for seq, problem in problems:
        print(f"全国平台第 {seq} 条记录不可信，已忽略 / platform record {seq} not believed: {problem}", file=sys.stderr)
    clients, listed = {}, []
    for w in waiting:
        if w.sender not in clients:
            try:
                clients[w.sender] = _pull_client(services, w.sender, None, None, chosen=False)[1]
            except ArchiveError as exc:
                clients[w.sender] = exc
        if isinstance(clients[w.sender], ArchiveError):
            print(f"跳过 / skipped {w.transfer_id} from {w.sender}: {clients[w.sender]}", file=sys.stderr)
            continue
        listed.append((clients[w.sender], w.listing()))
    if not waiting:
        print("全国平台没有待本机构接收的转递 / the national platform lists nothing waiting for us")
    return listed


def _fetch_each(services, me, listed: list, args: argparse.Namespace) -> int:
    """Fetches each in turn; one that cannot be fetched is said and the next is taken, and the
    exit status tells that something was left."""
    from tqdm import tqdm

    from stages.receive import fetch_one, import_transfer

    rejected, left = 0, 0
    for client, t in listed:
        try:
            with tqdm(total=t.get("package_bytes") or 0, unit="B", unit_scale=True, file=sys.stderr,
                      desc=t["transfer_id"][:8], disable=args.quiet) as bar:
                got = fetch_one(services, client, me, t, cli_actor(), progress=bar.update)
        except ArchiveError as exc:
            left += 1
            print(f"未能接收 / not fetched: {t['transfer_id']}: {exc}", file=sys.stderr)
            continue
        steps = ", ".join(f"{k} {v:.2f} s" for k, v in got.seconds.items())
        if got.outcome == "received":
            print(f"已接收并回执 / received, receipted: {got.transfer_id} {got.file_number} ({steps})")
            if args.import_:
                r = import_transfer(services, got.transfer_id, cli_actor())
                print(f"已导入 / imported: {r.file_number}, {r.materials} materials, {r.pages} pages, "
                      f"{r.events_carried} events carried over")
        else:
            rejected += 1
            print(f"已拒收 / rejected: {got.transfer_id} ({steps})")
            for c in got.failed:
                print(f"    {c['code']}: {c['message_zh']} / {c['message_en']}")
    if rejected:
        raise IntegrityFailure(f"{rejected} 个转递未通过核验，已向发送方发出拒收",
                               f"{rejected} transfers failed verification: rejections were sent")
    if left:
        raise NotReady(f"{left} 个转递未能接收（原因见上），下次运行再试",
                       f"{left} transfers could not be fetched (reasons above): the next run tries again")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from stages.receive import import_transfer

    with installation() as services:
        r = import_transfer(services, args.transfer_id, cli_actor())
    if r.already:
        print(f"此前已导入 / imported before: {r.file_number}")
    else:
        print(f"已导入 / imported: {r.file_number}, {r.materials} materials, {r.pages} pages, {r.objects_stored} "
              f"objects stored, {r.events_carried} events carried over")
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("transfer", help="send a file to another agency: request, list, show, cancel, watch")
    p.add_argument("action", choices=["request", "list", "show", "cancel", "watch"])
    p.add_argument("file_number", nargs="?", help="request: the file number; show, cancel: the transfer id")
    p.add_argument("--to", help="the receiving agency's code (archive agencies list)")
    p.add_argument("--reason", default="工作调动")
    p.add_argument("--handler", help="经办人")
    p.add_argument("--package", action="store_true", help="package it now, in this process")
    p.add_argument("--incoming", action="store_true", help="list: addressed to us")
    p.add_argument("--state", choices=["active", "final", "all"], default="all")
    p.add_argument("--why", help="cancel: why")
    p.set_defaults(func=cmd_transfer)
    p = sub.add_parser("fetch", help="fetch, verify and receipt what an agency's pull API holds for us")
    p.add_argument("--from", dest="sender", help="the sending agency's code")
    p.add_argument("--waiting", action="store_true", help="what the national platform says waits for us")
    p.add_argument("--endpoint", help="its pull API (default: the registry's)")
    p.add_argument("--token-file", help="the token it issued us (default DAGSTER_HOME/keys/pull-<code>.token)")
    p.add_argument("--transfer", dest="transfer_id", help="only this transfer")
    p.add_argument("--import", dest="import_", action="store_true", help="import what was received")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_fetch)
    p = sub.add_parser("import-transfer", help="a received transfer into our archive, searchable here")
    p.add_argument("transfer_id")
    p.set_defaults(func=cmd_import)
