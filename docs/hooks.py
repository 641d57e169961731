"""mkdocs hook: fills the generated reference pages (every spec field, the command line, the
benchmark tables) from ilcampaign itself, and the changelog from CHANGELOG.md, at build time."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKERS = {
    "<!-- generated: spec reference -->": lambda: _docgen().spec_reference(),
    "<!-- generated: cli reference -->": lambda: _docgen().cli_reference(),
    "<!-- generated: benchmark tables -->": lambda: _docgen().benchmark_tables(ROOT / "benchmarks" / "results"),
    "<!-- generated: changelog -->": lambda: (ROOT / "CHANGELOG.md").read_text().split("\n", 1)[1],
}


def _docgen():
    from ilcampaign.campaign import docgen

    return docgen


def on_page_markdown(markdown: str, **_: object) -> str:
    for marker, make in MARKERS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, make())
    return markdown
