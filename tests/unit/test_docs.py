"""The documentation holds: a README of one screen per use that links every page of docs/, relative
links that resolve (anchors included), an API reference equal to what its generator makes of the
OpenAPI document, every setting and timer schedule in the settings table, every run error and the
poisoned targets' code in the troubleshooting guide. Files only: no network, no storage, no processes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from devtools.api_doc import render
from shared.batches.poison import RETRIES_EXHAUSTED
from shared.domain.steering import FATAL_ERRORS
from shared.foundation.settings import OWN_SETTINGS

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
WITH_LINKS = [README, ROOT / "CHANGELOG.md", *PAGES]
MAX_README_LINES = 300

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.MULTILINE)
HTML_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"", re.IGNORECASE)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def prose(text: str) -> str:
    """The text outside fenced code blocks, where links are links."""
    return FENCE.sub("", text)


def slug(heading: str) -> str:
    """The anchor a Git host gives a heading: its text (links as their text, no code marks or
    emphasis) in lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = text.replace("`", "").replace("*", "")
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor of a Markdown page: its headings' (numbered when repeated) and explicit ones."""
    text = prose(path.read_text(encoding="utf-8"))
    found: set[str] = set(HTML_ANCHOR.findall(text))
    seen: dict[str, int] = {}
    for _, heading in HEADING.findall(text):
        base = slug(heading)
        count = seen.get(base, 0)
        found.add(base if count == 0 else f"{base}-{count}")
        seen[base] = count + 1
    return found


def links(path: Path) -> list[str]:
    text = CODE_SPAN.sub("", prose(path.read_text(encoding="utf-8")))
    return LINK.findall(text)


def relative_links(path: Path) -> list[str]:
    return [link for link in links(path) if not SCHEME.match(link)]


def target_of(path: Path, link: str) -> tuple[Path, str]:
    where, _, anchor = link.partition("#")
    return ((path.parent / where).resolve() if where else path.resolve()), anchor


def section(text: str, heading: str) -> str:
    """The body of a `## heading` section, up to the next one."""
    return text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def first_column_names(table_text: str) -> set[str]:
    """The `names` in the first cell of every table row of the text."""
    names: set[str] = set()
    for line in table_text.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            first = line.strip().strip("|").split("|")[0]
            names.update(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", first))
    return names


def test_the_docs_exist():
    assert {p.name for p in PAGES} >= {
        "api.md",
        "rollouts.md",
        "operations.md",
        "troubleshooting.md",
        "architecture.md",
        "performance.md",
        "testing.md",
    }


def test_the_readme_is_a_front_door():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= MAX_README_LINES
    for command in ("make demo", "make test", "make unit", "azd up", "grant-graph-permissions"):
        assert command in text, command
    order = [heading for level, heading in HEADING.findall(prose(text)) if level == "##"]
    assert order == ["Try it", "How it works", "Deploy", "The API", "The CLI", "Performance", "Documentation"]
    assert "bench/results/upgrades-over-time.png" in relative_links(README)


def test_the_readme_links_every_page_of_the_docs():
    linked = {target_of(README, link)[0] for link in relative_links(README)}
    missing = [page.name for page in PAGES if page.resolve() not in linked]
    assert missing == []
    assert (ROOT / "CHANGELOG.md").resolve() in linked


@pytest.mark.parametrize("path", WITH_LINKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(path):
    broken = []
    for link in relative_links(path):
        target, anchor = target_of(path, link)
        if not target.exists():
            broken.append(f"{link}: no such file")
        elif anchor and (target.suffix != ".md" or anchor not in anchors(target)):
            broken.append(f"{link}: no heading or anchor #{anchor} in {target.name}")
    assert broken == []


def test_the_link_checker_sees_broken_links(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "# A page\n\n## Where `x` goes (and why)\n\n[ok](#where-x-goes-and-why) [bad](#nowhere) [gone](missing.md)\n"
        "```\n[not a link](nowhere.md)\n```\n`[nor this](nowhere.md)` [out](https://example.com/x)\n",
        encoding="utf-8",
    )
    found = relative_links(page)
    assert found == ["#where-x-goes-and-why", "#nowhere", "missing.md"]
    assert anchors(page) == {"a-page", "where-x-goes-and-why"}
    assert slug("`POST /api/runs/{runId}/cancel`") == "post-apirunsrunidcancel"
    assert slug("What `azd down` leaves") == "what-azd-down-leaves"


def test_the_api_reference_is_what_the_generator_makes_of_the_openapi_document():
    page = (DOCS / "api.md").read_text(encoding="utf-8")
    assert page == render(), "docs/api.md is stale: run .venv/bin/python -m devtools.api_doc > docs/api.md"


def test_the_settings_table_has_every_setting_and_timer_schedule():
    table = first_column_names(section((DOCS / "operations.md").read_text(encoding="utf-8"), "Settings"))
    schedules = set(re.findall(r"schedule=\"%([A-Z_]+)%\"", (ROOT / "function_app.py").read_text(encoding="utf-8")))
    assert len(schedules) >= 5
    assert sorted(OWN_SETTINGS - table) == []
    assert sorted(schedules - table) == []


def test_the_troubleshooting_guide_covers_every_run_error_and_poisoned_targets():
    text = (DOCS / "troubleshooting.md").read_text(encoding="utf-8")
    headings = {heading for _, heading in HEADING.findall(prose(text))}
    codes = {*FATAL_ERRORS, "discoveryIncomplete", RETRIES_EXHAUSTED}
    assert sorted(codes - headings) == []
