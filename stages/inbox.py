"""The inbox folder staff drop scan batches into: which batches are complete and stable.

A batch is a sub-folder. It is complete when it holds its manifest, and stable when nothing
in it changed between two looks and its newest file is older than the settle time: a copy
still running is never picked up half-done. What was handed in is remembered by signature,
so the same folder is handed in once, and again only if its content changes.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from stages.services import Services
from stages.submit import MANIFEST_NAMES, submit_folder


@dataclass
class InboxState:
    """What the sensor's cursor carries between ticks."""

    seen: dict[str, str] = field(default_factory=dict)     # folder -> signature at the last look
    handed_in: dict[str, str] = field(default_factory=dict)  # folder -> signature it was handed in with

    def to_dict(self) -> dict:
        return {"seen": self.seen, "handed_in": self.handed_in}

    @classmethod
    def from_dict(cls, data: dict | None) -> InboxState:
        data = data or {}
        return cls(dict(data.get("seen", {})), dict(data.get("handed_in", {})))


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


def poll(inbox: Path, state: InboxState, services: Services, settle_seconds: float = 10.0,
         now: float | None = None) -> tuple[list[str], InboxState]:
    """Hands in every complete, stable, new batch folder; returns their batch ids and the new state."""
    now = time.time() if now is None else now
    new_state = InboxState(handed_in={k: v for k, v in state.handed_in.items() if (inbox / k).is_dir()})
    batch_ids = []
    if not inbox.is_dir():
        return [], new_state
    for entry in sorted(os.scandir(inbox), key=lambda e: e.name):
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        folder = Path(entry.path)
        sig, newest = signature(folder)
        if not sig or new_state.handed_in.get(entry.name) == sig:
            continue
        if not any((folder / name).is_file() for name in MANIFEST_NAMES):
            continue  # incomplete: no manifest yet
        if state.seen.get(entry.name) != sig or now - newest < settle_seconds:
            new_state.seen[entry.name] = sig  # changed since the last look, or too fresh: look again
            continue
        batch_ids.append(submit_folder(folder, services).batch_id)
        new_state.handed_in[entry.name] = sig
    return batch_ids, new_state
