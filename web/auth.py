"""Who is asking, on every request: the session cookie of a logged-in user, or an API token in
`Authorization: Bearer`. Never a header that names a user. Every refusal is written to the
audit trail with who asked (as far as known), from where, and for what.

A route declares what it needs with `Depends(auth.need(Permission.X))`: no or a dead
credential is 401, the wrong role 403 (before anything is looked up, so it says nothing of
whether the thing exists); a thing of another agency is the route's to answer 404, as for a
thing that does not exist (`auth.not_found`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable

from fastapi import HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, RedirectResponse

from access import accounts, audit
from access.audit import Actor
from access.identity import Identity
from access.roles import ROLE_ZH, Permission
from stages.services import Services
from web.security import RateLimit

# __Host-: the browser keeps it only as this host set it (Secure, path /, no Domain), so a
# neighbouring subdomain cannot plant one
COOKIE = "__Host-archive_session"
POLL = "x-archive-poll"  # a page refreshing itself: not a person's activity, does not extend the session


class Denied(HTTPException):
    """A refusal already audited."""


def client_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


class Auth:
    def __init__(self, services: Callable[[], Services]) -> None:
        self.services = services
        self._logins: RateLimit | None = None   # made on first use, from the settings then known
        self._searches: RateLimit | None = None
        self._refusals: RateLimit | None = None
        self._ghosts: dict[str, tuple[int, dt.datetime | None]] = {}

    @property
    def settings(self):
        return self.services().settings

    @property
    def logins(self) -> RateLimit:
        if self._logins is None:
            self._logins = RateLimit(self.settings.login_per_minute)
        return self._logins

    @property
    def refusals(self) -> RateLimit:
        if self._refusals is None:
            self._refusals = RateLimit(self.settings.refusals_per_minute)
        return self._refusals

    @property
    def searches(self) -> RateLimit:
        if self._searches is None:
            self._searches = RateLimit(self.settings.search_per_minute)
        return self._searches

    def audit(self, actor: Actor, action: str, **kwargs) -> None:
        with self.services().db.transaction() as cur:
            audit.record(cur, actor, action, **kwargs)

    def identify(self, request: Request) -> Identity | None:
        client = client_of(request)
        header = request.headers.get("authorization", "")
        with self.services().db.transaction() as cur:
            if header.lower().startswith("bearer "):
                return accounts.token_identity_of(cur, header[7:].strip(), client)
            if cookie := request.cookies.get(COOKIE):
                return accounts.session_identity(cur, cookie, self.settings, client,
                                                 touch=request.headers.get(POLL) != "1")
        return None

    def deny(self, request: Request, status: int, who: Identity | None, zh: str, en: str) -> Denied:
        if who is None and not self.refusals.allow(client_of(request)):
            # an unknown caller hammering: answered, not written, so it cannot flood the trail
            return Denied(429, "请求过于频繁 / too many refused requests")
        actor = who.actor if who else Actor("anonymous", client_of(request))
        self.audit(actor, "denied", outcome="denied", target=request.url.path,
                   detail={"method": request.method, "status": status})
        return Denied(status, f"{zh} / {en}")

    def need(self, permission: Permission | None = None) -> Callable:
        """A dependency: the caller's Identity, refused (and audited) unless it holds `permission`."""

        async def dependency(request: Request) -> Identity:
            who = await run_in_threadpool(self.identify, request)
            if who is None:
                raise await run_in_threadpool(self.deny, request, 401, None, "请先登录", "log in first")
            if permission is not None and not who.may(permission):
                raise await run_in_threadpool(self.deny, request, 403, who, "没有权限", "not permitted")
            return who

        return dependency

    def not_found(self, request: Request, who: Identity) -> Denied:
        """What a caller gets for a thing that does not exist and for one of another agency alike."""
        return self.deny(request, 404, who, "未找到", "not found")

    async def login(self, request: Request, username: str, password: str) -> JSONResponse:
        client = client_of(request)
        if not self.logins.allow(client):
            await run_in_threadpool(self.audit, Actor(f"user:{username}", client), "login", outcome="denied",
                                    detail={"reason": "rate"})
            return JSONResponse({"detail": "登录尝试过于频繁，请稍后再试 / too many login attempts, try again later"},
                                status_code=429)

        def check():
            with self.services().db.transaction() as cur:
                result = accounts.authenticate(cur, username, password, self.settings, client)
                secret = accounts.start_session(cur, result.identity, self.settings) if result.identity else None
                audit.record(cur, result.identity.actor if result.identity else Actor(f"user:{username}", client),
                             "login", outcome="ok" if result.identity else "failed",
                             detail={} if result.identity else {"reason": result.reason, "failures": result.failures})
            return result, secret

        result, secret = await run_in_threadpool(check)
        if result.reason in ("unknown", "disabled"):
            result = self._as_if_known(username, result)
        if result.identity is None:
            # slowed a little more with each failure in a row, so guessing costs time as well as the lock
            await asyncio.sleep(min(result.failures, 6) * self.settings.login_delay_ms / 1000)
            if result.reason == "locked":
                until = result.locked_until.astimezone().strftime("%H:%M")
                text = (f"失败次数过多，账号已锁定至 {until} / "
                        f"too many failed logins: the account is locked until {until}")
            else:
                text = "用户名或密码错误 / wrong user name or password"
            return JSONResponse({"detail": text}, status_code=401)
        who = result.identity
        response = JSONResponse({"user": who.name, "role": who.role.value if who.role else None,
                                 "role_zh": ROLE_ZH.get(who.role, ""), "agency": who.agency})
        response.set_cookie(COOKIE, secret, max_age=self.settings.session_hours * 3600, httponly=True,
                            secure=True, samesite="strict", path="/")
        return response

    def _as_if_known(self, username: str, result):
        """Failures of a name with no (usable) account counted and locked like a real one's, in
        memory, so neither the answer nor its delay tells whether the account exists."""
        from dataclasses import replace

        now = dt.datetime.now(dt.UTC)
        failures, locked = self._ghosts.get(username, (0, None))
        if locked and locked > now:
            return replace(result, reason="locked", failures=failures, locked_until=locked)
        failures = (0 if locked else failures) + 1
        locked = now + dt.timedelta(minutes=self.settings.lockout_minutes) if failures > self.settings.lockout_after \
            else None
        if len(self._ghosts) > 100_000:
            self._ghosts.clear()
        self._ghosts[username] = (failures, locked)
        return replace(result, reason="locked" if locked else "wrong", failures=failures, locked_until=locked)

    async def logout(self, request: Request) -> JSONResponse:
        who = await run_in_threadpool(self.identify, request)
        if cookie := request.cookies.get(COOKIE):
            def end():
                with self.services().db.transaction() as cur:
                    accounts.end_session(cur, cookie)
                    if who:
                        audit.record(cur, who.actor, "logout")
            await run_in_threadpool(end)
        response = JSONResponse({"detail": "已退出 / logged out"})
        response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="strict")
        return response


def login_redirect(request: Request) -> RedirectResponse:
    return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
