"""What ARCHIVE_ENV=production refuses at start: the demo's keys, no signing key, and a database
that lets anyone in without a password. One sentence each, all at once."""

from __future__ import annotations

import os

import psycopg2
import psycopg2.extensions

from errors import SetupError


def database_accepts_no_password(url: str) -> bool:
    """True if the database of `url` lets its user in without any password: the same address,
    user and database, no password, no password file, no PGPASSWORD."""
    params = psycopg2.extensions.parse_dsn(url)
    params.pop("password", None)
    saved = {k: os.environ.pop(k) for k in ("PGPASSWORD", "PGPASSFILE") if k in os.environ}
    try:
        conn = psycopg2.connect(**params, passfile=os.devnull, connect_timeout=5)
    except psycopg2.OperationalError:
        return False  # refused (a password is required) or unreachable: the real connection will say
    finally:
        os.environ.update(saved)
    conn.close()
    return True


def production_problems(services) -> list[SetupError]:
    problems = list(services.settings.production_problems())
    if not services.settings.signing_key_pem:
        problems.append(SetupError("生产环境必须配置签名密钥 ARCHIVE_SIGNING_KEY（不会自动生成）",
                                   "production needs a configured signing key in ARCHIVE_SIGNING_KEY "
                                   "(none is generated)"))
    if database_accepts_no_password(services.db.url):
        problems.append(SetupError("生产环境的数据库必须要求密码：当前无需密码即可连接",
                                   "production refuses a database that accepts connections without a password"))
    if app_role_owns_the_audit_trail(services.db):
        problems.append(SetupError("应用所用的数据库角色不能拥有审计表或是超级用户：请用属主角色运行 archive migrate，"
                                   "并只授予应用角色 audit_log 的 SELECT、INSERT",
                                   "the application's database role must neither own audit_log nor be a superuser "
                                   "(either can switch its trigger off): migrate as an owner role (`archive migrate`) "
                                   "and grant the application's role only SELECT, INSERT on audit_log"))
    return problems


def app_role_owns_the_audit_trail(db) -> bool:
    """True if the role the application connects as could switch the audit trail's trigger
    off: a superuser, the owner, or a member of the owner role. False if the table is not there
    yet (migrations will make it, as its owner)."""
    with db.transaction() as cur:
        cur.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        if cur.fetchone()["rolsuper"]:
            return True
        cur.execute("SELECT pg_has_role(current_user, tableowner, 'USAGE') AS owns FROM pg_tables"
                    " WHERE schemaname = current_schema() AND tablename = 'audit_log'")
        row = cur.fetchone()
        return bool(row and row["owns"])


def check_production(services) -> None:
    if problems := production_problems(services):
        raise SetupError("；".join(p.message_zh for p in problems), "; ".join(p.message_en for p in problems))
