"""Users, their logins and sessions, and API tokens: the rows behind every Identity.

Secrets are random (secrets.token_urlsafe, 256 bits) and stored only as SHA-256; passwords
only as Argon2id. A session ends at logout, after ARCHIVE_SESSION_IDLE_MINUTES without use, or
ARCHIVE_SESSION_HOURS after login, whichever comes first. ARCHIVE_LOCKOUT_AFTER wrong
passwords in a row are tolerated; the next one locks the account for ARCHIVE_LOCKOUT_MINUTES,
during which even the right password is refused.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from access.identity import Identity, token_identity, user_identity
from access.passwords import hash_password, verify_password
from access.roles import AGENCY_ROLES, AGENCY_SCOPES, TOKEN_SCOPES, Permission, Role
from errors import BadInput, NotFound
from settings import Settings

TOKEN_PREFIX = "pat_"


def _sha(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _check_agency(cur, agency: str | None) -> None:
    if agency is None:
        return
    cur.execute("SELECT 1 FROM agencies WHERE code = %s", (agency,))
    if cur.fetchone() is None:
        raise NotFound(f"机构 {agency} 未登记", f"agency {agency} is not registered", item=agency)


def create_user(cur, username: str, role: Role | str, password: str, agency: str | None = None,
                display_name: str = "") -> int:
    role = Role(role)
    if role in AGENCY_ROLES and not agency:
        raise BadInput(f"{role.value} 角色必须属于一个机构（--agency）",
                       f"role {role.value} needs an agency (--agency)")
    _check_agency(cur, agency)
    cur.execute("INSERT INTO users (username, display_name, role, agency, password_hash) VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT (username) DO NOTHING RETURNING user_id",
                (username, display_name, role.value, agency, hash_password(password)))
    row = cur.fetchone()
    if row is None:
        raise BadInput(f"用户 {username} 已存在", f"user {username} exists already", item=username)
    return row["user_id"]


def set_password(cur, username: str, password: str) -> None:
    cur.execute("UPDATE users SET password_hash = %s, failed_logins = 0, locked_until = NULL WHERE username = %s",
                (hash_password(password), username))
    if not cur.rowcount:
        raise NotFound(f"没有用户 {username}", f"no user {username}", item=username)
    # a new password ends every session the old one opened
    cur.execute("UPDATE sessions SET ended_at = now() WHERE ended_at IS NULL AND user_id ="
                " (SELECT user_id FROM users WHERE username = %s)", (username,))


def set_disabled(cur, username: str, disabled: bool) -> None:
    cur.execute("UPDATE users SET disabled = %s, failed_logins = 0, locked_until = NULL WHERE username = %s",
                (disabled, username))
    if not cur.rowcount:
        raise NotFound(f"没有用户 {username}", f"no user {username}", item=username)
    if disabled:  # a disabled user's sessions end now
        cur.execute("UPDATE sessions SET ended_at = now() WHERE ended_at IS NULL AND user_id ="
                    " (SELECT user_id FROM users WHERE username = %s)", (username,))


def list_users(cur) -> list[dict]:
    cur.execute("SELECT username, display_name, role, agency, disabled, failed_logins, locked_until, created_at"
                " FROM users ORDER BY username")
    return cur.fetchall()


@dataclass(frozen=True)
class LoginResult:
    identity: Identity | None
    reason: str = ""               # why not, in English: wrong, locked, disabled, unknown
    failures: int = 0              # wrong passwords in a row, this one included
    locked_until: dt.datetime | None = None


def authenticate(cur, username: str, password: str, settings: Settings, client: str) -> LoginResult:
    """Checks a password, counting failures and locking the account after too many. An unknown
    user costs the same Argon2 work as a known one."""
    cur.execute("SELECT * FROM users WHERE username = %s FOR UPDATE", (username,))
    row = cur.fetchone()
    ok = verify_password(row["password_hash"] if row else None, password)
    if row is None:
        return LoginResult(None, "unknown")
    now = _now()
    if row["locked_until"] and row["locked_until"] > now:
        return LoginResult(None, "locked", row["failed_logins"], row["locked_until"])
    if row["disabled"]:
        return LoginResult(None, "disabled")
    if not ok:
        # a lock that has run out starts the count again: one wrong password must not lock anew
        failures = (0 if row["locked_until"] else row["failed_logins"]) + 1
        locked = now + dt.timedelta(minutes=settings.lockout_minutes) if failures > settings.lockout_after else None
        cur.execute("UPDATE users SET failed_logins = %s, locked_until = %s WHERE user_id = %s",
                    (failures, locked, row["user_id"]))
        return LoginResult(None, "locked" if locked else "wrong", failures, locked)
    # a disabled account, an unknown name and a wrong password answer alike (web/auth.py)
    cur.execute("UPDATE users SET failed_logins = 0, locked_until = NULL WHERE user_id = %s", (row["user_id"],))
    return LoginResult(user_identity(row, client))


def start_session(cur, identity: Identity, settings: Settings) -> str:
    """A new session for a logged-in user; returns the secret for the cookie."""
    secret = secrets.token_urlsafe(32)
    cur.execute("INSERT INTO sessions (token_sha256, user_id, expires_at, client) VALUES (%s, %s, %s, %s)",
                (_sha(secret), identity.ident, _now() + dt.timedelta(hours=settings.session_hours), identity.client))
    return secret


def session_identity(cur, secret: str, settings: Settings, client: str, touch: bool = True) -> Identity | None:
    """The user of a live session (kept alive if `touch`: a person's request, not a page
    polling on its own), else None: unknown, ended, idle too long, past its absolute expiry, or
    its user disabled."""
    cur.execute("SELECT u.*, s.token_sha256, s.last_seen, s.expires_at, s.ended_at FROM sessions s"
                " JOIN users u USING (user_id) WHERE s.token_sha256 = %s", (_sha(secret),))
    row = cur.fetchone()
    now = _now()
    if (row is None or row["ended_at"] is not None or row["disabled"] or row["expires_at"] <= now
            or row["last_seen"] + dt.timedelta(minutes=settings.session_idle_minutes) <= now):
        return None
    if touch:
        cur.execute("UPDATE sessions SET last_seen = now() WHERE token_sha256 = %s", (row["token_sha256"],))
    return user_identity(row, client)


def end_session(cur, secret: str) -> None:
    cur.execute("UPDATE sessions SET ended_at = now() WHERE token_sha256 = %s AND ended_at IS NULL", (_sha(secret),))


def create_token(cur, name: str, scopes: list[str], days: int, created_by: str,
                 agency: str | None = None) -> tuple[int, str]:
    """A new API token; returns (id, secret). The secret is shown once and never stored."""
    chosen = {Permission(s) for s in scopes} if all(s in {p.value for p in Permission} for s in scopes) else None
    if not chosen or not chosen <= TOKEN_SCOPES:
        allowed = ", ".join(sorted(p.value for p in TOKEN_SCOPES))
        raise BadInput(f"令牌权限应为：{allowed}", f"token scopes must be among: {allowed}")
    if chosen & AGENCY_SCOPES and not agency:
        raise BadInput("这些权限的令牌必须属于一个机构（--agency）",
                       "a token with these scopes needs an agency (--agency)")
    if not 1 <= days <= 366:
        raise BadInput("令牌有效期应为 1 至 366 天", "a token lives 1 to 366 days")
    _check_agency(cur, agency)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    cur.execute("INSERT INTO api_tokens (name, token_sha256, prefix, agency, scopes, created_by, expires_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING token_id",
                (name, _sha(secret), secret[:10], agency, sorted(p.value for p in chosen), created_by,
                 _now() + dt.timedelta(days=days)))
    return cur.fetchone()["token_id"], secret


def token_identity_of(cur, secret: str, client: str) -> Identity | None:
    """The client of a live token, else None: unknown, revoked or expired."""
    if not secret.startswith(TOKEN_PREFIX):
        return None
    cur.execute("SELECT * FROM api_tokens WHERE token_sha256 = %s", (_sha(secret),))
    row = cur.fetchone()
    if row is None or row["revoked_at"] is not None or row["expires_at"] <= _now():
        return None
    cur.execute("UPDATE api_tokens SET last_used_at = now() WHERE token_id = %s", (row["token_id"],))
    return token_identity(row, client)


def revoke_token(cur, token_id: int) -> None:
    cur.execute("UPDATE api_tokens SET revoked_at = now() WHERE token_id = %s AND revoked_at IS NULL", (token_id,))
    if not cur.rowcount:
        raise NotFound(f"没有有效的令牌 {token_id}", f"no live token {token_id}", item=str(token_id))


def list_tokens(cur) -> list[dict]:
    cur.execute("SELECT token_id, name, prefix, agency, scopes, created_by, created_at, expires_at, revoked_at,"
                " last_used_at FROM api_tokens ORDER BY token_id")
    return cur.fetchall()
