"""What a rehearsal did: each step of the real graph, its miniature counterpart, how it ended, how
long it took and what the guards did; the scaling; written as ``rehearsal.json`` and
``rehearsal.md`` in the rehearsal's work directory."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ilcampaign.campaign.rehearsal.scale import Miniature


@dataclass
class StepOutcome:
    """One step of the real graph and how its miniature ran."""

    name: str  # in the real graph
    rehearsed_as: str  # in the miniature graph (system sizes differ)
    kind: str
    state: str  # done, failed, not run (an input failed)
    wall_s: float | None
    guards: str
    message: str = ""


def counterparts(real: list, mini: list, miniature: Miniature) -> dict[str, str]:
    """Real step name -> miniature step name: the same graph, production sizes renamed."""
    sizes: dict[str, dict[int, int]] = {}
    for name, run in miniature.spec.production.runs.items():
        sizes[name] = dict(zip(miniature.real_runs[name], run.ion_pairs))
    names = {node.name for node in mini}
    mapping = {}
    for node in real:
        name = node.name
        match = re.match(r"production\.([A-Za-z0-9_]+)\.", name)
        if match and match.group(1) in sizes:
            name = ".".join(str(sizes[match.group(1)].get(int(part), part)) if part.isdigit() else part
                            for part in name.split("."))
        if name not in names:
            raise ValueError(f"the rehearsal has no step for {node.name} (looked for {name})")
        mapping[node.name] = name
    return mapping


def outcomes(real: list, mini: list, mapping: dict[str, str], archive: Any, failures: dict[str, str],
             blocked: set[str]) -> list[StepOutcome]:
    """Each real step's outcome from the rehearsal's archive and the run's failures."""
    from ilcampaign.campaign.terminal import guard_note

    by_name = {node.name: node for node in mini}
    found = []
    for node in real:
        rehearsed = by_name[mapping[node.name]]
        if archive.is_done(rehearsed.key):
            record = archive.record(rehearsed.key)
            found.append(StepOutcome(node.name, rehearsed.name, node.step.kind, "done", record["wall_s"],
                                     guard_note(record)))
        elif rehearsed.name in failures:
            found.append(StepOutcome(node.name, rehearsed.name, node.step.kind, "failed", None, "",
                                     failures[rehearsed.name]))
        else:
            found.append(StepOutcome(node.name, rehearsed.name, node.step.kind,
                                     "not run" if rehearsed.name in blocked else "not done", None, ""))
    return found


def write(directory: Path, miniature: Miniature, steps: list[StepOutcome], wall_s: float,
          forecast: list[Any] | None = None) -> tuple[Path, Path]:
    """``rehearsal.json`` (everything) and ``rehearsal.md`` (for people) in ``directory``."""
    done = sum(step.state == "done" for step in steps)
    facts = {"steps": len(steps), "done": done, "wall_s": wall_s, "ion_pairs": miniature.pairs,
             "real_ion_pairs": miniature.real_pairs, "length_factor": miniature.length_factor,
             "data_factor": miniature.data_factor}
    (directory / "rehearsal.json").write_text(json.dumps(
        {**facts, "scaling": miniature.changes, "outcomes": [asdict(step) for step in steps],
         "forecast": [asdict(row) for row in forecast or []]}, indent=1) + "\n")
    lines = [f"# Rehearsal: {done} of {len(steps)} steps done in {wall_s:.0f} s", "",
             f"On {miniature.pairs} formula units instead of {miniature.real_pairs} (box lengths x "
             f"{miniature.length_factor:.3g}), frame counts x {miniature.data_factor:.3g}.", "", "## What was scaled", ""]
    lines += [f"- {change}" for change in miniature.changes]
    lines += ["", "## Each step", "", "| step | rehearsed as | kind | outcome | wall s | guards |", "| --- | --- | --- | --- | --- | --- |"]
    for step in steps:
        outcome = step.state + (f": {step.message}" if step.message else "")
        wall = "" if step.wall_s is None else f"{step.wall_s:.1f}"
        lines.append(f"| {step.name} | {step.rehearsed_as} | {step.kind} | {outcome} | {wall} | {step.guards} |")
    if forecast:
        from ilcampaign.campaign.rehearsal.forecast import markdown

        lines += ["", markdown(forecast)]
    (directory / "rehearsal.md").write_text("\n".join(lines) + "\n")
    return directory / "rehearsal.json", directory / "rehearsal.md"
