"""Hand-in of a scan batch folder: every file kept verbatim in staging, keyed by its sha256.

This is what every upload channel calls (CLI, inbox sensor). It registers the batch and its
files; intake then validates what was handed in.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from catalog.findings import Finding, warning
from catalog.manifest import MANIFEST_NAMES
from errors import BadInput
from intake.folderread import BatchFolder, FileSwapped
from intake.junk import is_desktop_junk
from intake.zipsafe import safe_extract
from stages.services import Services
from storage import events
from storage.events import Event
from storage.objects import IntegrityError, content_key, put_stream_if_absent


@dataclass(frozen=True)
class Submission:
    batch_id: str
    files: int
    new: bool  # False when the same content was handed in before


def scan_folder(folder: Path) -> list[tuple[str, Path]]:
    """Relative POSIX paths of the regular files of a batch folder, hidden files excluded but for
    those desktop tools add (.DS_Store), which are handed in to be noted and ignored."""
    with BatchFolder(folder) as handle:  # the listing hand-in itself reads (_submit)
        return [(rel, folder / rel) for rel in handle.files() if _kept(rel)]


def _kept(rel: str) -> bool:
    return not any(p.startswith(".") for p in rel.split("/")) or is_desktop_junk(rel)


def _ignored(rel: str) -> str:
    return json.dumps([warning("batch.desktop_file", rel, "系统或压缩工具附带的文件，已忽略",
                               "a file that desktop tools add; ignored").to_dict()], ensure_ascii=False)


def batch_id_for(name: str, digests: list[tuple[str, str]], agency: str) -> tuple[str, str]:
    """(batch id, content digest): the same files and names from the same agency give the same
    id; another agency handing in the same files has a batch of its own."""
    h = hashlib.sha256(f"agency\0{agency}\n".encode())
    for rel, digest in sorted(digests):
        h.update(f"{rel}\0{digest}\n".encode())
    content = h.hexdigest()
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "batch"
    return f"{slug[:40]}-{content[:12]}", content


def submit_path(path: Path, services: Services, progress: Callable[[str, int], None] | None = None,
                name: str | None = None, agency: str | None = None) -> Submission:
    """Hands in a batch folder or a zip of one (unsafe members refused by name, the rest goes on).
    The batch is named `name`, else the zip's batch folder, else the folder or zip, and held by
    `agency` (the uploader's), else this installation's."""
    path = Path(path)
    if path.is_dir():
        return submit_folder(path, services, name=name, progress=progress, agency=agency)
    if path.is_file() and zipfile.is_zipfile(path):
        with tempfile.TemporaryDirectory(prefix="batch-zip-") as tmp:
            extraction = safe_extract(path, Path(tmp))
            return submit_folder(Path(tmp), services, name=name or extraction.top_folder or path.stem,
                                 container=(path, extraction.findings), progress=progress, agency=agency)
    if not path.exists():
        raise BadInput(f"{path} 不存在", f"{path} does not exist", item=str(path))
    raise BadInput(f"{path} 既不是批次文件夹也不是 zip 压缩包", f"{path} is neither a batch folder nor a zip archive",
                   item=str(path))


def _container_path(name: str, members: set[str]) -> str:
    """The zip's own path in its batch: its file name, unless one of its members has that path
    already (a zip may hold anything), then the name with the first free `~N`."""
    path, n = name, 1
    while path in members:
        path, n = f"{name}~{n}", n + 1
    return path


def submit_folder(folder: Path, services: Services, name: str | None = None,
                  container: tuple[Path, list[Finding]] | None = None,
                  progress: Callable[[str, int], None] | None = None, agency: str | None = None,
                  follow_link: bool = True, hard_links: bool = True) -> Submission:
    """Hands in a batch folder; `container` is the zip it came in, kept verbatim with its findings.

    Resumable: objects are content-keyed and written only if absent, so after an interruption
    the same call uploads only what is missing. `progress(path, bytes)` is told of each file.
    Files are read through a handle on the folder, never through a link (intake/folderread.py);
    `follow_link`: whether the folder itself may be one; `hard_links`: whether its files may have
    other names (BatchFolder)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BadInput(f"批次文件夹 {folder} 不存在", f"batch folder {folder} does not exist", item=str(folder))
    with BatchFolder(folder, follow_link, hard_links) as handle:
        return _submit(handle, services, name, container, progress, agency)


def _submit(handle: BatchFolder, services: Services, name: str | None, container: tuple[Path, list[Finding]] | None,
            progress: Callable[[str, int], None] | None, agency: str | None) -> Submission:
    folder = handle.folder
    files = [rel for rel in handle.files() if _kept(rel)]  # listed through the handle its files are read from
    container_rel = _container_path(container[0].name, set(files)) if container else None
    if container_rel:
        files.append(container_rel)

    @contextmanager
    def opened(rel: str) -> Iterator[tuple[BinaryIO, int]]:
        if rel == container_rel:  # the zip itself, outside the folder it was unpacked into
            with open(container[0], "rb") as fh:
                yield fh, os.fstat(fh.fileno()).st_size
        else:
            with handle.open(rel) as file:
                yield file

    if not files:
        raise BadInput(f"批次文件夹 {folder} 中没有文件", f"batch folder {folder} holds no files", item=str(folder))
    digests = []
    for rel in files:
        with opened(rel) as (fh, _):
            digests.append((rel, hashlib.file_digest(fh, "sha256").hexdigest()))
    agency = agency or services.agency
    batch_id, content = batch_id_for(name or folder.name, digests, agency)
    with services.db.transaction() as cur:
        cur.execute("SELECT batch_id FROM batches WHERE content_sha256 = %s", (content,))
        row = cur.fetchone()
        if row:  # handed in before, perhaps under another folder name: that batch it is
            return Submission(row["batch_id"], len(files), new=False)
    # Objects first, then the rows that point at them: a crash in between leaves only
    # unreferenced content-keyed objects, which the next hand-in reuses.
    sizes = {}
    for rel, digest in digests:
        with opened(rel) as (fh, size):  # streamed, in parts where large: a zip of gigabytes too
            try:
                put_stream_if_absent(services.store, services.staging_bucket, content_key(digest, "originals"), fh,
                                     size, digest)
            except IntegrityError as exc:  # what was read now is not what was hashed a moment ago
                raise FileSwapped(rel, "内容已改变 / its content changed") from exc
        sizes[rel] = size
        if progress:
            progress(rel, size)
    with services.db.transaction() as cur:
        cur.execute("INSERT INTO batches (batch_id, name, content_sha256, holding_agency) VALUES (%s, %s, %s, %s) "
                    "ON CONFLICT DO NOTHING", (batch_id, name or folder.name, content, agency))
        for rel, digest in digests:
            role = "manifest" if rel.lower() in MANIFEST_NAMES else "page"
            found = None
            if is_desktop_junk(rel):
                role, found = "ignored", _ignored(rel)
            if rel == container_rel:
                role = "container"
                found = json.dumps([f.to_dict() for f in container[1]], ensure_ascii=False)
            cur.execute("INSERT INTO batch_files (batch_id, path, sha256, bytes, staging_key, role, findings) "
                        "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                        (batch_id, rel, digest, sizes[rel], content_key(digest, "originals"), role, found))
        events.record(cur, [Event("captured", batch_id=batch_id, object_sha256=digest,
                                  detail={"path": rel, "bytes": sizes[rel], "digest": "sha256"})
                            for rel, digest in digests])
    return Submission(batch_id, len(files), new=True)
