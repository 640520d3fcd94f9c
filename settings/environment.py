"""The one place the ARCHIVE_* environment is read. Each reader notes a bad value as one sentence
and returns the default, so a start-up check reports every problem at once (Problems.raise_all)."""

from __future__ import annotations

import os
from pathlib import Path

from errors import SetupError


class Problems:
    """The configuration problems found while reading, one SetupError each."""

    def __init__(self) -> None:
        self.found: list[SetupError] = []

    def add(self, zh: str, en: str, item: str | None = None) -> None:
        self.found.append(SetupError(zh, en, item=item))

    def raise_all(self) -> None:
        """One SetupError naming every problem, a sentence each; nothing when all is well."""
        if len(self.found) == 1:
            raise self.found[0]
        if self.found:
            raise SetupError("配置有误：" + "；".join(p.message_zh for p in self.found),
                             f"{len(self.found)} configuration problems: "
                             + "; ".join(p.message_en for p in self.found))


def text(name: str, default: str = "") -> str:
    return os.environ.get(name, "").strip() or default


def _at_least(problems: Problems, name: str, default, least, parse, what_zh: str, what_en: str):
    raw = text(name)
    if not raw:
        return default
    try:
        value = parse(raw)
    except ValueError:
        value = None
    if value is None or value < least:
        problems.add(f"{name}={raw!r} 必须是不小于 {least:g} 的{what_zh}",
                     f"{name}={raw!r} must be {what_en} of at least {least:g}", item=name)
        return default
    return value


def whole(problems: Problems, name: str, default: int, least: int = 1) -> int:
    return _at_least(problems, name, default, least, int, "整数", "a whole number")


def number(problems: Problems, name: str, default: float, least: float = 0.0) -> float:
    return _at_least(problems, name, default, least, float, "数", "a number")


def choice(problems: Problems, name: str, allowed: tuple[str, ...]) -> str:
    """The variable's value, one of `allowed`; unset: the first."""
    value = text(name, allowed[0])
    if value not in allowed:
        problems.add(f"{name}={value!r} 只能是 {'、'.join(allowed)}",
                     f"{name}={value!r} must be one of {', '.join(allowed)}", item=name)
        return allowed[0]
    return value


def is_set(name: str) -> bool:
    """Whether the variable is there at all (set empty is a choice: none)."""
    return name in os.environ


def flag(name: str) -> bool:
    return text(name).lower() in ("1", "true", "yes")


def secret_file(problems: Problems, path: str) -> str:
    """A secret kept in a file (its first line), or "" when no file is named."""
    if not path:
        return ""
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        problems.add(f"无法读取 {path}：{exc.strerror}", f"cannot read {path}: {exc.strerror}", item=path)
        return ""
