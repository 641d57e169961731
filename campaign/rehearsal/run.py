"""Running a rehearsal: the miniature's graph through ``campaign run``'s runner in its own work
directory, then each real step's outcome, the time model fitted to what it measured, and the report."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ilcampaign.campaign.rehearsal.forecast import Measured, fit, measured_steps
from ilcampaign.campaign.rehearsal.outcome import StepOutcome, counterparts, outcomes
from ilcampaign.campaign.rehearsal.scale import Miniature, miniature
from ilcampaign.campaign.spec import CampaignSpec


@dataclass
class Rehearsal:
    """A finished rehearsal: the miniature and its graph, each real step's outcome, the time
    model per step kind (run = a x tasks + b x work), what each step did and took, and the wall time."""

    miniature: Miniature
    nodes: list
    steps: list[StepOutcome]
    lines: dict[str, tuple[float, float]]
    measured: dict[str, Measured]
    wall_s: float

    @property
    def done(self) -> bool:
        return all(step.state == "done" for step in self.steps)


def rehearse(spec: CampaignSpec, spec_path: Path, real: list, directory: Path, *, pairs: int = 2, stretch: int = 1,
             workers: int = 2, progress: Callable[[str, int, int], None] = lambda *_: None) -> Rehearsal:
    """Rehearse ``spec`` (its real graph: ``real``) in ``directory``; a failed step is an outcome,
    not an exception (``LockedError`` when another run holds the directory)."""
    from ilcampaign.archive.store import Archive
    from ilcampaign.engine.graph import build_graph
    from ilcampaign.engine.graph.manifest import campaign_manifest
    from ilcampaign.engine.run.runner import GraphFailed, run_graph
    from ilcampaign.engine.step import StepFailed

    small = miniature(spec, pairs, stretch)
    nodes = build_graph(small.spec, base=spec_path.resolve().parent)
    mapping = counterparts(real, nodes, small)
    failures: dict[str, str] = {}
    blocked: set[str] = set()
    started = time.perf_counter()
    archive = Archive(directory / "archive")
    try:
        run_graph(nodes, directory, workers, progress, campaign_manifest(small.spec, spec_path, nodes))
    except GraphFailed as exc:
        failures, blocked = {name: str(failure) for name, failure in exc.failures}, set(exc.blocked)
    except StepFailed as exc:
        failures = {next(node.name for node in nodes if not archive.is_done(node.key)): str(exc)}
    wall = time.perf_counter() - started
    measured = measured_steps(archive, small.spec, nodes)
    return Rehearsal(small, nodes, outcomes(real, nodes, mapping, archive, failures, blocked),
                     fit(measured), measured, wall)


def write_report(directory: Path) -> Path:
    """The rehearsal's HTML report (``campaign report`` of its work directory)."""
    from ilcampaign.archive.store import Archive
    from ilcampaign.reports.render import write_report as render
    from ilcampaign.reports.view import CampaignView

    archive = Archive(directory / "archive")
    return render(CampaignView(archive, archive.manifest()), directory / "report_cache", directory / "report.html")

