"""The inbox folder staff drop scan batches into: which batches are complete and stable.

A batch is a sub-folder. It is complete when it holds its manifest, and stable when nothing
in it changed between two looks and its newest file is older than the settle time: a copy
still running is never picked up half-done. What was handed in is remembered by signature,
so the same folder is handed in once, and again only if its content changes. Finding ready
folders (`ready_folders`) only lists them; the copy into staging (`hand_in`) is the work of a
run of its own.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from errors import BadInput, NotReady
from stages.services import Services
from stages.submit import MANIFEST_NAMES, submit_folder

MAX_HAND_IN_ATTEMPTS = 3  # hand-in runs of one folder's content before it waits for a change


@dataclass
class InboxState:
    """What the sensor's cursor carries between ticks."""

    seen: dict[str, str] = field(default_factory=dict)     # folder -> signature at the last look
    handed_in: dict[str, str] = field(default_factory=dict)  # folder -> signature its hand-in was asked for with
    requests: dict[str, str] = field(default_factory=dict)   # folder -> run key of that hand-in, until it succeeds
    attempts: dict[str, int] = field(default_factory=dict)   # folder -> hand-in runs of it that failed

    def to_dict(self) -> dict:
        return {"seen": self.seen, "handed_in": self.handed_in, "requests": self.requests, "attempts": self.attempts}

    @classmethod
    def from_dict(cls, data: dict | None) -> InboxState:
        data = data or {}
        return cls(dict(data.get("seen", {})), dict(data.get("handed_in", {})), dict(data.get("requests", {})),
                   dict(data.get("attempts", {})))

    def after_runs(self, succeeded: list[str], failed: list[str]) -> list[str]:
        """Takes in how the folders' hand-in runs ended: a success is done with; a failure makes
        the folder ready again once it has settled, up to MAX_HAND_IN_ATTEMPTS runs of it. The
        folders given up on (their runs in the Dagster UI say why; a change starts again)."""
        given_up = []
        for name in succeeded:
            self.requests.pop(name, None)
            self.attempts.pop(name, None)
        for name in failed:
            self.requests.pop(name, None)
            self.attempts[name] = self.attempts.get(name, 0) + 1
            if self.attempts[name] < MAX_HAND_IN_ATTEMPTS:
                self.handed_in.pop(name, None)
            else:
                given_up.append(name)
        return given_up


def signature(folder: Path) -> tuple[str, float]:
    """(names, sizes and mtimes of every file; newest mtime): changes whenever a file does.
    Hidden and left-out files count too (an rsync writes `.page.jpg.XXXXXX` before renaming
    it), though only what hand-in keeps is handed in."""
    parts, newest = [], 0.0
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            try:
                st = path.lstat()
            except OSError:   # gone between the listing and the look: changing
                continue
            parts.append(f"{path.relative_to(folder).as_posix()}:{st.st_size}:{st.st_mtime_ns}")
            newest = max(newest, st.st_mtime)
    return "|".join(parts), newest


class ReadyFolder(NamedTuple):
    """A complete, stable batch folder to hand in, named by the digest of its signature."""

    name: str
    digest: str
    attempt: int = 0  # hand-in runs of this folder that failed before


def _digest(sig: str) -> str:
    return hashlib.sha256(sig.encode()).hexdigest()[:16]


def ready_folders(inbox: Path, state: InboxState, settle_seconds: float = 10.0,
                  now: float | None = None) -> tuple[list[ReadyFolder], InboxState]:
    """The complete, stable folders not handed in with this content yet, and the new state (which
    counts them as handed in: their hand-in is asked for once). Reads names, sizes and times, no
    file's content, so a look at the inbox stays quick however large its batches are."""
    now = time.time() if now is None else now
    def kept(d: dict) -> dict:
        return {k: v for k, v in d.items() if (inbox / k).is_dir()}

    new_state = InboxState(handed_in=kept(state.handed_in), requests=kept(state.requests),
                           attempts=kept(state.attempts))
    ready = []
    if not inbox.is_dir():
        return [], new_state
    for entry in sorted(os.scandir(inbox), key=lambda e: e.name):
        if not entry.is_dir(follow_symlinks=False) or entry.name.startswith("."):
            continue  # a link would hand in whatever it points at, anywhere on this machine
        folder = Path(entry.path)
        sig, newest = signature(folder)
        if not sig or new_state.handed_in.get(entry.name) == sig:
            continue
        if not any((folder / name).is_file() for name in MANIFEST_NAMES):
            continue  # incomplete: no manifest yet
        if state.seen.get(entry.name) != sig or now - newest < settle_seconds:
            new_state.seen[entry.name] = sig  # changed since the last look, or too fresh: look again
            continue
        ready.append(ReadyFolder(entry.name, _digest(sig), new_state.attempts.get(entry.name, 0)))
        new_state.handed_in[entry.name] = sig
    return ready, new_state


class FolderChanged(NotReady):
    """The folder changed between the look that found it stable and its hand-in."""

    def __init__(self, name: str) -> None:
        super().__init__(f"收件夹中的批次 {name} 在登记前又有改动：待其稳定后将再次登记",
                         f"inbox folder {name} changed after it was found stable: it is handed in once it "
                         "settles again", item=name)


def hand_in(inbox: Path, ready: ReadyFolder, services: Services) -> str:
    """Hands in a ready folder (copies its files into staging, registers the batch) if it still
    has the content it was found stable with; its batch id."""
    # the name comes from a run's configuration, which anyone who may launch runs can write
    if ready.name in ("", ".", "..") or ready.name.startswith(".") or "/" in ready.name or "\\" in ready.name:
        raise BadInput(f"“{ready.name}”不是收件夹中的批次文件夹名", f"{ready.name!r} is not the name of a batch folder "
                       "in the inbox", item=ready.name)
    folder = inbox / ready.name
    if folder.is_symlink():
        raise BadInput(f"收件夹中的 {ready.name} 是链接，不是文件夹：不予登记",
                       f"{ready.name} in the inbox is a link, not a folder: it is not handed in", item=ready.name)
    if not folder.is_dir() or _digest(signature(folder)[0]) != ready.digest:
        raise FolderChanged(ready.name)
    # a link put in its place since, or a file linked to one elsewhere: refused
    return submit_folder(folder, services, follow_link=False, hard_links=False).batch_id
