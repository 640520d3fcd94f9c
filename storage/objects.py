"""Object storage behind one interface: S3 (storage/s3store.py: production, and moto in tests)
or a local folder (storage/localstore.py).

Every write carries the content's sha256 (as object metadata) and streams: no object is held
whole in memory. The `*_verified` writes read the object back a chunk at a time and compare
digests before anyone records it as stored.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from errors import IntegrityFailure, SetupError


class ObjectStoreUnavailable(SetupError):
    """The object store cannot be reached or used; the message says which and how to fix it.
    (Not transient: the S3 client has already retried, and a missing disk stays missing.)"""


class IntegrityError(IntegrityFailure):
    """An object read back does not have the digest it was written with."""


class CopyDamaged(IntegrityError):
    """The store this was written to keeps not holding what was written (the target's fault,
    not the source's)."""


class ObjectMissing(IntegrityFailure):
    """An object that should be in a store is not there."""


def missing(store_description: str, bucket: str, key: str) -> ObjectMissing:
    return ObjectMissing(f"对象 {bucket}/{key} 不在 {store_description} 中",
                         f"{bucket}/{key} is not in {store_description}", item=key)


@dataclass(frozen=True)
class ObjectInfo:
    bytes: int
    sha256: str | None
    etag: str = ""      # the endpoint's, where it has one


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    """A file's sha256, read a chunk at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def content_key(sha256: str, prefix: str = "sha256") -> str:
    """Content-addressed key: identical content is stored once whatever its name."""
    return f"{prefix}/{sha256[:2]}/{sha256[2:4]}/{sha256}"


class ObjectStore(Protocol):
    description: str

    def ensure_bucket(self, bucket: str, protect: bool = False) -> None: ...
    # Each write returns True when the store confirmed the digest of what it received, so the
    # caller need not read it back (storage/s3store.py's `verify`); False: read it back.
    def put(self, bucket: str, key: str, data: bytes, sha256: str, content_type: str = ...) -> bool: ...
    def put_stream(self, bucket: str, key: str, source: BinaryIO, sha256: str, size: int,
                   content_type: str = ...) -> bool: ...
    def put_file(self, bucket: str, key: str, path: Path, sha256: str, content_type: str = ...) -> bool: ...
    def get(self, bucket: str, key: str) -> bytes: ...
    def iter_range(self, bucket: str, key: str, start: int, end: int, chunk: int = ...) -> Iterator[bytes]: ...
    def head(self, bucket: str, key: str) -> ObjectInfo | None: ...
    def keys(self, bucket: str, prefix: str = "") -> Iterator[tuple[str, int]]: ...
    def count(self, bucket: str, prefix: str = "") -> int: ...
    def delete(self, bucket: str, key: str) -> None: ...


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


class ChunkReader:
    """A file-like view of an iterator of chunks, so a read from one store streams into a write
    to another."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buf = b""

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buf) < n:
            try:
                self._buf += next(self._chunks)
            except StopIteration:
                break
        if n < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:n], self._buf[n:]
        return out


def verify_stored(store: ObjectStore, bucket: str, key: str, sha256: str, size: int) -> None:
    """Reads the object back a chunk at a time; IntegrityError unless it has `sha256` and `size`."""
    if size == 0:
        info = store.head(bucket, key)
        got, back = (info.bytes, sha256_hex(b"")) if info else (None, None)
    else:  # one byte more than written is asked for, so a longer object shows too
        h, got = hashlib.sha256(), 0
        for chunk in store.iter_range(bucket, key, 0, size, CHUNK):
            h.update(chunk)
            got += len(chunk)
        back = h.hexdigest()
    if got != size or back != sha256:
        raise IntegrityError(f"对象 {bucket}/{key} 读回的摘要与写入时不符",
                             f"{bucket}/{key} ({store.description}): wrote sha256 {sha256} ({size} bytes), read back "
                             f"{back} ({got} bytes)", item=key)


READ_BACK = "read back, sha256 equal"
BY_ENDPOINT = "the endpoint's MD5 of the bytes it received equal to ours; sha256 sent as its checksum"


WRITE_TRIES = 3   # a copy that reads back wrong (bytes damaged on the way) is written again


def _verified_write(store: ObjectStore, write: Callable[[], bool], bucket: str, key: str, sha256: str,
                    size: int) -> str:
    """`write()` (True: the store confirmed the digest of what it received), else the object read
    back and compared, written again if it differs; returns how it was verified. An IntegrityError
    of `write()` itself (the source is not what it should be) is not retried."""
    for attempt in range(WRITE_TRIES):
        if write():
            return BY_ENDPOINT
        try:
            verify_stored(store, bucket, key, sha256, size)
            return READ_BACK
        except IntegrityError as exc:
            if attempt == WRITE_TRIES - 1:
                raise CopyDamaged(f"{store.description} 连续 {WRITE_TRIES} 次存入的 {bucket}/{key} 读回都不符",
                                  f"{store.description} held {bucket}/{key} wrong after {WRITE_TRIES} writes: "
                                  f"{exc.message_en}", item=key) from exc
    raise AssertionError("unreachable")


def copy_verified(source: ObjectStore, source_bucket: str, source_key: str, target: ObjectStore, target_bucket: str,
                  target_key: str, sha256: str, size: int, content_type: str = "application/octet-stream") -> str:
    """One store's object streamed into another (or the same) store under `target_key`, and
    verified; IntegrityError if the source does not have `sha256` (nothing is written then) or
    the copy does not. Returns how it was verified."""
    def write() -> bool:
        chunks = source.iter_range(source_bucket, source_key, 0, size - 1, CHUNK) if size else iter(())
        return target.put_stream(target_bucket, target_key, ChunkReader(chunks), sha256, size, content_type)

    return _verified_write(target, write, target_bucket, target_key, sha256, size)


def put_file_verified(store: ObjectStore, bucket: str, key: str, path: Path, sha256: str,
                      content_type: str = "application/octet-stream") -> str:
    """A file on disk into the store (in parts where it is large), verified; returns how."""
    return _verified_write(store, lambda: store.put_file(bucket, key, Path(path), sha256, content_type), bucket, key,
                           sha256, Path(path).stat().st_size)


def put_bytes_verified(store: ObjectStore, bucket: str, key: str, data: bytes,
                       content_type: str = "application/octet-stream") -> str:
    """Bytes into the store, verified; returns how."""
    digest = sha256_hex(data)
    return _verified_write(store, lambda: store.put(bucket, key, data, digest, content_type), bucket, key, digest,
                           len(data))


def put_verified(store: ObjectStore, bucket: str, key: str, data: bytes,
                 content_type: str = "application/octet-stream") -> str:
    """Bytes into the store, verified; returns their sha256."""
    put_bytes_verified(store, bucket, key, data, content_type)
    return sha256_hex(data)


def put_if_absent(store: ObjectStore, bucket: str, key: str, data: bytes, sha256: str,
                  content_type: str = "application/octet-stream") -> bool:
    """Idempotent write of content-keyed data; True if it was written now."""
    info = store.head(bucket, key)
    if info is not None and info.sha256 == sha256 and info.bytes == len(data):
        return False
    store.put(bucket, key, data, sha256, content_type)
    return True


def put_stream_if_absent(store: ObjectStore, bucket: str, key: str, source: BinaryIO, size: int, sha256: str,
                         content_type: str = "application/octet-stream") -> bool:
    """Idempotent streamed write of content-keyed bytes (`size` of them from `source`, refused
    unless they have `sha256`); True if it was written now."""
    info = store.head(bucket, key)
    if info is not None and info.sha256 == sha256 and info.bytes == size:
        return False
    store.put_stream(bucket, key, source, sha256, size, content_type)
    return True


def open_store(endpoint_url: str | None, object_root: str | None, region: str = "us-east-1",
               **s3: object) -> ObjectStore:
    """`s3`: S3ObjectStore's tuning and credentials (settings/storage.py)."""
    if endpoint_url:
        from storage.s3store import S3ObjectStore

        return S3ObjectStore(endpoint_url, region, **s3)
    if object_root:
        from storage.localstore import LocalObjectStore

        return LocalObjectStore(object_root, name=str(s3.get("name", "")))
    raise ObjectStoreUnavailable("未配置对象存储", "no object store configured: set ARCHIVE_S3_ENDPOINT_URL (S3) "
                                 "or ARCHIVE_OBJECT_ROOT (local directory)")
