"""Files that desktop tools add to a folder or a zip: never part of a batch, left out with a note."""

from __future__ import annotations

from pathlib import PurePosixPath

# Finder's folder settings, Windows' thumbnail cache and folder settings (any case)
JUNK_NAMES = frozenset({".ds_store", "thumbs.db", "ehthumbs.db", "desktop.ini"})
JUNK_FOLDERS = frozenset({"__macosx"})  # macOS "Compress": resource forks of every file


def is_desktop_junk(path: str) -> bool:
    parts = PurePosixPath(path.replace("\\", "/")).parts
    if not parts:
        return False
    name = parts[-1]
    return (name.lower() in JUNK_NAMES or name.startswith("._")  # AppleDouble beside a file
            or any(p.lower() in JUNK_FOLDERS for p in parts[:-1]))
