"""Object storage behind one interface: S3 (production, and moto in tests) or a local folder.

Every write carries the content's sha256 (as object metadata), and `put_verified` reads the
object back and compares digests before anyone records it as stored.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from errors import IntegrityFailure, SetupError


class ObjectStoreUnavailable(SetupError):
    """The object store cannot be reached or used; the message says which and how to fix it."""


class IntegrityError(IntegrityFailure):
    """An object read back does not have the digest it was written with."""


@dataclass(frozen=True)
class ObjectInfo:
    bytes: int
    sha256: str | None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def content_key(sha256: str, prefix: str = "sha256") -> str:
    """Content-addressed key: identical content is stored once whatever its name."""
    return f"{prefix}/{sha256[:2]}/{sha256[2:4]}/{sha256}"


class ObjectStore(Protocol):
    description: str

    def ensure_bucket(self, bucket: str) -> None: ...
    def put(self, bucket: str, key: str, data: bytes, sha256: str, content_type: str = ...) -> None: ...
    def get(self, bucket: str, key: str) -> bytes: ...
    def head(self, bucket: str, key: str) -> ObjectInfo | None: ...
    def count(self, bucket: str, prefix: str = "") -> int: ...
    def put_file(self, bucket: str, key: str, path: Path, sha256: str, content_type: str = ...) -> None: ...
    def iter_range(self, bucket: str, key: str, start: int, end: int, chunk: int = ...) -> Iterator[bytes]: ...


CHUNK = 8 * 1024**2  # what a streamed read or a verified large write holds at a time


def sha256_of_object(store: ObjectStore, bucket: str, key: str, size: int) -> str:
    """The stored object's sha256, read a chunk at a time (a package of gigabytes never in memory)."""
    h = hashlib.sha256()
    for chunk in store.iter_range(bucket, key, 0, size - 1, CHUNK) if size else ():
        h.update(chunk)
    return h.hexdigest()


def download(store: ObjectStore, bucket: str, key: str, path: Path, size: int) -> str:
    """The object into a file, a chunk at a time; returns its sha256."""
    h = hashlib.sha256()
    with open(path, "wb") as out:
        for chunk in store.iter_range(bucket, key, 0, size - 1, CHUNK) if size else ():
            h.update(chunk)
            out.write(chunk)
    return h.hexdigest()


def put_file_verified(store: ObjectStore, bucket: str, key: str, path: Path, sha256: str,
                      content_type: str = "application/octet-stream") -> None:
    """A file on disk into the store (multipart where it is large), read back a chunk at a time
    and compared; IntegrityError unless the digests match."""
    size = Path(path).stat().st_size
    store.put_file(bucket, key, Path(path), sha256, content_type)
    back = sha256_of_object(store, bucket, key, size)
    if back != sha256:
        raise IntegrityError(f"对象 {bucket}/{key} 读回的摘要与写入时不符",
                             f"{bucket}/{key}: wrote sha256 {sha256}, read back {back}", item=key)


def put_verified(store: ObjectStore, bucket: str, key: str, data: bytes,
                 content_type: str = "application/octet-stream") -> str:
    """Writes, reads back, and raises IntegrityError unless the digests match; returns sha256."""
    digest = sha256_hex(data)
    store.put(bucket, key, data, digest, content_type)
    back = sha256_hex(store.get(bucket, key))
    if back != digest:
        raise IntegrityError(f"对象 {bucket}/{key} 读回的摘要与写入时不符",
                             f"{bucket}/{key}: wrote sha256 {digest}, read back {back}", item=key)
    return digest


def put_if_absent(store: ObjectStore, bucket: str, key: str, data: bytes, sha256: str,
                  content_type: str = "application/octet-stream") -> bool:
    """Idempotent write of content-keyed data; True if it was written now."""
    info = store.head(bucket, key)
    if info is not None and info.sha256 == sha256 and info.bytes == len(data):
        return False
    store.put(bucket, key, data, sha256, content_type)
    return True


class S3ObjectStore:
    """Any S3-compatible endpoint through boto3; credentials from the usual AWS variables."""

    def __init__(self, endpoint_url: str | None, region: str = "us-east-1") -> None:
        import boto3
        from botocore.config import Config

        self.endpoint_url = endpoint_url
        self.description = f"S3 at {endpoint_url or 'AWS default endpoint'}"
        self.client = boto3.client(
            "s3", endpoint_url=endpoint_url, region_name=region,
            config=Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=5,
                          read_timeout=60, s3={"addressing_style": "path"}))

    def _unavailable(self, exc: Exception) -> ObjectStoreUnavailable:
        return ObjectStoreUnavailable(
            f"无法使用对象存储 {self.description}",
            f"object store {self.description} is unreachable or refused the request: {exc}. "
            "Check ARCHIVE_S3_ENDPOINT_URL and AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
            "or unset ARCHIVE_S3_ENDPOINT_URL to use the local directory store")

    def ensure_bucket(self, bucket: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=bucket)
            return
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
                raise self._unavailable(exc) from exc
        except BotoCoreError as exc:
            raise self._unavailable(exc) from exc
        try:
            self.client.create_bucket(Bucket=bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                raise self._unavailable(exc) from exc

    def put(self, bucket: str, key: str, data: bytes, sha256: str,
            content_type: str = "application/octet-stream") -> None:
        self.client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type,
                               Metadata={"sha256": sha256})

    def get(self, bucket: str, key: str) -> bytes:
        return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()

    def iter_range(self, bucket: str, key: str, start: int, end: int, chunk: int = 1 << 20) -> Iterator[bytes]:
        """Bytes start..end (inclusive), streamed from one GET a chunk at a time."""
        body = self.client.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{end}")["Body"]
        try:
            yield from body.iter_chunks(chunk)
        finally:
            body.close()

    def put_file(self, bucket: str, key: str, path: Path, sha256: str,
                 content_type: str = "application/octet-stream") -> None:
        from boto3.s3.transfer import TransferConfig

        if path.stat().st_size <= CHUNK:  # one PUT: upload_file's transfer manager costs more than the object
            with open(path, "rb") as body:
                self.client.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type,
                                       Metadata={"sha256": sha256})
            return
        self.client.upload_file(str(path), bucket, key, Config=TransferConfig(multipart_threshold=CHUNK,
                                                                              multipart_chunksize=CHUNK),
                                ExtraArgs={"ContentType": content_type, "Metadata": {"sha256": sha256}})

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        from botocore.exceptions import ClientError

        try:
            r = self.client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return ObjectInfo(r["ContentLength"], r.get("Metadata", {}).get("sha256"))

    def count(self, bucket: str, prefix: str = "") -> int:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sum(page.get("KeyCount", 0) for page in pages)


class LocalObjectStore:
    """A folder laid out as bucket/key, digests in a sidecar; for the embedded demo.

    The demo keeps its PostgreSQL state between runs, so its objects must persist too; an
    in-memory S3 emulator would lose them on restart.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.description = f"local directory {self.root}"

    def _path(self, bucket: str, key: str) -> Path:
        path = (self.root / bucket / key).resolve()
        if not path.is_relative_to((self.root / bucket).resolve()) or key.endswith(".meta.json"):
            raise ValueError(f"invalid object key {key!r}")
        return path

    def ensure_bucket(self, bucket: str) -> None:
        try:
            (self.root / bucket).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ObjectStoreUnavailable(f"无法创建目录 {self.root / bucket}",
                                         f"cannot create {self.root / bucket}: {exc}") from exc

    def put(self, bucket: str, key: str, data: bytes, sha256: str,
            content_type: str = "application/octet-stream") -> None:
        path = self._path(bucket, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = json.dumps({"sha256": sha256, "content_type": content_type})
        for target, payload in ((path, data), (Path(f"{path}.meta.json"), meta.encode())):
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as fh:  # write then rename: never a half-written object
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)

    def get(self, bucket: str, key: str) -> bytes:
        return self._path(bucket, key).read_bytes()

    def iter_range(self, bucket: str, key: str, start: int, end: int, chunk: int = 1 << 20) -> Iterator[bytes]:
        with open(self._path(bucket, key), "rb") as fh:
            fh.seek(start)
            left = end - start + 1
            while left > 0 and (data := fh.read(min(chunk, left))):
                left -= len(data)
                yield data

    def put_file(self, bucket: str, key: str, path: Path, sha256: str,
                 content_type: str = "application/octet-stream") -> None:
        target = self._path(bucket, key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as out, open(path, "rb") as src:
            while chunk := src.read(CHUNK):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        meta = Path(f"{target}.meta.json")
        meta.write_text(json.dumps({"sha256": sha256, "content_type": content_type}))
        os.replace(tmp, target)

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        path = self._path(bucket, key)
        if not path.exists():
            return None
        meta_path = Path(f"{path}.meta.json")
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        return ObjectInfo(path.stat().st_size, meta.get("sha256"))

    def count(self, bucket: str, prefix: str = "") -> int:
        base = self.root / bucket
        if not base.exists():
            return 0
        return sum(1 for p in base.rglob("*") if p.is_file() and not p.name.endswith(".meta.json")
                   and not p.name.startswith(".tmp-") and str(p.relative_to(base)).startswith(prefix))


def open_store(endpoint_url: str | None, object_root: str | None, region: str = "us-east-1") -> ObjectStore:
    if endpoint_url:
        return S3ObjectStore(endpoint_url, region)
    if object_root:
        return LocalObjectStore(object_root)
    raise ObjectStoreUnavailable("未配置对象存储", "no object store configured: set ARCHIVE_S3_ENDPOINT_URL (S3) "
                                 "or ARCHIVE_OBJECT_ROOT (local directory)")
