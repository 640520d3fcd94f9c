"""`archive users|tokens|agencies|audit|keys`: what an administrator (or auditor) does from the
shell. Whoever runs these holds the database's credentials; each change is audited as
`cli:<OS user>`."""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from access import accounts, audit
from access.audit import Actor
from access.roles import TOKEN_SCOPES, Role
from errors import BadInput, IntegrityFailure


def cli_actor() -> Actor:
    return Actor(f"cli:{getpass.getuser()}", "cli")


@contextmanager
def _cursor() -> Iterator:
    from devservices.instance import local_database_if_unconfigured
    from stages.services import Services

    with local_database_if_unconfigured():
        services = Services.from_env()
        services.prepare()
        with services.db.transaction() as cur:
            yield cur


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("密码 / password: ")
    if first != getpass.getpass("再输一次 / again: "):
        raise BadInput("两次输入的密码不一致", "the two passwords differ")
    return first


def _need(value, zh: str, en: str) -> None:
    if not value:
        raise BadInput(zh, en)


def cmd_users(args: argparse.Namespace) -> int:
    if args.action != "list":
        _need(args.username, "请给出用户名", "give the user name")
    with _cursor() as cur:
        if args.action == "list":
            for u in accounts.list_users(cur):
                state = "disabled" if u["disabled"] else ("locked" if u["locked_until"] and
                                                          u["locked_until"] > dt.datetime.now(dt.UTC) else "active")
                print(f"{u['username']:<20} {u['role']:<10} {u['agency'] or '-':<10} {state}")
            return 0
        if args.action == "add":
            if not args.role:
                raise BadInput("请用 --role 指定角色", "give the role with --role")
            accounts.create_user(cur, args.username, args.role, _password(args), args.agency, args.display_name or "")
        elif args.action == "password":
            accounts.set_password(cur, args.username, _password(args))
        else:
            accounts.set_disabled(cur, args.username, args.action == "disable")
        audit.record(cur, cli_actor(), f"user.{args.action}", target=args.username,
                     detail={"role": args.role, "agency": args.agency} if args.action == "add" else {})
    print(f"{args.action}: {args.username}")
    return 0


def cmd_tokens(args: argparse.Namespace) -> int:
    if args.action == "create":
        _need(args.name, "请用 --name 给令牌命名", "name the token with --name")
    if args.action == "revoke":
        _need(args.token_id, "请给出要吊销的令牌编号", "give the id of the token to revoke")
    with _cursor() as cur:
        if args.action == "list":
            for t in accounts.list_tokens(cur):
                state = "revoked" if t["revoked_at"] else ("expired" if t["expires_at"] < dt.datetime.now(dt.UTC)
                                                           else "live")
                print(f"{t['token_id']:>4} {t['name']:<24} {t['prefix']}… {t['agency'] or '-':<8} "
                      f"{','.join(t['scopes'])} {state} until {t['expires_at']:%Y-%m-%d}")
            return 0
        if args.action == "create":
            token_id, secret = accounts.create_token(cur, args.name, args.scope or [], args.days, cli_actor().name,
                                                     args.agency)
            audit.record(cur, cli_actor(), "token.create", target=str(token_id),
                         detail={"name": args.name, "scopes": args.scope, "agency": args.agency, "days": args.days})
            print(f"令牌 / token {token_id} ({args.name}): {secret}")
            print("只显示这一次，请妥善保存 / shown this once only: keep it safe", file=sys.stderr)
            return 0
        accounts.revoke_token(cur, args.token_id)
        audit.record(cur, cli_actor(), "token.revoke", target=str(args.token_id))
    print(f"revoked: {args.token_id}")
    return 0


def cmd_agencies(args: argparse.Namespace) -> int:
    """The agency registry: add or list agencies, import or export it as JSON, and `key`: this
    installation's own signing key entered (and printed) for others' registries."""
    from transfer import registry

    if args.action == "add":
        _need(args.code and args.name, "请给出机构代码和名称", "give the agency's code and name")
    if args.action == "import":
        _need(args.code, "请给出机构登记文件", "give the registry file to import")
    with _cursor() as cur:
        if args.action == "list":
            for a in registry.agencies(cur):
                keys = ", ".join(k.key_id for k in registry.keys(cur, a.code))
                print(f"{a.code:<10} {a.name} {a.province} {a.endpoint} keys: {keys or '-'}")
            return 0
        if args.action == "export":
            text = json.dumps(registry.export_json(cur), ensure_ascii=False, indent=1)
            if args.code:
                with open(args.code, "w", encoding="utf-8") as out:
                    out.write(text + "\n")
            else:
                print(text)
            return 0
        if args.action == "key":
            from cli.transfers import signer
            from stages.services import Services
            from stages.transfer import register_own_key

            services = Services.from_env()
            me = signer()
            register_own_key(services, me)
            key = next((k for k in registry.keys(cur, services.agency) if k.key_id == me.key_id), None)
            own = registry.agency(cur, services.agency)
            print(json.dumps({"agencies": [{**own.__dict__, "keys": [{
                "key_id": me.key_id, "algorithm": "Ed25519", "public_key": me.public_key_b64(),
                "valid_from": key.valid_from.isoformat() if key else None, "valid_until": None}]}]},
                ensure_ascii=False, indent=1))
            return 0
        if args.action == "import":
            n = registry.import_json(cur, args.code)
            audit.record(cur, cli_actor(), "agency.import", target=args.code, detail={"agencies": n})
            print(f"imported {n} agencies from {args.code}")
            return 0
        registry.add_agency(cur, args.code, args.name, args.province or "", args.endpoint or "")
        audit.record(cur, cli_actor(), "agency.add", target=args.code, detail={"name": args.name,
                                                                               "endpoint": args.endpoint})
    print(f"agency {args.code}: {args.name}")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    with _cursor() as cur:
        if args.action == "head":
            print(audit.head(cur))
            return 0
        if args.action == "verify":
            verdict = audit.verify(cur, args.head)
            audit.record(cur, cli_actor(), "audit.verify", outcome="ok" if verdict.intact else "failed",
                         detail={"rows": verdict.rows, "first_bad": verdict.first_bad})
            if not verdict.intact:
                raise IntegrityFailure(f"审计记录被篡改：{verdict.reason_zh}", f"the audit trail was tampered with: "
                                       f"{verdict.reason}", item=str(verdict.first_bad))
            print(f"审计记录完整 / audit trail intact: {verdict.rows} rows")
            return 0
        since = dt.datetime.fromisoformat(args.since) if args.since else None
        until = dt.datetime.fromisoformat(args.until) if args.until else None
        rows = audit.query(cur, actor=args.actor, file_number=args.file, since=since, until=until, limit=args.limit)
        audit.record(cur, cli_actor(), "audit.read", detail={"actor": args.actor, "file": args.file, "rows": len(rows)})
    for r in rows:
        if args.json:
            print(json.dumps({**r.__dict__, "at": r.at.isoformat()}, ensure_ascii=False))
        else:
            print(f"{r.seq:>6} {r.at:%Y-%m-%d %H:%M:%S} {r.actor:<24} {r.client:<15} {r.action:<14} {r.outcome:<7} "
                  f"{r.target} {' '.join(r.file_numbers)}")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    """rotate-ids: every stored ID number re-encrypted under the current key of ARCHIVE_ID_KEYS."""
    from stages.services import Services

    with _cursor() as cur:
        cipher = Services.from_env().id_cipher

        def anew(stored: str, file_number: str) -> str:
            return cipher.encrypt(cipher.decrypt(stored, file_number), file_number)

        cur.execute("SELECT file_number, id_number_encrypted FROM personnel_files")
        moved = 0
        for row in cur.fetchall():
            if cipher.key_of(row["id_number_encrypted"]) != cipher.current:
                cur.execute("UPDATE personnel_files SET id_number_encrypted = %s WHERE file_number = %s",
                            (anew(row["id_number_encrypted"], row["file_number"]), row["file_number"]))
                moved += 1
        cur.execute("SELECT batch_id, catalog FROM batches WHERE catalog IS NOT NULL")
        for row in cur.fetchall():
            files = row["catalog"].get("files", [])
            if all(cipher.key_of(f.get("id_number_encrypted", "")) == cipher.current for f in files):
                continue
            fresh = [{**f, "id_number_encrypted": anew(f["id_number_encrypted"], f["file_number"])}
                     if "id_number_encrypted" in f else f for f in files]
            cur.execute("UPDATE batches SET catalog = %s WHERE batch_id = %s",
                        (json.dumps({**row["catalog"], "files": fresh}, ensure_ascii=False), row["batch_id"]))
        audit.record(cur, cli_actor(), "keys.rotate-ids", detail={"files": moved, "key": cipher.current})
    print(f"{moved} ID numbers re-encrypted under key {cipher.current}")
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("users", help="staff web users: add, list, password, disable, enable")
    p.add_argument("action", choices=["add", "list", "password", "disable", "enable"])
    p.add_argument("username", nargs="?", default="")
    p.add_argument("--role", choices=[r.value for r in Role])
    p.add_argument("--agency", help="agency code (staff and archivists)")
    p.add_argument("--display-name")
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    p.set_defaults(func=cmd_users)
    p = sub.add_parser("tokens", help="API tokens for machine clients: create (shown once), list, revoke")
    p.add_argument("action", choices=["create", "list", "revoke"])
    p.add_argument("--name", default="")
    p.add_argument("--scope", action="append", choices=sorted(s.value for s in TOKEN_SCOPES))
    p.add_argument("--agency")
    p.add_argument("--days", type=int, default=90)
    p.add_argument("token_id", nargs="?", type=int)
    p.set_defaults(func=cmd_tokens)
    p = sub.add_parser("agencies", help="the agency registry: add, list, import FILE, export [FILE], key (our own)")
    p.add_argument("action", choices=["add", "list", "import", "export", "key"])
    p.add_argument("code", nargs="?", help="add: the agency's code; import, export: the JSON file")
    p.add_argument("name", nargs="?")
    p.add_argument("--province")
    p.add_argument("--endpoint", help="its pull API, https://...")
    p.set_defaults(func=cmd_agencies)
    p = sub.add_parser("audit", help="the audit trail: list rows, or verify the chain")
    p.add_argument("action", nargs="?", default="list", choices=["list", "verify", "head"])
    p.add_argument("--head", help="with verify: SEQ:HASH printed by `archive audit head` earlier")
    p.add_argument("--actor", help="e.g. user:zhang")
    p.add_argument("--file", help="a file number")
    p.add_argument("--since")
    p.add_argument("--until")
    p.add_argument("--limit", type=int, default=200)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_audit)
    p = sub.add_parser("keys", help="rotate-ids: re-encrypt every stored ID number under the current key")
    p.add_argument("action", choices=["rotate-ids"])
    p.set_defaults(func=cmd_keys)
