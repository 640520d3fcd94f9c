"""`archive`: demo, services, ui, run, ocr, search, history, transfers and sample generation.

A known state (errors.ArchiveError: bad input, setup, not ready, refused, integrity) prints
one bilingual sentence and exits with its status (errors/__init__.py lists them); a traceback
means a bug.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from access import audit
from catalog.idnumber import mask_ids
from cli.admin import add_parsers as add_admin_parsers
from cli.admin import cli_actor
from cli.national import add_parsers as add_platform_parsers
from cli.preserve import add_parsers as add_storage_parsers
from cli.transfers import add_parsers as add_transfer_parsers
from errors import BadInput, BatchRefused, SetupError, run_command


def cmd_demo(args: argparse.Namespace) -> int:
    from cli.demo import demo

    return _finish(demo(keep_running=args.keep_running))


def _finish(summary) -> int:
    """Prints a run's summary; a batch where nothing can go on is refused (its one sentence)."""
    print("\n".join(summary.lines()))
    if summary.nothing_goes_on:
        first = summary.refused[0] if summary.refused else "the catalog lists no material"
        batch = summary.batch_id
        raise BatchRefused(f"批次 {batch} 没有可继续处理的材料（{first}），详见 `archive report {batch}`",
                           f"nothing in batch {summary.batch_id} can go on ({first}); see "
                           f"`archive report {summary.batch_id}`", item=summary.batch_id)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from cli.demo import run_folder
    from devservices import preflight
    from devservices.instance import LocalInstance
    from settings import StorageSettings

    preflight.check_all(StorageSettings.from_env().s3_endpoint_url)
    instance = LocalInstance.from_env()
    instance.export()
    started = instance.start()
    try:
        summary = run_folder(Path(args.batch), Path(args.truth) if args.truth else None)
    finally:
        if started:
            instance.stop()
    return _finish(summary)


def cmd_upload(args: argparse.Namespace) -> int:
    """Hands a batch in with a progress bar; interrupted, the same command resumes where it was."""
    from tqdm import tqdm

    from devservices.instance import local_database_if_unconfigured
    from stages.services import Services
    from stages.submit import scan_folder, submit_path

    path = Path(args.batch)
    if not path.exists():
        raise BadInput(f"{path} 不存在", f"{path} does not exist", item=str(path))
    with local_database_if_unconfigured():
        services = Services.from_env()
        services.prepare()
        total = sum(p.stat().st_size for _, p in scan_folder(path)) if path.is_dir() else path.stat().st_size
        with tqdm(total=total, unit="B", unit_scale=True, desc=path.name, file=sys.stderr) as bar:
            sub = submit_path(path, services, progress=lambda rel, size: bar.update(size))
    state = "已登记 / registered" if sub.new else "此前已交 / handed in before"
    print(f"{state}: batch {sub.batch_id}, {sub.files} files. Process it with `archive run {path}` "
          "or drop it into the inbox.")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from devservices.instance import local_database_if_unconfigured
    from stages.report import batch_report, report_html
    from stages.services import Services

    with local_database_if_unconfigured():
        services = Services.from_env()
        services.db.migrate()
        report = batch_report(args.batch_id, services)
        with services.db.transaction() as cur:
            audit.record(cur, cli_actor(), "batch.report", target=args.batch_id)
    if args.html:
        try:
            Path(args.html).write_text(report_html(report), encoding="utf-8")
        except OSError as exc:
            raise BadInput(f"无法写入 {args.html}：{exc.strerror}", f"cannot write {args.html}: {exc.strerror}",
                           item=args.html) from exc
        print(args.html)
    else:
        print(json.dumps(report, ensure_ascii=False, indent=2))
    return 0


def cmd_services(args: argparse.Namespace) -> int:
    from devservices.instance import LocalInstance

    instance = LocalInstance.from_env()
    if args.action == "start":
        instance.start()
        for k, v in instance.environment().items():
            print(f"export {k}={v}")
    elif args.action == "stop":
        instance.stop()
        print("PostgreSQL stopped")
    else:
        print("PostgreSQL running" if instance.postgres.running() else "PostgreSQL stopped")
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    from devservices.instance import LocalInstance

    instance = LocalInstance.from_env()
    instance.export()
    started = instance.start()
    cmd = [str(Path(sys.executable).parent / "dagster"), "dev", "-m", "pipeline.definitions",
           "-h", "127.0.0.1", "-p", str(args.port)]
    print(f"Dagster UI on http://127.0.0.1:{args.port} (Ctrl-C stops it)")
    # SIGINT: dagster dev shuts its webserver, daemon and code server down
    return _supervise(cmd, signal.SIGINT, 60, instance.stop if started else None)


def cmd_worker(args: argparse.Namespace) -> int:
    """A Celery worker of this installation (ARCHIVE_EXECUTOR=celery): it takes steps of any run
    from the broker and runs them here, `--concurrency` at a time. On a broker on loopback that
    nobody serves, it starts Redis for as long as it runs (the dev services; production's Redis
    is a service of its own)."""
    from urllib.parse import urlsplit

    from devservices.instance import LocalInstance
    from devservices.redis import LocalRedis
    from settings import Settings

    settings = Settings.from_env()
    instance = LocalInstance.from_env()
    instance.export()
    started = instance.start()
    broker = urlsplit(settings.celery_broker)
    redis = LocalRedis(broker.port or 6379) if broker.hostname in ("127.0.0.1", "localhost") else None
    redis_started = redis.start() if redis else False
    cmd = [sys.executable, "-m", "celery", "-A", "pipeline.celery_app", "worker", "-Q", "dagster",
           *(["--pool", "solo"] if args.concurrency == 1 else []),  # one step at a time, in the worker itself
           "--concurrency", str(args.concurrency), "--prefetch-multiplier", "1", "--loglevel", "INFO",
           "-n", f"{args.name}@%h", "--without-gossip", "--without-mingle"]
    print(f"Celery worker {args.name} on {settings.celery_broker}, {args.concurrency} at a time (Ctrl-C stops it)")

    def stop_services() -> None:
        if redis_started:
            redis.stop()
        if started:
            instance.stop()

    # SIGTERM: Celery's warm shutdown, the step under way finishes first
    return _supervise(cmd, signal.SIGTERM, 120, stop_services, {"ARCHIVE_EXECUTOR": "celery"})


def _supervise(cmd: list[str], stop_signal: int, grace: float, after, env: dict[str, str] | None = None) -> int:
    """Runs `cmd` until it ends, or until Ctrl-C or `kill PID` here, which it passes on as
    `stop_signal` (killing it after `grace` s); then `after()`, the services this command started."""
    def reset_signals() -> None:  # a child inherits ignored signals: dagster dev would ignore SIGINT/SIGTERM
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, preexec_fn=reset_signals)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(stop_signal)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return 0
    finally:
        if after:
            after()


def cmd_ocr(args: argparse.Namespace) -> int:
    from devservices import preflight
    from ocr import EngineConfig, OcrPool

    preflight.check_ocr()
    paths = [Path(p) for p in args.files]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise BadInput(f"文件不存在：{', '.join(missing)}", f"no such file: {', '.join(missing)}", item=missing[0])
    out = []
    with OcrPool(EngineConfig(lang=args.lang)) as pool:
        for path, pages in zip(paths, pool.map(p.read_bytes() for p in paths), strict=True):
            for i, page in enumerate(pages, start=1):
                out.append({"file": str(path), "page": i, "text": page.text, "confidence": page.confidence,
                            "seconds": page.seconds})
    if args.json:
        print(json.dumps(out, ensure_ascii=False, indent=2))
    else:
        for item in out:
            print(f"== {item['file']} page {item['page']} (confidence {item['confidence']})\n{item['text']}")
    return 0


MAX_PAGING = 1_000_000  # largest --limit or --offset of `archive search`


def cmd_search(args: argparse.Namespace) -> int:
    from devservices.instance import local_database_if_unconfigured
    from search.query import RANK_WINDOW, Filters, search
    from stages.services import Services

    for given in (args.formed_from, args.formed_to):
        try:
            if given:
                dt.date.fromisoformat(given)
        except ValueError as exc:
            raise BadInput(f"日期 {given} 无效，应为 YYYY-MM-DD", f"date {given!r} is not a date (YYYY-MM-DD)",
                           item=given) from exc
    # PostgreSQL refuses a negative LIMIT or OFFSET, or one past bigint, with an error of its own
    for option, value, least in (("--limit", args.limit, 1), ("--offset", args.offset, 0)):
        if not least <= value <= MAX_PAGING:
            raise BadInput(f"{option} 应为 {least} 到 {MAX_PAGING} 之间的整数",
                           f"{option} must be a whole number from {least} to {MAX_PAGING}", item=str(value))
    with local_database_if_unconfigured():  # the demo's database unless one is configured
        services = Services.from_env()
        services.db.migrate()
        result = search(services.db, args.query, Filters(args.class_code, args.formed_from, args.formed_to,
                                                        args.agency, args.batch),
                        limit=args.limit, offset=args.offset, actor=cli_actor(), id_hash_key=services.id_hash_key)
    hits = result.hits
    if result.truncated:  # on stderr with --json, whose stdout stays the list of hits
        print(f"匹配的页面太多，仅排序了前 {RANK_WINDOW} 页，请用 --class、--from、--to 缩小范围 / "
              f"too many pages match: only the first {RANK_WINDOW} were ranked; narrow with --class, --from, --to",
              file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps([h.to_dict() for h in hits], ensure_ascii=False, indent=2))
    else:
        for h in hits:
            where = f" {h.material} {h.title} p.{h.page_no}" if h.material else ""
            print(f"[{h.kind}] {h.file_number} {h.name} ({h.id_masked}){where}")
            if h.snippet:
                print(f"    {h.snippet}")
        if not hits:
            print("没有找到 / nothing found")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import dagster as dg
    import uvicorn

    from devservices.instance import local_database_if_unconfigured
    from pipeline.resources import archive_resources
    from pipeline.runner import BatchQueue
    from settings import Settings
    from stages.services import Services
    from web.app import create_app

    settings = Settings.from_env()
    _check_listen_options(args)
    tls = bool(args.tls_cert and args.tls_key)
    if not _loopback(args.host) and not tls and not settings.behind_tls_proxy:
        raise SetupError(f"不在本机回环地址（{args.host}）上提供服务时必须使用 TLS：请给出 --tls-cert 和 --tls-key，"
                         "或在 TLS 代理之后设置 ARCHIVE_BEHIND_TLS_PROXY=1",
                         f"serving on {args.host}, beyond loopback, needs TLS: give --tls-cert and --tls-key, or set "
                         "ARCHIVE_BEHIND_TLS_PROXY=1 behind a TLS proxy")
    ssl = {"ssl_certfile": args.tls_cert, "ssl_keyfile": args.tls_key} if tls else {}
    scheme = "https" if tls or settings.behind_tls_proxy else "http"

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    # uvicorn re-raises the SIGTERM it shut down on: handled, `kill PID` still unwinds (the demo PostgreSQL stopped)
    signal.signal(signal.SIGTERM, stop)
    with local_database_if_unconfigured():
        services = Services.from_env(keep_connections=8)
        services.prepare()  # production's refusals, before anything listens
        _check_port_free(args.host, args.port)
        print(f"员工网页 / staff web: {scheme}://{args.host}:{args.port}/  (登录 / log in: /login)")
        if not args.process:
            print("上传的批次由 Dagster 传感器处理（archive ui）/ uploads are run by the Dagster sensor (archive ui)")
            uvicorn.run(create_app(services, tls=tls), host=args.host, port=args.port, log_level="warning",
                        proxy_headers=settings.behind_tls_proxy, **ssl)
            return 0
        resources = archive_resources()
        with dg.DagsterInstance.get() as instance:
            runner = BatchQueue(resources, instance)
            try:
                uvicorn.run(create_app(services, launch=runner, tls=tls, launch_transfer=runner.transfer),
                            host=args.host, port=args.port,
                            log_level="warning", proxy_headers=settings.behind_tls_proxy, **ssl)
            finally:
                runner.close(timeout=5)
    return 0


def _check_listen_options(args: argparse.Namespace) -> None:
    """BadInput for a port no socket can have and for TLS files that are not a usable pair."""
    import ssl

    if not 1 <= args.port <= 65535:
        raise BadInput(f"--port {args.port} 应在 1 到 65535 之间", f"--port {args.port} must be from 1 to 65535",
                       item=str(args.port))
    if bool(args.tls_cert) != bool(args.tls_key):
        raise BadInput("--tls-cert 与 --tls-key 须同时给出", "--tls-cert and --tls-key go together: give both")
    if args.tls_cert:
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as exc:
            reason = "not a PEM certificate and its private key" if isinstance(exc, ssl.SSLError) else exc.strerror
            raise BadInput(f"无法以 {args.tls_cert} 和 {args.tls_key} 提供 TLS：{reason}",
                           f"cannot serve TLS with {args.tls_cert} and {args.tls_key}: {reason}",
                           item=args.tls_cert) from exc


def _check_port_free(host: str, port: int) -> None:
    """SetupError when nothing can listen there (uvicorn would log it and exit 3, our not-ready status)."""
    import socket

    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.create_server((host, port), family=family):
            pass
    except OSError as exc:
        raise SetupError(f"无法在 {host}:{port} 上监听（{exc.strerror or exc}）：端口已被占用或地址不可用",
                         f"cannot listen on {host}:{port} ({exc.strerror or exc}): the port is taken by another "
                         "program or the address is not this machine's", item=f"{host}:{port}") from exc


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_migrate(args: argparse.Namespace) -> int:
    """Applies pending migrations as ARCHIVE_MIGRATE_DATABASE_URL (the tables' owner), else as
    ARCHIVE_DATABASE_URL; in production the application's own role cannot (it must not own audit_log)."""
    from devservices.instance import local_database_if_unconfigured
    from settings import StorageSettings
    from storage.db import Database

    with local_database_if_unconfigured():
        storage = StorageSettings.from_env()
        url = storage.migrate_database_url or storage.database_url
        applied = Database(url).migrate()
    print(f"applied {len(applied)} migrations" + (f": {', '.join(applied)}" if applied else ""))
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    """Every version of every material of a personnel file, and the events recorded for it."""
    from devservices.instance import local_database_if_unconfigured
    from stages.history import file_history
    from stages.services import Services

    with local_database_if_unconfigured():
        services = Services.from_env()
        services.db.migrate()
        history = file_history(args.file_number, services)
        with services.db.transaction() as cur:
            audit.record(cur, cli_actor(), "file.history", target=args.file_number, file_numbers=[args.file_number])
    if args.json:
        print(mask_ids(json.dumps(dataclasses.asdict(history), ensure_ascii=False, indent=2, default=str)))
        return 0
    print(f"{history.file_number} {history.name}")
    for v in history.versions:
        state = ("现行 / current" if v.current else
                 f"已被替代 / superseded {v.superseded_at:%Y-%m-%d %H:%M} by {v.superseded_by}")
        scans = ", ".join(p["source_sha256"][:12] for p in v.pages)
        print(f"  {v.material:<7} v{v.version} {v.title} ({v.formed}) batch {v.batch_id}: {state}")
        print(f"          pages {len(v.pages)} [{scans}] pdf {(v.pdf_sha256 or 'not made yet')[:12]}")
    print("events / 事件")
    for e in history.events:
        print(f"  {e.at:%Y-%m-%d %H:%M:%S} {e.event_type:<11} {e.outcome:<7} {e.batch_id or ''} "
              f"{(e.object_sha256 or '')[:12]} {mask_ids(json.dumps(e.detail, ensure_ascii=False))[:120]}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from sample_scans.generate import generate

    batch = generate(Path(args.out), args.files, args.seed, args.variants.split(","), args.format, args.materials)
    print(batch)
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, with a wrong command line reported as bad input (exit 1, as the exit-status table
    says) rather than argparse's own status 2, which here means a setup problem."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"{BadInput.label}: 命令参数有误 / {self.prog}: {message}", file=sys.stderr)
        sys.exit(BadInput.exit_code)


def parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="archive", description="Personnel-archive digitization pipeline")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="run the whole pipeline on the sample batch and print a summary")
    p.add_argument("--keep-running", action="store_true", help="leave PostgreSQL running afterwards")
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("run", help="hand in a batch folder and run the whole pipeline on it")
    p.add_argument("batch")
    p.add_argument("--truth", help="folder of ground-truth .txt per page, for a CER figure")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("upload", help="hand in a batch folder or zip (progress bar, resumable)")
    p.add_argument("batch")
    p.set_defaults(func=cmd_upload)
    p = sub.add_parser("report", help="a batch's validation report: JSON, or --html FILE for staff")
    p.add_argument("batch_id")
    p.add_argument("--html", metavar="FILE")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("services", help="start, stop or show the local PostgreSQL")
    p.add_argument("action", choices=["start", "stop", "status"])
    p.set_defaults(func=cmd_services)
    p = sub.add_parser("ui", help="the Dagster UI on 127.0.0.1 over the local instance")
    p.add_argument("--port", type=int, default=3000)
    p.set_defaults(func=cmd_ui)
    p = sub.add_parser("worker", help="a Celery worker running the steps of runs (ARCHIVE_EXECUTOR=celery)")
    p.add_argument("--concurrency", type=int, default=1, help="steps at a time (default 1: one core's OCR)")
    p.add_argument("--name", default="worker", help="the worker's name, unique on this host")
    p.set_defaults(func=cmd_worker)
    p = sub.add_parser("ocr", help="OCR image or PDF files with the pipeline's engine")
    p.add_argument("files", nargs="+")
    p.add_argument("--json", action="store_true")
    p.add_argument("--lang", default="chi_sim+eng")
    p.set_defaults(func=cmd_ocr)
    p = sub.add_parser("search", help="find people, materials and phrases (names, text, ID or file number)")
    p.add_argument("query")
    p.add_argument("--class", dest="class_code", help="class code, e.g. 4 or 4-1")
    p.add_argument("--from", dest="formed_from", help="formation date from (YYYY-MM-DD)")
    p.add_argument("--to", dest="formed_to", help="formation date to (YYYY-MM-DD)")
    p.add_argument("--agency", help="holding agency")
    p.add_argument("--batch", help="scan batch id")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_search)
    add_admin_parsers(sub)
    add_transfer_parsers(sub)
    add_storage_parsers(sub)
    add_platform_parsers(sub)
    p = sub.add_parser("migrate", help="apply pending schema migrations (as ARCHIVE_MIGRATE_DATABASE_URL, the owner)")
    p.set_defaults(func=cmd_migrate)
    p = sub.add_parser("history", help="every version of a personnel file's materials, and its events")
    p.add_argument("file_number")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_history)
    p = sub.add_parser("serve", help="the staff web (upload page, reports, search API) on 127.0.0.1")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--process", action="store_true",
                   help="run uploaded batches in this server instead of leaving them to the Dagster sensor")
    p.add_argument("--tls-cert", help="certificate (PEM) to serve HTTPS; needed beyond loopback without a proxy")
    p.add_argument("--tls-key", help="its private key (PEM)")
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser("generate-samples", help="render a synthetic scan batch with ground truth")
    p.add_argument("out")
    p.add_argument("--files", type=int, default=3)
    p.add_argument("--materials", type=int, default=3)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--format", default="jpg", choices=["jpg", "png", "tif"])
    p.add_argument("--variants", default="clean")
    p.set_defaults(func=cmd_generate)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return run_command(args.func if args.command in OWN_SETTINGS else _configured(args.func), args)


# Commands that need no installation's configuration (local tools, the local PostgreSQL) or read only
# their own part of it (migrate: the database), so a bad setting elsewhere does not stop them.
OWN_SETTINGS = {"services", "ocr", "generate-samples", "migrate"}


def _configured(func):
    """The command, after the whole configuration is read: every bad setting is reported at once,
    a sentence each, before any work starts."""
    def run(args: argparse.Namespace) -> int:
        from settings import Settings

        Settings.from_env()
        return func(args)
    return run


if __name__ == "__main__":
    sys.exit(main())
