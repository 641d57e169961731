"""The one publication style of every figure, and savers that give the same bytes for the same
figure (no dates, fixed SVG ids), so figures can be cached and diffed like the archive itself.

Figures are `matplotlib.figure.Figure` objects drawn by the Agg renderer: no pyplot, no global backend.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib import cycler
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine, TightLayoutEngine

#: figure widths in inches: one and two journal columns
SINGLE = 3.5
DOUBLE = 7.0
#: Okabe & Ito's colour-blind-safe palette (yellow last: it is faint on white)
OKABE_ITO = ["#0072B2", "#D55E00", "#009E73", "#E69F00", "#56B4E9", "#CC79A7", "#000000", "#F0E442"]
PNG_DPI = 200

RC: dict[str, Any] = {
    "figure.figsize": (SINGLE, 2.6),
    "figure.dpi": 100,
    "savefig.dpi": PNG_DPI,
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans"],  # ships with matplotlib: nothing fetched, same glyphs everywhere
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.labelsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "figure.titlesize": 9,
    "axes.prop_cycle": cycler(color=OKABE_ITO),
    "axes.linewidth": 0.6,
    "lines.linewidth": 1.0,
    "lines.markersize": 3.5,
    "errorbar.capsize": 2,
    "xtick.direction": "in",
    "ytick.direction": "in",
    "svg.hashsalt": "ilcampaign",
    "svg.fonttype": "none",
    "pdf.fonttype": 42,
}


@contextmanager
def publication() -> Iterator[None]:
    """Apply the publication rcParams while building or saving a figure."""
    with matplotlib.rc_context(RC):
        yield


def styled(build: Callable[..., Any]) -> Callable[..., Any]:
    """Run a figure builder inside `publication` (rcParams are read as artists are made)."""

    @functools.wraps(build)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with publication():
            return build(*args, **kwargs)

    return wrapper


def figure(nrows: int = 1, ncols: int = 1, *, width: float = SINGLE, height: float | None = None,
           **kwargs: Any) -> tuple[Figure, Any]:
    """A Figure (no pyplot state) with constrained layout and a grid of axes (always a 2-D array)."""
    fig = Figure(figsize=(width, height or 2.2 * nrows + 0.4), layout="constrained")
    return fig, fig.subplots(nrows, ncols, squeeze=False, **kwargs)


def _settle(fig: Figure) -> None:
    """Run the layout engine once and keep its result: constrained layout rerun on a laid-out
    figure moves axes by rounding errors, which changes SVG clip ids from one save to the next."""
    if isinstance(fig.get_layout_engine(), (ConstrainedLayoutEngine, TightLayoutEngine)):
        fig.draw_without_rendering()
        fig.set_layout_engine("none")


def svg_text(fig: Figure) -> str:
    """The figure as SVG text, byte-identical for the same figure (fixed hash salt, no date)."""
    buffer = io.StringIO()
    with publication():
        _settle(fig)
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    return buffer.getvalue()


def save(fig: Figure, stem: Path) -> list[Path]:
    """Write ``stem.pdf`` and ``stem.png`` (without dates, so reruns give the same bytes)."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    pdf, png = Path(f"{stem}.pdf"), Path(f"{stem}.png")
    with publication():
        _settle(fig)
        fig.savefig(pdf, format="pdf", metadata={"CreationDate": None, "ModDate": None})
        fig.savefig(png, format="png", dpi=PNG_DPI, metadata={"Software": None})
    return [pdf, png]
