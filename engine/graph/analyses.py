"""The analyses of a spec as graph nodes: one step per entry of ``analyses``, of the step kind its
``kind:`` names, over the production runs it names (input slots ``run000``, ...) or over trained
models (``model000``, ..., and what else the step reads)."""

from __future__ import annotations

from pathlib import Path

import ilcampaign.engine.steps  # noqa: F401  (fills the step registry)
from ilcampaign.campaign.spec import CampaignSpec, RunAnalysisSettings
from ilcampaign.engine.analysis.reference_data import load_reference
from ilcampaign.engine.graph.node import Node, model_node
from ilcampaign.engine.graph.production import production_points
from ilcampaign.engine.step import REGISTRY
from ilcampaign.engine.steps.analysis import RunFacts, run_slot


def analysis_nodes(spec: CampaignSpec, nodes: list[Node], base: Path) -> list[Node]:
    """One node per analysis; ``nodes``: the graph so far (a model's dataset is its train step's input)."""
    by_name = {node.name: node for node in nodes}
    trained = {model: (model_node(model), by_name[model_node(model)].inputs["data"]) for model in spec.model_names()}
    built = []
    for name, settings in spec.analyses.items():
        cls = REGISTRY[settings.kind]
        if isinstance(settings, RunAnalysisSettings):
            points = production_points(spec, settings.runs)
            reference = getattr(settings, "reference", None)
            table = None if reference is None else load_reference(reference, spec.references[reference], base)
            step = cls.from_analysis(spec, settings, [RunFacts(name=point, **info) for point, info in points], table)
            inputs = {run_slot(index): point for index, (point, _) in enumerate(points)}
        else:
            step = cls.from_analysis(spec, settings)
            inputs = step.wiring(trained)
        built.append(Node(f"analysis.{name}", step, inputs=inputs, group="analyses",
                          notes=f"{settings.kind} over {len(inputs)} input(s)"))
    return built
