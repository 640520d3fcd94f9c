"""What every request of the staff web passes through, before any route: the Host allow-list,
the size limit on what it sends, the cross-site check on what changes state, rate limits, and
the security headers on what it gets back."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
HEADERS = {
    # scripts and styles from this server only; no framing; no guessing of content types
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; "
                               "form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-store",  # personal data stays out of shared and browser caches
}


def _refuse(status: int, zh: str, en: str) -> JSONResponse:
    return JSONResponse({"detail": f"{zh} / {en}", "message_zh": zh, "message_en": en}, status_code=status)


class UploadTooLarge(Exception):
    pass


class Guard:
    """ASGI middleware: allowed hosts, body size, same-origin writes, security headers."""

    def __init__(self, app: ASGIApp, allowed_hosts: tuple[str, ...], max_body: int,
                 hsts: bool = False) -> None:
        self.app, self.hosts, self.max_body = app, {h.lower() for h in allowed_hosts}, max_body
        self.headers = [(k.lower().encode(), v.encode()) for k, v in HEADERS.items()]
        if hsts:
            self.headers.append((b"strict-transport-security", b"max-age=31536000"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host = (headers.get("host") or "").rsplit(":", 1)[0].strip("[]").lower()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.headers]
            await send(message)

        if host not in self.hosts:
            await _refuse(400, "不允许的主机名", "host name not allowed")(scope, receive, send_with_headers)
            return
        if scope["method"] in UNSAFE_METHODS and not _same_origin(headers, host) and not _bearer(headers):
            # a page of another site may make the browser send this (with the cookie, were it not
            # SameSite=Strict): only this site's own pages, or a client with a token, may write
            await _refuse(403, "拒绝跨站请求", "cross-site request refused")(scope, receive, send_with_headers)
            return
        declared = headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_body:
            await self._too_large(scope, receive, send_with_headers)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:  # a body sent without a length, or longer than it said
                    raise UploadTooLarge
            return message

        try:
            await self.app(scope, counted, send_with_headers)
        except UploadTooLarge:
            await self._too_large(scope, receive, send_with_headers)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        mb = self.max_body / 1024**2
        await _refuse(413, f"上传内容超过 {mb:.0f} MB 的上限，请分成几个批次上传",
                      f"the upload exceeds the {mb:.0f} MB limit: hand it in as several batches")(scope, receive, send)


def _bearer(headers: Headers) -> bool:
    return headers.get("authorization", "").lower().startswith("bearer ")


def _same_origin(headers: Headers, host: str) -> bool:
    """The request comes from a page of this server: Origin, else Referer, names the host."""
    source = headers.get("origin") or headers.get("referer")
    if not source or source == "null":
        return False
    return (urlsplit(source).hostname or "").lower() == host and urlsplit(source).port == _port(headers)


def _port(headers: Headers) -> int | None:
    raw = headers.get("host") or ""
    tail = raw.rsplit(":", 1)[1] if ":" in raw.rsplit("]", 1)[-1] else ""
    return int(tail) if tail.isdigit() else None


class RateLimit:
    """At most `per_minute` events for one key in any 60 seconds (a sliding window, in memory:
    per server process)."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute, self.clock = per_minute, clock
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        now = self.clock()
        with self._lock:
            events = self._events.setdefault(key, deque())
            while events and events[0] <= now - 60:
                events.popleft()
            if len(events) >= self.per_minute:
                return False
            events.append(now)
            if len(self._events) > 100_000:  # forget the quiet ones rather than grow without end
                self._events = {k: v for k, v in self._events.items() if v and v[-1] > now - 60}
            return True
