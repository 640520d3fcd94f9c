"""Reading the files of a handed-in folder without following links.

The listing and the reads are apart in time. Someone who may write to the inbox could swap a
listed file, or a folder on its path, for a link between the two, and a read by path would hand
in whatever the link points at, anywhere on this machine. So each file is opened one path
component at a time from a handle on the batch folder, none of them a link (O_NOFOLLOW), and
must be a regular file when open. A folder from the inbox may hold no file with another hard
link either: a link made to a file elsewhere (this service's configuration, say) is that file,
and only the kernel's `fs.protected_hardlinks` would keep others from making one.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from errors import BadInput

_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


class FileSwapped(BadInput):
    """A listed file became a link, a folder or a special file, or went away, before it was read."""

    def __init__(self, rel: str, why: str) -> None:
        super().__init__(f"{rel} 在登记过程中被改动（{why}），未予登记：待批次文件夹稳定后重新提交",
                         f"{rel} changed while it was handed in ({why}); nothing of it was handed in: hand the "
                         "folder in again once it is complete", item=rel)


class FileHardLinked(BadInput):
    """A file of an inbox folder that also has a name elsewhere."""

    def __init__(self, rel: str, links: int) -> None:
        super().__init__(f"{rel} 是硬链接（同一文件在本机共有 {links} 个名字），收件夹不接收这样的文件，"
                         "整个文件夹未予登记：请将其复制为普通文件后重新提交",
                         f"{rel} is a hard link (the same file has {links} names on this machine): the inbox does "
                         "not take such files, and nothing of the folder was handed in; copy it as a plain file "
                         "and hand the folder in again", item=rel)


class BatchFolder:
    """A handle on a batch folder, from which its files are opened. `follow_link`: whether the
    folder itself may be a link (a path typed on the command line may; an inbox entry may not);
    `hard_links`: whether its files may have other names (not in the inbox, which others write)."""

    def __init__(self, folder: Path, follow_link: bool = True, hard_links: bool = True) -> None:
        self.folder, self.hard_links = Path(folder), hard_links
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | (0 if follow_link else os.O_NOFOLLOW)
        try:
            self.fd = os.open(self.folder, flags)
        except OSError as exc:
            raise _refusal(self.folder.name, exc) from exc

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> BatchFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def open(self, rel: str) -> Iterator[tuple[BinaryIO, int]]:
        """(the file at the relative POSIX path `rel`, its size); FileSwapped if a component is a
        link or the file is no longer a regular one."""
        parts = rel.split("/")
        if any(p in ("", ".", "..") for p in parts):
            raise FileSwapped(rel, "not a path inside the folder")
        fd, opened = self.fd, []
        try:
            for part in parts[:-1]:
                fd = os.open(part, _FLAGS | os.O_DIRECTORY, dir_fd=fd)
                opened.append(fd)
            # O_NONBLOCK: a FIFO put in a file's place must not hang the hand-in
            file_fd = os.open(parts[-1], _FLAGS | os.O_NONBLOCK, dir_fd=fd)
        except OSError as exc:
            raise _refusal(rel, exc) from exc
        finally:
            for d in opened:
                os.close(d)
        with os.fdopen(file_fd, "rb") as fh:
            info = os.fstat(fh.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise FileSwapped(rel, "不是普通文件 / not a regular file")
            if not self.hard_links and info.st_nlink > 1:
                raise FileHardLinked(rel, info.st_nlink)
            yield fh, info.st_size

    def files(self) -> list[str]:
        """Relative POSIX paths of the folder's regular files, sorted, listed through the handle:
        links (to files or folders) are not files of the folder and are left out."""
        found = []
        for root, _dirs, names, root_fd in os.fwalk(".", dir_fd=self.fd, follow_symlinks=False):
            for name in names:
                try:
                    if stat.S_ISREG(os.stat(name, dir_fd=root_fd, follow_symlinks=False).st_mode):
                        found.append(os.path.normpath(os.path.join(root, name)))
                except FileNotFoundError:  # gone since the listing: the reads will say so
                    continue
        return sorted(found)


class FileUnreadable(BadInput):
    """A file of the folder the archive's service may not read (its permissions), or cannot."""

    def __init__(self, rel: str, exc: OSError) -> None:
        super().__init__(f"{rel} 无法读取（{exc.strerror}），未予登记：请检查其权限后重新提交",
                         f"{rel} cannot be read ({exc.strerror}); nothing was handed in: check its permissions and "
                         "hand the folder in again", item=rel)


def _refusal(rel: str, exc: OSError) -> BadInput:
    if exc.errno == errno.ELOOP:
        return FileSwapped(rel, "成了链接 / it is a link now")
    if exc.errno == errno.ENOTDIR:
        return FileSwapped(rel, "路径中的文件夹成了链接或文件 / a folder on its path is a link or a file now")
    if exc.errno == errno.ENOENT:
        return FileSwapped(rel, "已不存在 / it is gone")
    return FileUnreadable(rel, exc)
