"""A receiving agency's client of a sender's pull API (web/pull.py): list what is addressed to
us, fetch a record, download a package (resuming a broken download with HTTP Range), post a
receipt. HTTPS only, except to this machine's loopback (tests, the demo)."""

from __future__ import annotations

import http.client
import ipaddress
import json
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from errors import BadInput, NotFound, SetupError
from settings import Settings
from storage.objects import file_sha256

PREFIX = "/api/pull/v1"
CHUNK = 1024 * 1024
TIMEOUT = 60


class PullError(SetupError):
    """The sender's API cannot be reached or answered what it should not."""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect would carry our token elsewhere (perhaps to plain http): refused."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise PullError(f"发送方接口要求重定向到 {newurl}，已拒绝", f"the sender's API redirected to {newurl}: refused",
                        item=req.full_url)


@dataclass(frozen=True)
class Download:
    path: Path
    sha256: str
    bytes: int
    resumed_from: int   # bytes kept from a broken download (an earlier run's or this one's), asked no more


def loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class PullClient:
    def __init__(self, endpoint: str, token: str, ca_file: str | None = None) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme != "https" and not (parts.scheme == "http" and loopback(parts.hostname or "")):
            raise BadInput(f"接收接口地址 {endpoint} 必须使用 https", f"pull endpoint {endpoint} must be https",
                           item=endpoint)
        self.base = endpoint.rstrip("/")
        self.token = token
        self.context = ssl.create_default_context(cafile=ca_file or Settings.from_env().pull_ca_file or None)
        self.opener = urllib.request.build_opener(_NoRedirects(), urllib.request.HTTPSHandler(context=self.context))

    def _request(self, path: str, data: bytes | None = None, headers: dict | None = None):
        req = urllib.request.Request(self.base + path, data=data, method="POST" if data is not None else "GET",
                                     headers={"Authorization": f"Bearer {self.token}", **(headers or {})})
        try:
            return self.opener.open(req, timeout=TIMEOUT)
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:500].decode("utf-8", "replace")
            if exc.code == 404:
                raise NotFound(f"发送方没有该转递（或不属于本机构）：{path}",
                               f"the sender has no such transfer for us: {path}", item=path) from None
            if exc.code in (401, 403):
                raise PullError(f"发送方拒绝了本机构的令牌（{exc.code}）：请检查令牌是否有效、"
                                "是否有 transfers:fetch 权限",
                                f"the sender refused our token ({exc.code}): is it live, of scope transfers:fetch?",
                                item=path) from None
            raise PullError(f"发送方接口返回 {exc.code}：{detail}", f"the sender's API answered {exc.code}: {detail}",
                            item=path) from None
        except (urllib.error.URLError, OSError) as exc:
            raise PullError(f"无法连接发送方接口 {self.base}：{exc}",
                            f"cannot reach the sender's API {self.base}: {exc}", item=self.base) from None

    def _json(self, path: str, data: bytes | None = None):
        with self._request(path, data, {"Content-Type": "application/json"} if data is not None else None) as res:
            return json.loads(res.read())

    def list(self) -> list[dict]:
        return self._json(f"{PREFIX}/transfers")["transfers"]

    def record(self, transfer_id: str) -> dict:
        return self._json(f"{PREFIX}/transfers/{transfer_id}/record")

    def post_receipt(self, transfer_id: str, receipt: dict) -> dict:
        return self._json(f"{PREFIX}/transfers/{transfer_id}/receipt",
                          json.dumps(receipt, ensure_ascii=False).encode())

    def download(self, transfer_id: str, path: Path, size: int, sha256: str,
                 progress: Callable[[int], None] | None = None, attempts: int = 3) -> Download:
        """The package into `path`; a `path.part` left by a broken download (this call's or an
        earlier run's) is continued from where it stopped, with Range and If-Range on the
        package's ETag (a changed package starts over). A connection lost mid-body is tried
        again `attempts` times, then PullError says how far it got. The digest is returned, not
        judged: a package that is not the one signed is the verification's to name
        (transfer/verify.py), in a rejection."""
        part = path.with_name(path.name + ".part")
        if part.exists() and part.stat().st_size > size:
            part.unlink()
        start = 0
        for attempt in range(1, attempts + 1):
            have = part.stat().st_size if part.exists() else 0
            if part.exists() and have >= size:
                break
            headers = {"Range": f"bytes={have}-", "If-Range": f'"{sha256}"'} if have else {}
            start = have
            try:
                with self._request(f"{PREFIX}/transfers/{transfer_id}/package", headers=headers) as res:
                    if have and res.status != 206:  # the sender sent the whole: start over
                        have = start = 0
                    with open(part, "ab" if have else "wb") as out:
                        while chunk := res.read(CHUNK):
                            if out.tell() + len(chunk) > size:  # more than was signed: not taken in
                                raise PullError(f"发送方发来的转递包超过记录所载的 {size} 字节",
                                                f"the sender sent more than the {size} bytes the record names",
                                                item=transfer_id)
                            out.write(chunk)
                            if progress:
                                progress(len(chunk))
                if part.stat().st_size < size:  # the connection closed early: urllib reads that as the end
                    raise http.client.IncompleteRead(b"", size - part.stat().st_size)
            except (OSError, http.client.HTTPException) as exc:  # cut mid-body; what came is kept
                got = part.stat().st_size if part.exists() else 0
                if attempt == attempts:
                    raise PullError(f"转递包下载中断（已下载 {got} / {size} 字节）：再次运行 archive fetch 即续传",
                                    f"the download broke off at {got} of {size} bytes ({exc}): run `archive fetch` "
                                    "again to resume", item=transfer_id) from None
                time.sleep(0.2 * attempt)
            else:
                break
        part.replace(path)
        return Download(path, file_sha256(path), path.stat().st_size, start)
