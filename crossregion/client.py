"""The national platform's HTTP protocol as a province speaks it (docs/national-platform.md):

    POST /api/v1/records            a signed record; header Idempotency-Key = its record_id
    GET  /api/v1/feed?after=N&wait=S  records addressed to us or sent by us, after the platform's
                                      sequence number N, waiting up to S seconds for one to come

HTTPS only, except to this machine's loopback (tests, the demo); a redirect is refused, it would
carry our token elsewhere. What an answer means for the outbox is decided here, in `Answer.kind`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from errors import BadInput, SetupError
from settings import Settings
from transfer.client import loopback
from transfer.signing import canonical_json

API = "/api/v1"
RETRYABLE_CODES = frozenset({"out_of_order"})   # a 409 that a later attempt may find gone


class PlatformUnavailable(SetupError):
    """The platform cannot be reached or does not answer as it should."""


@dataclass(frozen=True)
class Answer:
    kind: str                  # stored | duplicate | retry | refused
    http_status: int | None    # None: no answer at all (down, reset, timed out)
    code: str = ""             # the platform's reason code when it refused (schema, signature, ...)
    message: str = ""
    body: dict = field(default_factory=dict)
    seconds: float = 0.0


class PlatformClient:
    def __init__(self, url: str, token: str, ca_file: str | None = None, timeout: float = 10) -> None:
        parts = urlsplit(url)
        if parts.scheme != "https" and not (parts.scheme == "http" and loopback(parts.hostname or "")):
            raise BadInput(f"全国平台接口地址 {url} 必须使用 https", f"the platform's URL {url} must be https",
                           item=url)
        if not token:
            raise SetupError("未配置全国平台的令牌：请设置 ARCHIVE_PLATFORM_TOKEN 或 ARCHIVE_PLATFORM_TOKEN_FILE",
                             "no token for the national platform: set ARCHIVE_PLATFORM_TOKEN or "
                             "ARCHIVE_PLATFORM_TOKEN_FILE")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.http = httpx.Client(base_url=self.url, timeout=timeout, verify=ca_file or True, follow_redirects=False,
                                 headers={"Authorization": f"Bearer {token}"},
                                 limits=httpx.Limits(max_connections=16, max_keepalive_connections=16))

    @classmethod
    def from_settings(cls, settings: Settings) -> PlatformClient | None:
        """The configured platform's client; None where none is configured (records wait)."""
        if not settings.platform_url:
            return None
        return cls(settings.platform_url, settings.platform_token, settings.platform_ca_file or None,
                   settings.platform_timeout_seconds)

    def close(self) -> None:
        self.http.close()

    def post_record(self, record: dict) -> Answer:
        """Sends one signed record. Stored or a duplicate of one stored: done. No answer, 5xx,
        429, or a predecessor the platform lacks: try again later. Anything else: refused, with
        the platform's reason."""
        t0 = time.perf_counter()
        try:
            res = self.http.post(f"{API}/records", content=canonical_json(record),
                                 headers={"Content-Type": "application/json", "Idempotency-Key": record["record_id"]})
        except httpx.HTTPError as exc:
            return Answer("retry", None, "unreachable", f"{type(exc).__name__}: {exc}"[:300],
                          seconds=time.perf_counter() - t0)
        seconds = time.perf_counter() - t0
        body = _json(res)
        code, message = str(body.get("code", "")), str(body.get("message_en") or body.get("detail") or res.text[:300])
        if res.status_code in (200, 201):
            return Answer("duplicate" if body.get("duplicate") else "stored", res.status_code, body=body,
                          seconds=seconds)
        if res.status_code >= 500 or res.status_code in (408, 429) or code in RETRYABLE_CODES:
            return Answer("retry", res.status_code, code or f"http_{res.status_code}", message, body, seconds)
        if 300 <= res.status_code < 400:
            message = f"the platform redirected to {res.headers.get('location', '?')}: not followed"
        return Answer("refused", res.status_code, code or f"http_{res.status_code}", message, body, seconds)

    def feed(self, after: int, wait: float = 0, limit: int = 200) -> dict:
        """{"records": [{"platform_seq", "received_at", "record"}...], "last": N}: what came after N."""
        try:
            res = self.http.get(f"{API}/feed", params={"after": after, "wait": wait, "limit": limit},
                                timeout=self.timeout + wait)
        except httpx.HTTPError as exc:
            raise PlatformUnavailable(f"无法连接全国平台 {self.url}：{exc}",
                                      f"cannot reach the national platform at {self.url}: {exc}",
                                      item=self.url) from None
        if res.status_code != 200:
            body = _json(res)
            raise PlatformUnavailable(f"全国平台返回 {res.status_code}：{body.get('message_zh', res.text[:200])}",
                                      f"the national platform answered {res.status_code}: "
                                      f"{body.get('message_en', res.text[:200])}", item=self.url)
        return res.json()


def _json(res: httpx.Response) -> dict:
    try:
        body = res.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return body if isinstance(body, dict) else {}
