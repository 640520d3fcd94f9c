"""`national-platform`: run the in-project national platform (the demo's and the tests').

    national-platform serve [--host 127.0.0.1] [--port 8090]
    national-platform registry import registry.json    # agencies and keys (`archive agencies export`)
    national-platform token issue 440000               # prints a new token for that agency, once
    national-platform token revoke 440000

Its database: NATIONAL_PLATFORM_DATABASE_URL, else a database `national_platform` in the demo's
local PostgreSQL (started if need be).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from errors import SetupError, run_command
from settings.environment import text
from storage.db import Database

DATABASE = "national_platform"


def platform_database(url: str) -> Database:
    db = Database(url, keep=8, schema_package="national_platform")
    db.migrate()
    return db


@contextmanager
def _database() -> Iterator[Database]:
    url = text("NATIONAL_PLATFORM_DATABASE_URL")
    if url:
        yield platform_database(url)
        return
    from devservices.instance import LocalInstance

    instance = LocalInstance.from_env()
    started = instance.start()
    try:
        instance.postgres.ensure_database(DATABASE)
        yield platform_database(instance.postgres.url(DATABASE))
    finally:
        if started:
            instance.stop()


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from national_platform.api import create_platform_app
    from transfer.client import loopback

    if not loopback(args.host) and not (args.tls_cert and args.tls_key):
        raise SetupError("不在本机回环地址上提供服务时必须使用 TLS（--tls-cert、--tls-key）",
                         f"serving on {args.host}, beyond loopback, needs TLS: give --tls-cert and --tls-key")
    ssl = {"ssl_certfile": args.tls_cert, "ssl_keyfile": args.tls_key} if args.tls_cert else {}
    with _database() as db:
        print(f"全国平台 / national platform: {'https' if ssl else 'http'}://{args.host}:{args.port}/api/v1/")
        uvicorn.run(create_platform_app(db), host=args.host, port=args.port, log_level="warning", **ssl)
    return 0


def cmd_registry(args: argparse.Namespace) -> int:
    from transfer import registry

    with _database() as db, db.transaction() as cur:
        n = registry.import_json(cur, Path(args.file))
    print(f"已登记 / registered {n} agencies")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from national_platform import service

    with _database() as db, db.transaction() as cur:
        if args.action == "issue":
            print(service.issue_token(cur, args.agency, args.name or ""))
        else:
            print(f"已撤销 / revoked {service.revoke_tokens(cur, args.agency)} tokens of {args.agency}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="national-platform", description="the in-project national platform")
    sub = p.add_subparsers(required=True)
    s = sub.add_parser("serve", help="serve its API")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8090)
    s.add_argument("--tls-cert")
    s.add_argument("--tls-key")
    s.set_defaults(func=cmd_serve)
    s = sub.add_parser("registry", help="agencies and their keys")
    s.add_argument("action", choices=["import"])
    s.add_argument("file")
    s.set_defaults(func=cmd_registry)
    s = sub.add_parser("token", help="an agency's token")
    s.add_argument("action", choices=["issue", "revoke"])
    s.add_argument("agency")
    s.add_argument("--name")
    s.set_defaults(func=cmd_token)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return run_command(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
