"""Render a campaign's report (one self-contained HTML file) and its figure set (PDF, PNG, CSV,
LaTeX) from the archive alone. Rendering never runs a step and never writes into the archive;
figures are cached outside it, under the keys of the steps they are drawn from.

Reports may be written by several processes at once: each draws a figure into a partial folder of
its own (``<key>.<random>.partial``), renamed into place only when complete (the first one to finish
wins, the others are dropped), and report.html and the figure set's files are written atomically."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2

from ilcampaign.archive.atomic import atomic_copy, atomic_write_bytes
from ilcampaign.reports import tables
from ilcampaign.reports.view import CampaignView

CACHE_FORMAT = 1
PARTIAL = ".partial"  # the suffix of a figure folder still being drawn


@dataclass
class Figure:
    """A rendered figure as the report and the figure set use it (from the cache or fresh)."""

    id: str
    title: str
    caption: str
    sources: dict[str, str]
    folder: Path | None  # cache folder with figure.svg/.pdf/.png and data.csv; None: not available
    reason: str = ""

    @property
    def svg(self) -> str:
        return (self.folder / "figure.svg").read_text(encoding="utf-8") if self.folder else ""


def _code_version() -> str:
    """Hash of the figure code and matplotlib's version: a change of either re-renders."""
    import matplotlib

    digest = hashlib.sha256(matplotlib.__version__.encode())
    for module in ("figures.py", "style.py"):
        digest.update((Path(__file__).parent / module).read_bytes())
    return digest.hexdigest()


def _cache_key(view: CampaignView, function: Callable, code: str) -> str:
    """The keys and states of every step of the kinds ``function`` reads, with its name and the code
    (states too: a figure names the steps that are stale or not run yet)."""
    keys = sorted((step.name, step.key, step.state) for step in view.steps if step.kind in function.reads)
    text = json.dumps({"format": CACHE_FORMAT, "figure": function.__name__, "code": code, "steps": keys})
    return hashlib.sha256(text.encode()).hexdigest()


def figures(view: CampaignView, cache: Path) -> list[Figure]:
    """Every figure of the campaign, drawn only on a cache miss."""
    from ilcampaign.reports.figures import FIGURES

    code = _code_version()
    out = []
    for function in FIGURES:
        folder = cache / _cache_key(view, function, code)
        if not (folder / "done.json").exists():
            _draw(view, function, folder)
        for item in json.loads((folder / "done.json").read_text()):
            sub = folder / item["id"] if item["available"] else None
            out.append(Figure(item["id"], item["title"], item.get("caption", ""), item.get("sources", {}), sub,
                              item.get("reason", "")))
    return out


def _draw(view: CampaignView, function: Callable, folder: Path) -> None:
    """Draw one figure function's plots into a partial folder of this call's own, renamed to ``folder``
    when complete unless another process got there first."""
    from ilcampaign.reports.figures import Missing
    from ilcampaign.reports.style import save, svg_text

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{folder.name}.", suffix=PARTIAL, dir=folder.parent))
    items: list[dict[str, Any]] = []
    for plot in function(view):
        if isinstance(plot, Missing):
            items.append({"id": plot.id, "title": plot.title, "available": False, "reason": plot.reason})
            continue
        sub = tmp / plot.id
        sub.mkdir()
        (sub / "figure.svg").write_text(svg_text(plot.figure), encoding="utf-8")
        save(plot.figure, sub / "figure")
        (sub / "data.csv").write_text(_csv(plot.data), encoding="utf-8")
        items.append({"id": plot.id, "title": plot.title, "available": True, "caption": plot.caption,
                      "sources": plot.sources})
    (tmp / "done.json").write_text(json.dumps(items, indent=1, sort_keys=True))
    try:
        tmp.rename(folder)  # atomic: a folder under its final name is always complete
    except OSError:  # another process renamed its folder into place first
        shutil.rmtree(tmp, ignore_errors=True)


def figure_pdfs(cache: Path) -> dict[str, Path]:
    """The newest complete PDF of each figure in the cache, by figure id (folders still being drawn
    are left out)."""
    pdfs = [pdf for pdf in cache.glob("*/*/figure.pdf") if not pdf.parent.parent.name.endswith(PARTIAL)]
    return {pdf.parent.name: pdf for pdf in sorted(pdfs, key=lambda path: path.stat().st_mtime)}


def _csv(columns: dict[str, list]) -> str:
    table = tables.TableData("", "", list(columns), [list(row) for row in zip(*columns.values())])
    return table.csv()


def report_tables(view: CampaignView) -> list[tables.TableData]:
    return [tables.table1(view), tables.model_errors(view), tables.cost_ledger(view)]


def render_html(view: CampaignView, cache: Path, generated: str | None = None) -> str:
    """The report as one HTML string: figures inline as SVG, no external resources."""
    environment = jinja2.Environment(loader=jinja2.PackageLoader("ilcampaign.reports", "templates"),
                                     autoescape=jinja2.select_autoescape(["html", "j2"]),
                                     undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    environment.filters["cell"] = tables.cell_text
    manifest = view.manifest
    states = tables.states(view)
    not_done = [step for step in view.steps if step.state != "done"]
    return environment.get_template("report.html.j2").render(
        manifest=manifest, states=states, not_done=not_done, n_done=len(view.steps) - len(not_done),
        tables=report_tables(view), comparisons=tables.comparisons(view), figures=figures(view, cache),
        software=tables.software(view), generated=generated or datetime.now(UTC).isoformat(timespec="seconds"))


def write_report(view: CampaignView, cache: Path, out: Path) -> Path:
    """Write the report to ``out`` atomically."""
    atomic_write_bytes(out, render_html(view, cache).encode("utf-8"))
    return out


def write_figure_set(view: CampaignView, cache: Path, out: Path) -> list[Path]:
    """The figures as PDF and PNG with their data as CSV, and the tables as CSV and LaTeX, in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for figure in figures(view, cache):
        if figure.folder is None:
            continue
        for suffix, name in ((".pdf", "figure.pdf"), (".png", "figure.png"), (".csv", "data.csv")):
            target = out / f"{figure.id}{suffix}"
            atomic_copy(figure.folder / name, target)
            written.append(target)
    for table in report_tables(view):
        for suffix, text in ((".csv", table.csv()), (".tex", table.latex())):
            target = out / f"{table.id}{suffix}"
            atomic_write_bytes(target, text.encode("utf-8"))
            written.append(target)
    return written
