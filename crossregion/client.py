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
MAX_ANSWER = 64 * 1024                            # bytes of an answer to a record read, at most


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
            status, raw = self._post(f"{API}/records", canonical_json(record),
                                     {"Content-Type": "application/json", "Idempotency-Key": record["record_id"]})
        except (httpx.HTTPError, TimeoutError) as exc:
            return Answer("retry", None, "unreachable", f"{type(exc).__name__}: {exc}"[:300],
                          seconds=time.perf_counter() - t0)
        seconds = time.perf_counter() - t0
        body = _json(raw)
        text = raw[:300].decode("utf-8", "replace")
        code, message = str(body.get("code", "")), str(body.get("message_en") or body.get("detail") or text)
        if status in (200, 201):
            # an answer that is not the platform's (a portal, a proxy's page) is no proof it was stored
            if not isinstance(body.get("platform_seq"), int) or not isinstance(body.get("duplicate"), bool):
                return Answer("retry", status, "bad_answer", f"the platform answered {status} without saying what "
                              f"it stored: {text[:120]}", body, seconds)
            return Answer("duplicate" if body["duplicate"] else "stored", status, body=body, seconds=seconds)
        if status >= 500 or status in (408, 429) or code in RETRYABLE_CODES:
            return Answer("retry", status, code or f"http_{status}", message, body, seconds)
        if 300 <= status < 400:
            message = "the platform redirected: not followed"
        return Answer("refused", status, code or f"http_{status}", message, body, seconds)

    def _post(self, path: str, content: bytes, headers: dict) -> tuple[int, bytes]:
        """(status, body) of a POST within `timeout` in all, the body read to MAX_ANSWER bytes:
        a platform that drips its answer cannot hold a deliverer (and its claim) for long."""
        end = time.monotonic() + self.timeout
        with self.http.stream("POST", path, content=content, headers=headers) as res:
            raw = b""
            for chunk in res.iter_bytes():
                raw += chunk
                if len(raw) > MAX_ANSWER:
                    raw = raw[:MAX_ANSWER]
                    break
                if time.monotonic() > end:
                    raise TimeoutError(f"the answer took more than {self.timeout:.0f} s")
            return res.status_code, raw

    def feed(self, after: int, wait: float = 0, limit: int = 200) -> dict:
        """{"records": [{"platform_seq", "received_at", "record"}...], "last": N}: what came after N."""
        try:
            res = self.http.get(f"{API}/feed", params={"after": after, "wait": wait, "limit": limit},
                                timeout=self.timeout + wait)
        except httpx.HTTPError as exc:
            raise PlatformUnavailable(f"无法连接全国平台 {self.url}：{exc}",
                                      f"cannot reach the national platform at {self.url}: {exc}",
                                      item=self.url) from None
        body = _json(res)
        if res.status_code != 200:
            raise PlatformUnavailable(f"全国平台返回 {res.status_code}：{body.get('message_zh', res.text[:200])}",
                                      f"the national platform answered {res.status_code}: "
                                      f"{body.get('message_en', res.text[:200])}", item=self.url)
        if not isinstance(body.get("records"), list):
            raise PlatformUnavailable("全国平台的通知列表格式不对", "the national platform's feed is not a list of "
                                      "records", item=self.url)
        return body


def _json(raw: bytes | httpx.Response) -> dict:
    try:
        body = json.loads(raw.content if isinstance(raw, httpx.Response) else raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return body if isinstance(body, dict) else {}
