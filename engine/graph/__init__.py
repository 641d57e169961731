"""Resolving a spec into a DAG of named, content-keyed steps, and comparing it with the archive.

Each node has a stable name (``pack``, ``initial_data``, ``label.initial_data``) so that a
changed step is shown as *stale* with the fields and inputs that changed, rather than as new.
The setup steps are built here; ``lotf``, ``production`` and ``analyses`` build the rest.
"""

from __future__ import annotations

from pathlib import Path

import ilcampaign.engine.steps  # noqa: F401  (fills the step registry)
from ilcampaign.campaign.spec import CampaignSpec, dispersion
from ilcampaign.engine.graph.analyses import analysis_nodes
from ilcampaign.engine.graph.lotf import dispersion_note, labeller, lotf_nodes
from ilcampaign.engine.graph.node import Node, resolve_keys, state, why
from ilcampaign.engine.graph.production import production_nodes
from ilcampaign.engine.step import REGISTRY
from ilcampaign.engine.steps.molecules import MoleculesStep
from ilcampaign.engine.steps.pack import PackStep

__all__ = ["Node", "build_graph", "resolve_keys", "state", "why"]


def build_graph(spec: CampaignSpec, base: Path = Path(".")) -> list[Node]:
    """The steps a spec asks for, in dependency order, with their keys computed.

    ``base`` is the spec's folder: relative file paths in the spec are read from there. A spec
    with cross-section problems (see ``CampaignSpec.problems``) is refused with ValueError.
    """
    problems = [problem for problem in spec.problems() if not problem.warning]
    if problems:
        raise ValueError("; ".join(f"{'.'.join(map(str, p.loc))}: {p.message}" for p in problems))
    initial = REGISTRY[f"initial_{spec.initial_data.kind}"].from_spec(spec, base)
    seed, contacts = spec.campaign.seed, spec.guards.contacts
    nodes = [
        Node("molecules", MoleculesStep(ions=spec.system.ions, relaxation=spec.system.relax_ions,
                                        contacts=contacts, seed=seed)),
        Node("pack", PackStep.from_system(spec.system, seed=seed, contacts=contacts), inputs={"molecules": "molecules"}),
        Node("initial_data", initial, inputs={slot: {"structure": "pack"}.get(slot, slot)
                                              for slot in initial.input_slots()}),
        Node("label.initial_data", labeller(spec, spec.reference), inputs={"frames": "initial_data"},
             notes=dispersion_note(dispersion(spec.reference))),
    ]
    if spec.sampling:
        nodes += lotf_nodes(spec)
    nodes += production_nodes(spec, base)
    nodes += analysis_nodes(spec, nodes, base)
    return resolve_keys(nodes)
