"""A folder laid out as bucket/key, for the embedded demo and for a replica on a mounted disk.

Every write goes to a temporary name, is fsynced and renamed, so a crash leaves the old object
or the new one, never half of one. The sha256 lives in a sidecar `<key>.meta.json` that names
the inode of the data file it describes: the sidecar is renamed into place first, the data
second, and a sidecar whose inode is not the data file's (a crash between the two renames) is
ignored, so metadata is never believed for data it was not written with.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from storage.objects import CHUNK, IntegrityError, ObjectInfo, ObjectStoreUnavailable, missing

META = ".meta.json"


def _makedirs_durable(path: Path) -> None:
    """mkdir -p, each new directory fsynced into its parent: a power cut does not take away the
    folder of an object already recorded as stored."""
    missing_dirs = []
    while not path.exists():
        missing_dirs.append(path)
        path = path.parent
    for d in reversed(missing_dirs):
        try:
            d.mkdir()
        except FileExistsError:
            continue
        fd = os.open(d.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class LocalObjectStore:
    """The demo keeps its PostgreSQL state between runs, so its objects must persist too; an
    in-memory S3 emulator would lose them on restart."""

    def __init__(self, root: str | os.PathLike, name: str = "", create_root: bool = True) -> None:
        """`create_root=False` (a replica on a mounted disk): a root that is not there is an
        error, never an empty store to copy the whole archive into on the wrong disk."""
        self.root = Path(root)
        self.create_root = create_root
        self.description = f"local directory {self.root}" + (f" ({name})" if name else "")

    def _path(self, bucket: str, key: str) -> Path:
        path = (self.root / bucket / key).resolve()
        if not path.is_relative_to((self.root / bucket).resolve()) or key.endswith(META) \
                or Path(key).name.startswith(".tmp-"):
            raise ValueError(f"invalid object key {key!r}")
        return path

    def ensure_bucket(self, bucket: str, protect: bool = False) -> None:
        if not self.create_root and not self.root.is_dir():
            raise ObjectStoreUnavailable(f"目录 {self.root} 不存在（磁盘未挂载？）",
                                         f"{self.root} does not exist (is the disk mounted?)", item=str(self.root))
        try:
            _makedirs_durable(self.root / bucket)
        except OSError as exc:
            raise ObjectStoreUnavailable(f"无法创建目录 {self.root / bucket}",
                                         f"cannot create {self.root / bucket}: {exc}") from exc

    def put(self, bucket: str, key: str, data: bytes, sha256: str,
            content_type: str = "application/octet-stream") -> bool:
        import io

        return self.put_stream(bucket, key, io.BytesIO(data), sha256, len(data), content_type)

    def put_file(self, bucket: str, key: str, path: Path, sha256: str,
                 content_type: str = "application/octet-stream") -> bool:
        with open(path, "rb") as fh:
            return self.put_stream(bucket, key, fh, sha256, Path(path).stat().st_size, content_type)

    def put_stream(self, bucket: str, key: str, source: BinaryIO, sha256: str, size: int,
                   content_type: str = "application/octet-stream") -> bool:
        """Always False: what a disk wrote is confirmed by reading it back, which costs little here."""
        target = self._path(bucket, key)
        try:
            _makedirs_durable(target.parent)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        except OSError as exc:
            raise ObjectStoreUnavailable(f"无法写入 {target.parent}", f"cannot write in {target.parent}: {exc}",
                                         item=key) from exc
        meta_tmp = None
        try:
            h, got = hashlib.sha256(), 0
            with os.fdopen(fd, "wb") as out:
                while got < size and (chunk := source.read(min(CHUNK, size - got))):
                    h.update(chunk)
                    out.write(chunk)
                    got += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            if got != size or h.hexdigest() != sha256:
                raise IntegrityError(f"写入 {bucket}/{key} 的内容与其摘要不符",
                                     f"{bucket}/{key}: {got} bytes with sha256 {h.hexdigest()} were given, not "
                                     f"{size} with {sha256}", item=key)
            meta = {"sha256": sha256, "content_type": content_type, "bytes": size, "inode": os.stat(tmp).st_ino}
            mfd, meta_tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
            with os.fdopen(mfd, "w") as out:
                out.write(json.dumps(meta))
                out.flush()
                os.fsync(out.fileno())
            os.replace(meta_tmp, f"{target}{META}")
            meta_tmp = None
            os.replace(tmp, target)
            tmp = None
            dfd = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)   # the renames themselves survive a power cut
            finally:
                os.close(dfd)
        except OSError as exc:
            raise ObjectStoreUnavailable(f"无法写入 {bucket}/{key}", f"cannot write {bucket}/{key} in {self.root}: "
                                         f"{exc}", item=key) from exc
        finally:
            for leftover in (tmp, meta_tmp):
                if leftover:
                    Path(leftover).unlink(missing_ok=True)
        return False

    def delete(self, bucket: str, key: str) -> None:
        path = self._path(bucket, key)
        path.unlink(missing_ok=True)
        Path(f"{path}{META}").unlink(missing_ok=True)

    def get(self, bucket: str, key: str) -> bytes:
        try:
            return self._path(bucket, key).read_bytes()
        except FileNotFoundError:
            raise missing(self.description, bucket, key) from None

    def iter_range(self, bucket: str, key: str, start: int, end: int, chunk: int = 1 << 20) -> Iterator[bytes]:
        try:
            fh = open(self._path(bucket, key), "rb")
        except FileNotFoundError:
            raise missing(self.description, bucket, key) from None
        except OSError as exc:
            raise self._unreadable(bucket, key, exc) from exc
        with fh:
            fh.seek(start)
            left = end - start + 1
            while left > 0:
                try:
                    data = fh.read(min(chunk, left))
                except OSError as exc:   # EIO on a failing disk: this copy unreadable, said so
                    raise self._unreadable(bucket, key, exc) from exc
                if not data:
                    break
                left -= len(data)
                yield data

    def _unreadable(self, bucket: str, key: str, exc: OSError) -> ObjectStoreUnavailable:
        return ObjectStoreUnavailable(f"无法读取 {bucket}/{key}（{self.description}）",
                                      f"cannot read {bucket}/{key} in {self.description}: {exc.strerror or exc}",
                                      item=key)

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        path = self._path(bucket, key)
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._unreadable(bucket, key, exc) from exc
        try:
            meta = json.loads(Path(f"{path}{META}").read_text())
        except (OSError, ValueError):
            meta = {}
        if meta.get("inode") not in (None, st.st_ino):
            meta = {}   # written for other data (a crash between the renames): not believed
        return ObjectInfo(st.st_size, meta.get("sha256"))

    def keys(self, bucket: str, prefix: str = "") -> Iterator[tuple[str, int]]:
        base = self.root / bucket
        # from the prefix's folder down, not the whole bucket: a file's inventories are a folder
        # among a million
        start = base / prefix.rpartition("/")[0] if "/" in prefix else base
        if not base.exists() or not start.resolve().is_relative_to(base.resolve()) or not start.is_dir():
            return
        found = []
        for p in start.rglob("*"):
            if p.is_file() and not p.name.endswith(META) and not p.name.startswith(".tmp-"):
                key = str(p.relative_to(base))
                if key.startswith(prefix):
                    found.append((key, p.stat().st_size))
        yield from sorted(found)

    def count(self, bucket: str, prefix: str = "") -> int:
        return sum(1 for _ in self.keys(bucket, prefix))
