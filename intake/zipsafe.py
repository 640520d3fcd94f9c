"""Safe extraction of a batch delivered as a zip: every unsafe member is refused by name.

Refused: paths escaping the batch (`..`, absolute, drive letters), symlinks, encrypted
members, duplicate names, and members whose size or compression ratio says zip bomb; the
whole archive is capped too. What is refused never touches the disk; the rest is extracted.
"""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path, PurePosixPath

from catalog.findings import Finding, error

MAX_MEMBER_BYTES = 2 * 1024**3        # one scan file
MAX_TOTAL_BYTES = 50 * 1024**3        # one batch
MAX_RATIO = 200                       # scans compress ~1-10x; a bomb compresses ~1000x
CHUNK = 1 << 20


def unsafe_name(name: str) -> str | None:
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if ".." in parts:
        return "path leaves the batch folder (..)"
    return None


def safe_extract(archive: Path, target: Path) -> list[Finding]:
    """Extracts the safe members of `archive` into `target`; findings for the rest."""
    findings: list[Finding] = []
    item = archive.name
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        return [error("zip.corrupt", item, f"压缩包损坏，无法打开：{exc}", f"zip archive is corrupt: {exc}")]
    seen: set[str] = set()
    total = 0
    with zf:
        for info in zf.infolist():
            name = info.filename
            where = f"{item}:{name}"

            def refuse(code: str, zh: str, en: str, where: str = where) -> None:
                findings.append(error(f"zip.{code}", where, zh, en))

            if info.is_dir():
                continue
            reason = unsafe_name(name)
            mode = info.external_attr >> 16
            if reason:
                refuse("path", f"路径不安全（{reason}），已拒收", f"unsafe path ({reason}), refused")
            elif stat.S_ISLNK(mode):
                refuse("symlink", "符号链接，已拒收", "symbolic link, refused")
            elif info.flag_bits & 0x1:
                refuse("encrypted", "加密的文件，已拒收", "encrypted member, refused")
            elif name in seen:
                refuse("duplicate", "压缩包中有同名文件，后者已拒收",
                       "duplicate name in the archive, later copy refused")
            elif info.file_size > MAX_MEMBER_BYTES or (
                    info.compress_size and info.file_size / info.compress_size > MAX_RATIO):
                refuse("bomb", f"解压后 {info.file_size} 字节，压缩比异常（疑似压缩炸弹），已拒收",
                       f"expands to {info.file_size} bytes at an implausible ratio (zip bomb), refused")
            elif total + info.file_size > MAX_TOTAL_BYTES:
                refuse("too_large", "批次解压后超过上限，其余文件已拒收", "batch exceeds the size cap, refused")
            else:
                seen.add(name)
                total += info.file_size
                _extract(zf, info, target / PurePosixPath(name.replace("\\", "/")), findings, where)
    return findings


def _extract(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, findings: list[Finding], where: str) -> None:
    """Streams one member out, stopping at its declared size (headers can lie)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    try:
        with zf.open(info) as src, open(dest, "wb") as out:
            while chunk := src.read(CHUNK):
                written += len(chunk)
                if written > info.file_size:
                    raise ValueError("member is larger than its header says")
                out.write(chunk)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        dest.unlink(missing_ok=True)
        findings.append(error("zip.member_corrupt", where, f"文件损坏，无法解压：{exc}", f"member is corrupt: {exc}"))
