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
    if not os.environ.get("ARCHIVE_SIGNING_KEY", "").strip():
        problems.append(SetupError("生产环境必须配置签名密钥 ARCHIVE_SIGNING_KEY（不会自动生成）",
                                   "production needs a configured signing key in ARCHIVE_SIGNING_KEY "
                                   "(none is generated)"))
    if database_accepts_no_password(services.db.url):
        problems.append(SetupError("生产环境的数据库必须要求密码：当前无需密码即可连接",
                                   "production refuses a database that accepts connections without a password"))
    return problems


def check_production(services) -> None:
    if problems := production_problems(services):
        raise SetupError("；".join(p.message_zh for p in problems), "; ".join(p.message_en for p in problems))
