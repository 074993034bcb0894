"""The documentation's links hold (issue 26): every relative link and picture of README.md
and docs/*.md names a file that exists (and, with #anchor into a Markdown page, one of its
headings), and every docs page is linked from the front page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)|<img [^>]*src=\"([^\"]+)\"")
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)  # links inside code are not links


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+\s+(.*?)\s*$", CODE.sub("", page.read_text()), re.M)
    return {re.sub(r"[^\w\- ]", "", h.replace("`", "").lower()).replace(" ", "-")
            for h in headings}


def relative_links(page: Path) -> list[str]:
    text = CODE.sub("", page.read_text())
    targets = [a or b for a, b in LINK.findall(text)]
    return [t for t in targets if not re.match(r"[a-z]+:", t)]  # http:, https:, mailto:


def test_the_anchor_rule_matches_github():
    assert "seed-000s-study" in anchors(ROOT / "docs" / "studies.md")
    assert "labels-conditional-gans-and-ac-gan" in anchors(ROOT / "docs" / "images.md")


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_relative_link_resolves(page):
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(target)
    assert not broken, f"{page.name}: {broken}"


def test_every_docs_page_is_linked_from_the_front_page():
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in relative_links(ROOT / "README.md")}
    generated = {"seed_study.md", "ring_grid.md"}  # linked from docs/studies.md
    pages = [p for p in PAGES[1:] if p.name not in generated]
    assert len(pages) >= 10
    assert [p.name for p in pages if p.resolve() not in linked] == []
    assert (ROOT / "benchmarks" / "README.md").resolve() in linked


def test_the_generated_reports_are_linked_from_the_studies_page():
    linked = {t for t in relative_links(ROOT / "docs" / "studies.md")}
    assert {"seed_study.md", "ring_grid.md"} <= linked
