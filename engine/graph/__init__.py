"""Resolving a spec into a DAG of named, content-keyed steps, and comparing it with the archive.

Each node has a stable name (``pack``, ``initial_data``, ``label.initial_data``) so that a
changed step is shown as *stale* with the fields and inputs that changed, rather than as new.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ilcampaign.archive.store import Archive
from ilcampaign.campaign.spec import ApaxModel, CampaignSpec, dispersion
from ilcampaign.campaign.spec.sampling import CHAINED_KINDS
from ilcampaign.engine.hashing import canonical, step_key
from ilcampaign.engine.graph.production import analysis_nodes, production_nodes
from ilcampaign.engine.step import Step


@dataclass
class Node:
    """A step in the graph: its name, parameters, and the names of the steps feeding its inputs."""

    name: str
    step: Step
    inputs: dict[str, str] = field(default_factory=dict)  # input slot -> producing node's name
    group: str = "setup"
    key: str = ""
    input_keys: dict[str, str] = field(default_factory=dict)
    notes: str = ""  # shown by `plan`: e.g. the dispersion a model's labels contain


def build_graph(spec: CampaignSpec, base: Path = Path(".")) -> list[Node]:
    """The steps a spec asks for, in dependency order, with their keys computed.

    ``base`` is the spec's folder: relative file paths in the spec are read from there. A spec
    with cross-section problems (see ``CampaignSpec.problems``) is refused with ValueError.
    """
    from ilcampaign.engine.steps.initial_data import initial_data_step
    from ilcampaign.engine.steps.molecules import Molecules
    from ilcampaign.engine.steps.pack import Pack

    problems = spec.problems()
    if problems:
        raise ValueError("; ".join(f"{'.'.join(map(str, p.loc))}: {p.message}" for p in problems))
    initial = initial_data_step(spec, base=base)
    seed, contacts = spec.campaign.seed, spec.guards.contacts
    nodes = [
        Node("molecules", Molecules(ions=spec.system.ions, relaxation=spec.system.relax_ions, contacts=contacts,
                                    seed=seed)),
        Node("pack", Pack.from_system(spec.system, seed=seed, contacts=contacts), inputs={"molecules": "molecules"}),
        Node("initial_data", initial, inputs={"structure": "pack"} if initial.inputs else {}),
        Node("label.initial_data", labeller(spec, spec.reference), inputs={"frames": "initial_data"},
             notes=_dispersion(dispersion(spec.reference))),
    ]
    if spec.sampling:
        nodes += lotf_nodes(spec)
    nodes += production_nodes(spec, base)
    nodes += analysis_nodes(spec, nodes, base)
    return resolve_keys(nodes)


def labeller(spec: CampaignSpec, reference: Any, splits: list[str] | None = None) -> Step:
    """The label step for ``reference`` with the spec's failure policy (retries applied to it)."""
    from ilcampaign.engine.steps.label import Label

    return Label.from_spec(reference, spec.retry_references(reference), spec.failures, splits,
                           max_force=spec.guards.max_force)


def lotf_nodes(spec: CampaignSpec) -> list[Node]:
    """The learning-on-the-fly loop: a first model on the initial data, then per iteration
    sample with the previous model, select, label, extend the dataset and retrain (or relabel
    the dataset with a changed reference and retrain).

    Iteration i's steps take the model of i-1 and the dataset of i-1 as inputs, so editing
    iteration i changes the keys of i and every later iteration, and of nothing before. A
    sampler starts from the step its ``start`` names, else from the chain: the last md,
    geometry_optimisation or volume_scan before it (at first, the initial data).
    """
    from ilcampaign.engine.steps.dataset import Dataset
    from ilcampaign.engine.steps.select import Select

    seed = spec.campaign.seed

    def dataset(number: int, energy_outlier_sigma: float | None, **counts: int | None) -> Dataset:
        return Dataset(seed=seed + number, validation_fraction=spec.model.validation_fraction,
                       fixed_validation=spec.model.fixed_validation, energy_outlier_sigma=energy_outlier_sigma,
                       **counts)

    split = spec.initial_split
    first = dataset(0, split.energy_outlier_sigma, n_test=split.n_test, n_valid=split.n_valid, n_train=split.n_train)
    nodes = [
        Node("dataset.initial", first, inputs={"new": "label.initial_data"}, group="initial model"),
        Node("train.initial", _train(spec, spec.model), inputs={"data": "dataset.initial"}, group="initial model",
             notes=_dispersion(dispersion(spec.reference))),
    ]
    model, data, chain = "train.initial", "dataset.initial", "initial_data"
    for stage in spec.stages():
        name, it = stage.planned.name, stage.planned.iteration
        notes = _dispersion(stage.dispersion)
        if it.relabel is not None:
            nodes += [
                Node(f"{name}.label", labeller(spec, stage.reference, it.relabel.splits), inputs={"frames": data},
                     group=name, notes=notes),
                Node(f"{name}.train", _train(spec, stage.model), inputs={"data": f"{name}.label"}, group=name,
                     notes=notes),
            ]
            model, data = f"{name}.train", f"{name}.label"
            continue
        step_seed = (seed * 1009 + stage.planned.number) % 2**31
        pools = {}
        for sampler_name, sampler in it.samplers.items():
            node_name = f"{name}.{sampler_name}"
            start = getattr(sampler, "start", None)
            inputs = {} if start is None else {"model": model, "start": start.step or chain}
            step, note = _sampler_step(spec, sampler, step_seed)
            if sampler.kind == "initial_pool":
                inputs = {"labelled": "label.initial_data", "dataset": "dataset.initial"}
            nodes.append(Node(node_name, step, inputs=inputs, group=name, notes=note))
            pools[f"pool.{sampler_name}"] = node_name
            if sampler.kind in CHAINED_KINDS:
                chain = node_name
        nodes += [
            Node(f"{name}.select", Select(selection=it.selection, seed=step_seed, contacts=spec.guards.contacts,
                                          smiles=[ion.smiles for ion in spec.system.ions]),
                 inputs={"model": model, "train": data, **pools}, group=name),
            Node(f"{name}.label", labeller(spec, stage.reference), inputs={"frames": f"{name}.select"}, group=name,
                 notes=notes),
            Node(f"{name}.dataset", dataset(stage.planned.number, it.energy_outlier_sigma),
                 inputs={"previous": data, "new": f"{name}.label"}, group=name),
            Node(f"{name}.train", _train(spec, stage.model), inputs={"data": f"{name}.dataset"}, group=name,
                 notes=notes),
        ]
        model, data = f"{name}.train", f"{name}.dataset"
    return nodes + final_nodes(spec, data)


def _sampler_step(spec: CampaignSpec, sampler: Any, seed: int) -> tuple[Step, str]:
    """The step of one sampler, and a note for `plan`."""
    from ilcampaign.engine.steps.conformers import Conformers
    from ilcampaign.engine.steps.geometry_optimisation import GeometryOptimisation
    from ilcampaign.engine.steps.initial_pool import InitialPool
    from ilcampaign.engine.steps.md import MD
    from ilcampaign.engine.steps.volume_scan import VolumeScan

    optimisation = spec.checkpoints.optimisation_steps
    guard = {"contacts": spec.guards.contacts, "smiles": [ion.smiles for ion in spec.system.ions]}
    if sampler.kind == "md":
        d3 = spec.d3 if sampler.hybrid_d3 else None
        note = f"model + {d3.describe()}" if d3 is not None else ""
        return MD(sampler=sampler, seed=seed, d3=d3, checkpoint_every=spec.checkpoints.md_steps,
                  temperature_guard=spec.guards.temperature, **guard), note
    if sampler.kind == "geometry_optimisation":
        return GeometryOptimisation(settings=sampler, checkpoint_every=optimisation, **guard), ""
    if sampler.kind == "volume_scan":
        return VolumeScan(settings=sampler, checkpoint_every=optimisation, **guard), ""
    if sampler.kind == "initial_pool":
        return InitialPool(settings=sampler), ""
    return Conformers(settings=sampler, ions=spec.system.ions, seed=seed, relaxation=spec.system.relax_ions,
                      contacts=spec.guards.contacts), ""


def _train(spec: CampaignSpec, model: ApaxModel) -> Step:
    from ilcampaign.engine.steps.train import Train

    return Train(model=model, checkpoint_every=spec.checkpoints.training_epochs)


def _dispersion(terms: tuple[str, ...]) -> str:
    return "labels: " + (" + ".join(terms) if terms else "no dispersion")


def final_nodes(spec: CampaignSpec, data: str) -> list[Node]:
    """Each final model: the last dataset, relabelled and/or D3-shifted as asked, then trained."""
    from ilcampaign.engine.steps.d3 import D3Relabel

    nodes = []
    for final in spec.final_stages():
        name, source = final.final.name, data
        group, notes = f"final {name}", _dispersion(final.dispersion)
        if final.final.relabel is not None:
            nodes.append(Node(f"final.{name}.label", labeller(spec, final.reference), inputs={"frames": source},
                              group=group))
            source = f"final.{name}.label"
        if final.d3 is not None:
            step = D3Relabel(d3=final.d3, sign=1 if final.final.d3 == "add" else -1)
            nodes.append(Node(f"final.{name}.d3", step, inputs={"frames": source}, group=group))
            source = f"final.{name}.d3"
        nodes.append(Node(f"final.{name}.train", _train(spec, final.model), inputs={"data": source}, group=group,
                          notes=notes))
    return nodes


def resolve_keys(nodes: list[Node]) -> list[Node]:
    """Compute every node's key from its parameters and its inputs' keys (nodes in dependency order)."""
    keys: dict[str, str] = {}
    for node in nodes:
        missing = set(node.step.inputs) ^ set(node.inputs) if node.step.inputs is not None else set()
        if missing:
            raise ValueError(f"step {node.name}: inputs {sorted(missing)} not wired")
        node.input_keys = {slot: keys[name] for slot, name in node.inputs.items()}
        node.key = step_key(node.step.kind, node.step.version, node.step, node.input_keys)
        keys[node.name] = node.key
    return nodes


def state(node: Node, archive: Archive) -> str:
    """``done``, ``stale`` (finished before with other parameters or inputs) or ``to run``."""
    if archive.is_done(node.key):
        return "done"
    return "stale" if archive.key_for_name(node.name) else "to run"


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    if isinstance(value, list):
        flat = {}
        for index, item in enumerate(value):
            flat.update(_flatten(item, f"{prefix}[{index}]"))
        return flat or {prefix: []}
    return {prefix: value}


def why(node: Node, archive: Archive, nodes_by_key: dict[str, str]) -> list[str]:
    """Human-readable reasons a node is not done: changed fields (old -> new) and changed inputs."""
    if archive.is_done(node.key):
        return []
    old_key = archive.key_for_name(node.name)
    if old_key is None:
        return ["never run"]
    record = archive.record(old_key)
    reasons = []
    if record.get("version") != node.step.version:
        reasons.append(f"implementation version {record.get('version')} -> {node.step.version}")
    old, new = _flatten(record["params"]), _flatten(canonical(node.step))
    for path in sorted(set(old) | set(new)):
        if old.get(path) != new.get(path):
            reasons.append(f"field {path}: {old.get(path)!r} -> {new.get(path)!r}")
    for slot, key in node.input_keys.items():
        if record["inputs"].get(slot) != key:
            producer = nodes_by_key.get(key, key[:12])
            reasons.append(f"input {slot} changed (step {producer} now has key {key[:12]})")
    return reasons or ["the archive holds no finished step with this key"]
