"""A batch uploaded from the staff page: the browser's files laid out as the batch folder, then
handed in like every other channel (`stages.submit.submit_path`).

The page sends each file with its path inside the chosen folder (or one zip). Paths are checked
like zip member names: nothing absolute, nothing that climbs out of the batch.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from errors import BadInput
from intake.zipsafe import unsafe_name
from stages.services import Services
from stages.submit import Submission, submit_path


class BadUpload(BadInput):
    """An upload that cannot be a batch; the message is bilingual and names the item."""


def batch_layout(paths: list[str]) -> tuple[str | None, list[str]]:
    """(folder name the browser sent, paths inside the batch): a picked folder arrives as
    `GZ2026-S007/pages/x.jpg`; its first component is the batch's name, not part of the batch."""
    clean = []
    for p in paths:
        p = p.replace("\\", "/")
        reason = unsafe_name(p) or ("empty name" if not p.strip("/") else None)
        if reason:
            raise BadUpload(f"文件路径不安全：{p}（{reason}）", f"unsafe file path {p!r}: {reason}", item=p)
        clean.append(PurePosixPath(p).as_posix())
    tops = {c.split("/", 1)[0] for c in clean}
    if len(tops) == 1 and all("/" in c for c in clean):
        top = tops.pop()
        return top, [c.split("/", 1)[1] for c in clean]
    return None, clean


def hand_in_upload(files: Iterable[tuple[str, BinaryIO]], services: Services, name: str | None = None,
                   agency: str | None = None) -> Submission:
    """Writes the uploaded (path, stream) pairs to a scratch folder and hands the batch in.

    One `.zip` alone is handed in as the zip (kept verbatim, members checked); anything else is
    the batch folder itself."""
    files = list(files)
    if not files:
        raise BadUpload("没有选择任何文件", "no files were uploaded")
    top, rels = batch_layout([p for p, _ in files])
    batch_name = (name or top or "upload").replace("/", "-").replace("\\", "-").strip(" .") or "upload"
    with tempfile.TemporaryDirectory(prefix="upload-") as tmp:
        if len(files) == 1 and rels[0].lower().endswith(".zip"):
            target = Path(tmp) / f"{batch_name if name else PurePosixPath(rels[0]).stem}.zip"
            with open(target, "wb") as out:
                shutil.copyfileobj(files[0][1], out, 1024 * 1024)
            if not zipfile.is_zipfile(target):
                raise BadUpload(f"压缩包损坏，无法打开：{rels[0]}",
                                f"the zip archive is corrupt or not a zip: {rels[0]}", item=rels[0])
            return submit_path(target, services, name=name, agency=agency)
        folder = Path(tmp) / batch_name
        for rel, (_, stream) in zip(rels, files, strict=True):
            dest = folder / rel
            if dest.exists():
                raise BadUpload(f"同一文件上传了两次：{rel}", f"the same file was uploaded twice: {rel}", item=rel)
            dest.parent.mkdir(parents=True, exist_ok=True)
            with open(dest, "wb") as out:
                shutil.copyfileobj(stream, out, 1024 * 1024)
        return submit_path(folder, services, agency=agency)
