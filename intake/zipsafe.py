"""Safe extraction of a batch delivered as a zip: every unsafe member is refused by name.

Refused: paths escaping the batch (`..`, absolute, drive letters), symlinks, encrypted
members, duplicate names, and members whose size or compression ratio says zip bomb; the
whole archive is capped too. What is refused never touches the disk; the rest is extracted.

Zips as staff make them are taken as they come: member names in the code page of the
machine that made them (Chinese Windows writes GBK without the UTF-8 flag), the batch folder
itself as the one top folder ("Send to > Compressed folder", `zip -r B.zip B`), and the files
desktop tools add (intake/junk.py), which are left out with a note.
"""

from __future__ import annotations

import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from catalog.findings import Finding, error, warning
from catalog.manifest import MANIFEST_NAMES
from intake.junk import is_desktop_junk

MAX_MEMBER_BYTES = 2 * 1024**3        # one scan file
MAX_TOTAL_BYTES = 50 * 1024**3        # one batch
MAX_RATIO = 200                       # scans compress ~1-10x; a bomb compresses ~1000x
CHUNK = 1 << 20
UTF8_FLAG = 0x800
UNICODE_PATH_FIELD = 0x7075           # Info-ZIP's UTF-8 name beside a legacy-encoded one (WinRAR, 7-Zip)


@dataclass
class Extraction:
    findings: list[Finding] = field(default_factory=list)
    top_folder: str | None = None     # the one folder every member was under, now the batch root


def unsafe_name(name: str) -> str | None:
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if ".." in parts:
        return "path leaves the batch folder (..)"
    return None


def normalised(name: str) -> str:
    """The member's path inside the batch as it will be extracted: `/` separated, without the
    empty and `.` parts that would let two names land on one file or one start at the root."""
    return "/".join(p for p in name.replace("\\", "/").split("/") if p not in ("", "."))


def _unicode_path(info: zipfile.ZipInfo, raw: bytes) -> str | None:
    """The name in an Info-ZIP Unicode Path extra field, if one is there for this very name."""
    extra = info.extra
    while len(extra) >= 4:
        tag, size = struct.unpack("<HH", extra[:4])
        body, extra = extra[4:4 + size], extra[4 + size:]
        if tag == UNICODE_PATH_FIELD and len(body) > 5 and body[0] == 1:
            (crc,) = struct.unpack("<I", body[1:5])
            if crc == zlib.crc32(raw):  # written for this name, not left over from a rename
                try:
                    return body[5:].decode("utf-8")
                except UnicodeDecodeError:
                    return None
    return None


def member_name(info: zipfile.ZipInfo) -> str:
    """The member's name as the person who zipped it wrote it. Without the UTF-8 flag Python
    reads the bytes as cp437; they are the maker's code page: UTF-8 from Linux and macOS tools
    that omit the flag, GBK (read as its superset GB18030) from Chinese Windows."""
    if info.flag_bits & UTF8_FLAG:
        return info.filename
    raw = info.filename.encode("cp437")
    if unicode := _unicode_path(info, raw):
        return unicode
    for codec in ("utf-8", "gb18030"):
        try:
            return raw.decode(codec)
        except UnicodeDecodeError:
            continue
    return info.filename


def _top_folder(names: list[str]) -> str | None:
    """The batch folder the zip was made of: the one folder all names are under, holding the
    manifest (a zip of the pages alone has no batch folder to strip)."""
    tops = {n.split("/", 1)[0] for n in names}
    if len(tops) != 1 or not all("/" in n for n in names):
        return None
    top = tops.pop()
    return top if any(n.split("/", 1)[1].lower() in MANIFEST_NAMES for n in names) else None


def safe_extract(archive: Path, target: Path) -> Extraction:
    """Extracts the safe members of `archive` into `target`; findings for the rest."""
    out = Extraction()
    item = archive.name
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        out.findings.append(error("zip.corrupt", item, f"压缩包损坏，无法打开：{exc}",
                                  f"zip archive is corrupt: {exc}"))
        return out
    seen: set[str] = set()
    junk: list[str] = []
    chosen: list[tuple[zipfile.ZipInfo, str]] = []
    total = 0
    with zf:
        for info in zf.infolist():
            raw = member_name(info)
            name = normalised(raw)
            where = f"{item}:{raw}"

            def refuse(code: str, zh: str, en: str, where: str = where) -> None:
                out.findings.append(error(f"zip.{code}", where, zh, en))

            if info.is_dir() or not name:
                continue
            reason = unsafe_name(raw)
            mode = info.external_attr >> 16
            if reason:
                refuse("path", f"路径不安全（{reason}），已拒收", f"unsafe path ({reason}), refused")
            elif is_desktop_junk(name):
                junk.append(name)
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
                chosen.append((info, name))
        out.top_folder = _top_folder([name for _, name in chosen])
        root = target.resolve()
        for info, name in chosen:
            inside = name.split("/", 1)[1] if out.top_folder else name
            dest = target.joinpath(*inside.split("/"))
            if not dest.resolve().is_relative_to(root):  # unreachable after the checks above: a last guard
                out.findings.append(error("zip.path", f"{item}:{name}", "路径不安全，已拒收", "unsafe path, refused"))
                continue
            _extract(zf, info, dest, out.findings, f"{item}:{name}")
    if junk:
        shown = "、".join(junk[:5]) + (f" 等 {len(junk)} 个" if len(junk) > 5 else "")
        out.findings.append(warning("zip.desktop_files", item, f"已忽略压缩工具或系统附带的文件：{shown}",
                                    f"left out {len(junk)} files that desktop tools add: "
                                    f"{', '.join(junk[:5])}{' …' if len(junk) > 5 else ''}"))
    return out


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
    except NotImplementedError as exc:  # Deflate64, PPMd, zstd...: methods zipfile cannot read
        dest.unlink(missing_ok=True)
        findings.append(error("zip.method", where, f"压缩方式不受支持（{exc}），请用标准 zip（Deflate）重新压缩",
                              f"compression method not supported ({exc}); zip it again with standard Deflate"))
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, RuntimeError) as exc:
        dest.unlink(missing_ok=True)
        findings.append(error("zip.member_corrupt", where, f"文件损坏，无法解压：{exc}", f"member is corrupt: {exc}"))
