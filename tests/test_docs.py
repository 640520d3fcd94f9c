"""What in the docs can drift from the code: README's length, the engine key and rank window
quoted, the CER quoted, a command beside every headline figure, and relative links."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

from ocr import EngineConfig
from search.query import RANK_WINDOW

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
# Measurement history quotes what was true at its commit (old engine keys, old windows, old CERs).
HISTORY = REPO / "docs" / "benchmarks.md"
CURRENT_DOCS = [README] + [d for d in DOCS if d != HISTORY]
FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def prose(path: Path) -> str:
    """The page without its fenced blocks (sample output, such as the demo's own CER)."""
    return FENCE.sub("", text(path))


def python_sources() -> list[Path]:
    """The shipped packages' Python files (tests and benchmarks measure, they do not claim)."""
    skip = {"tests", "benchmarks", "dagster_home"}
    return sorted(f for f in REPO.rglob("*.py") if not (set(f.relative_to(REPO).parts[:-1]) & skip)
                  and not any(part.startswith(".") for part in f.relative_to(REPO).parts))


def test_readme_is_under_250_lines() -> None:
    lines = len(text(README).splitlines())
    assert lines < 250, f"README.md has {lines} lines; move detail into docs/"


ENGINE_KEY = re.compile(r"[a-z]+(?:\+[a-z]+)*-[\w+]+-psm\d+-det\d+-rec\d+-v\d+")


def test_engine_key_quoted_is_the_codes() -> None:
    quoted = {(p.name, k) for p in CURRENT_DOCS for k in ENGINE_KEY.findall(text(p))}
    assert quoted, "no engine key quoted in README or docs: drop this test or the pattern has drifted"
    wrong = {(name, k) for name, k in quoted if k != EngineConfig().key}
    assert not wrong, f"engine key quoted differs from EngineConfig().key = {EngineConfig().key}: {sorted(wrong)}"


RANK_FIGURES = (re.compile(r"ranked within the first ([\d,]+)"),
                re.compile(r"first ([\d,]+) (?:matches |pages )?(?:were|are) ranked"),
                re.compile(r"rank(?:ing)? window of ([\d,]+)"))


def test_rank_window_quoted_is_the_codes() -> None:
    quoted = [(p.relative_to(REPO).as_posix(), int(m.replace(",", "")))
              for p in CURRENT_DOCS + python_sources() for rx in RANK_FIGURES for m in rx.findall(text(p))]
    assert any(p == "README.md" for p, _ in quoted), "README no longer says how many matches are ranked"
    wrong = [(p, n) for p, n in quoted if n != RANK_WINDOW]
    assert not wrong, f"rank window quoted differs from search.query.RANK_WINDOW = {RANK_WINDOW}: {wrong}"


PERCENT = r"(\d+(?:\.\d+)?(?:\s*[-–]\s*\d+(?:\.\d+)?)?)\s*%"
CER_FIGURES = (re.compile(r"\bCER\s*(?:of\s*)?" + PERCENT), re.compile(PERCENT + r"\s*CER\b"))


def cer_figures(source: str) -> list[str]:
    return [re.sub(r"\s", "", m) for rx in CER_FIGURES for m in rx.findall(source)]


def test_cer_is_the_same_wherever_quoted() -> None:
    headline = cer_figures(prose(README))
    assert headline, "README quotes no CER (the headline table should)"
    places = {"README.md": headline, "pyproject.toml": cer_figures(text(REPO / "pyproject.toml"))}
    places |= {p.relative_to(REPO).as_posix(): cer_figures(prose(p)) for p in CURRENT_DOCS[1:]}
    places |= {p.relative_to(REPO).as_posix(): cer_figures(text(p)) for p in python_sources()}
    figures = {(place, f) for place, found in places.items() for f in found}
    assert len({f for _, f in figures}) == 1, f"the CER is quoted differently: {sorted(figures)}"


def headline_rows() -> list[list[str]]:
    section = text(README).split("\n## Performance", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    header, _, *body = rows
    assert [c.strip() for c in header.strip("|").split("|")][-1] == "command"
    return [[c.strip() for c in re.split(r"(?<!\\)\|", row.strip().strip("|"))] for row in body]


def test_every_headline_figure_has_its_command() -> None:
    rows = headline_rows()
    assert len(rows) >= 5, "the README's headline table lost its rows"
    for what, figure, command in rows:
        spans = re.findall(r"`([^`]+)`", command)
        assert spans, f"headline row {what!r} ({figure}) has no command in backticks"
        scripts = [s for span in spans for s in re.findall(r"\S+\.py\b", span)]
        assert scripts or any(s.startswith("make ") for s in spans), f"row {what!r}: {command} runs nothing"
        missing = [s for s in scripts if not (REPO / s.removeprefix(".venv/bin/python ")).is_file()]
        assert not missing, f"row {what!r}: no such script {missing}"


LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    heading = re.sub(r"[`*]", "", heading.strip().lower())
    kept = "".join(c for c in heading if c in " -_" or unicodedata.category(c)[0] in "LN")
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(h) for h in re.findall(r"^#{1,6}\s+(.+?)\s*$", prose(path), re.M)}


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda p: p.relative_to(REPO).as_posix())
def test_relative_links_point_to_existing_files(page: Path) -> None:
    broken = []
    for target in LINK.findall(prose(page)):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(target)
    assert not broken, f"{page.name}: links to nothing: {broken}"


def test_kubernetes_files_parse_and_set_only_variables_the_settings_read() -> None:
    import yaml

    read = set()
    for source in (REPO / "settings").glob("*.py"):
        read |= set(re.findall(r"ARCHIVE_[A-Z0-9_]+", source.read_text(encoding="utf-8")))
    for name in ("k8s-values.yaml", "k8s-workers.yaml"):
        text = (REPO / "docs" / name).read_text(encoding="utf-8")
        assert yaml.safe_load(text)
        assert set(re.findall(r"name: (ARCHIVE_[A-Z0-9_]+)", text)) <= read, name
