"""Checks of a spec that need its step graph or the engine's registries, found at ``validate`` and
``plan`` time as located problems (``campaign.spec.Problem``), never in a running step."""

from __future__ import annotations

import difflib
from pathlib import Path

from ilcampaign.campaign.spec import CampaignSpec, Problem
from ilcampaign.engine.graph.node import Node
from ilcampaign.engine.step import REGISTRY


def graph_problems(spec: CampaignSpec, nodes: list[Node], base: Path) -> list[Problem]:
    """Everything the graph shows to be wrong (errors) or doubtful (warnings)."""
    return [*_resource_problems(spec, nodes)]


def _resource_problems(spec: CampaignSpec, nodes: list[Node]) -> list[Problem]:
    """``execution.resources`` names step kinds that exist."""
    kinds = sorted(REGISTRY)
    used = sorted({node.step.kind for node in nodes})
    problems = []
    for kind in spec.execution.resources:
        if kind not in REGISTRY:
            close = difflib.get_close_matches(kind, kinds, n=1)
            problems.append(Problem(("execution", "resources", kind), f"no step kind {kind!r}",
                                    (f"did you mean {close[0]!r}? " if close else "")
                                    + f"this spec's step kinds: {', '.join(used)}"))
    return problems
