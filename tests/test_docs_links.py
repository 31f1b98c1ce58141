"""Every relative link in README.md, SECURITY.md and docs/*.md resolves: the file exists and,
for ``#anchor``, the target markdown file has a heading with that GitHub-style anchor."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", ROOT / "SECURITY.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "docs").glob("*/README.md"))]
LINK = re.compile(r"(?<!!)\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)


def anchors(path: Path) -> set[str]:
    """GitHub's anchors of a markdown file's headings: lower case, punctuation dropped, spaces
    to hyphens, ``-1``, ``-2``… for repeats."""
    seen: dict[str, int] = {}
    out = set()
    for line in FENCE.sub("", path.read_text(encoding="utf-8")).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", m.group(1))
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def links(path: Path) -> list[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    text = re.sub(r"`[^`\n]*`", "", text)  # code spans are not links
    return LINK.findall(text)


def broken_links(path: Path) -> list[str]:
    broken = []
    for target in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / unquote(file_part)).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and unquote(anchor).lower() not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {os.path.relpath(dest, path.parent)}")
    return broken


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path: Path) -> None:
    assert broken_links(path) == []


def test_the_checker_finds_broken_links(tmp_path: Path) -> None:
    """Not vacuous: a missing file and a missing anchor are reported, code is skipped."""
    (tmp_path / "other.md").write_text("# A title\n\n## Dead letters and replay\n\n## `bin/up` (the main job)\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md#dead-letters-and-replay) [ok](other.md#binup-the-main-job) [self](#here)\n# Here\n"
        "[gone](missing.md) [bad](other.md#nowhere) [web](https://example.com/x) `[code](nowhere.md)`\n"
        "```\n[fenced](nowhere.md)\n```\n"
    )
    assert broken_links(page) == ["missing.md: no such file", "other.md#nowhere: no heading #nowhere in other.md"]


def test_readme_starts_with_the_two_commands_and_maps_every_doc() -> None:
    """The README's first code block is the two commands, and its map links every docs file."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    first_block = readme.split("```")[1]
    assert [line.split("#")[0].strip() for line in first_block.splitlines()[1:] if line.strip()] == ["bin/up", "bin/test"]
    linked = {(ROOT / target.partition("#")[0]).resolve() for target in links(ROOT / "README.md")}
    unmapped = [p.name for p in sorted((ROOT / "docs").glob("*.md")) if p.resolve() not in linked]
    assert unmapped == [], f"add a line for these to the README's documentation map: {unmapped}"


def test_nothing_cites_notes_a_reader_does_not_have() -> None:
    """Docs, code strings and comments cite Meta's and Dagster's public pages, never the team's
    internal notes (a fact sheet, ``meta-platform.md``, ``shared/reference``)."""
    pattern = re.compile(r"fact sheet|meta-platform\.md|shared/reference")
    skip = {".git", ".venv", "var", "node_modules", "__pycache__"}
    found = []
    for path in ROOT.rglob("*"):
        rel = path.relative_to(ROOT)
        if skip & set(rel.parts) or not path.is_file() or path.suffix not in {".py", ".md", ".yaml", ".yml", ".toml", ".example", ".txt", ".sh", ""}:
            continue
        if rel == Path(__file__).relative_to(ROOT):
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        found += [f"{rel}:{n}" for n, line in enumerate(text.splitlines(), 1) if pattern.search(line)]
    assert found == []
