"""Resolving a spec into a DAG of named, content-keyed steps, and comparing it with the archive.

Each node has a stable name (``pack``, ``initial_data``, ``label.initial_data``) so that a
changed step is shown as *stale* with the fields and inputs that changed, rather than as new.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archive.store import Archive
from campaign.spec import ApaxModel, CampaignSpec, Iteration, deep_merge
from engine.hashing import canonical, step_key
from engine.step import Step


@dataclass
class Node:
    """A step in the graph: its name, parameters, and the names of the steps feeding its inputs."""

    name: str
    step: Step
    inputs: dict[str, str] = field(default_factory=dict)  # input slot -> producing node's name
    group: str = "setup"
    key: str = ""
    input_keys: dict[str, str] = field(default_factory=dict)


def build_graph(spec: CampaignSpec, base: Path = Path(".")) -> list[Node]:
    """The steps a spec asks for, in dependency order, with their keys computed.

    ``base`` is the spec's folder: relative file paths in the spec are read from there.
    """
    from engine.steps.initial_data import initial_data_step
    from engine.steps.label import Label
    from engine.steps.pack import Pack

    initial = initial_data_step(spec.initial_data, spec.reference, seed=spec.campaign.seed, base=base)
    nodes = [
        Node("pack", Pack.from_system(spec.system, seed=spec.campaign.seed)),
        Node("initial_data", initial, inputs={"structure": "pack"} if initial.inputs else {}),
        Node(
            "label.initial_data",
            Label.from_spec(spec.reference, spec.retry_references(), spec.failures),
            inputs={"frames": "initial_data"},
        ),
    ]
    if spec.sampling:
        nodes += lotf_nodes(spec)
    return resolve_keys(nodes)


def iteration_names(spec: CampaignSpec) -> list[tuple[str, Iteration]]:
    """Every LotF iteration in order, ``repeat`` expanded: (name, iteration)."""
    names = []
    for it in spec.sampling:
        for r in range(it.repeat):
            number = len(names) + 1
            if it.name is None:
                names.append((f"iter{number:02d}", it))
            else:
                names.append((it.name if it.repeat == 1 else f"{it.name}-{r + 1}", it))
    return names


def lotf_nodes(spec: CampaignSpec) -> list[Node]:
    """The learning-on-the-fly loop: a first model on the initial data, then per iteration
    sample with the previous model, select, label, extend the dataset and retrain.

    Iteration i's steps take the model of i-1 and the dataset of i-1 as inputs, so editing
    iteration i changes the keys of i and every later iteration, and of nothing before.
    """
    from engine.steps.conformers import Conformers
    from engine.steps.dataset import Dataset
    from engine.steps.geometry_optimisation import GeometryOptimisation
    from engine.steps.initial_pool import InitialPool
    from engine.steps.label import Label
    from engine.steps.md import MD
    from engine.steps.select import Select
    from engine.steps.train import Train
    from engine.steps.volume_scan import VolumeScan

    seed = spec.campaign.seed
    label = Label.from_spec(spec.reference, spec.retry_references(), spec.failures)

    def dataset(number: int, energy_outlier_sigma: float | None, **counts: int | None) -> Dataset:
        return Dataset(seed=seed + number, validation_fraction=spec.model.validation_fraction,
                       fixed_validation=spec.model.fixed_validation, energy_outlier_sigma=energy_outlier_sigma,
                       **counts)

    split = spec.initial_split
    first = dataset(0, split.energy_outlier_sigma, n_test=split.n_test, n_valid=split.n_valid, n_train=split.n_train)
    nodes = [
        Node("dataset.initial", first, inputs={"new": "label.initial_data"}, group="initial model"),
        Node("train.initial", Train(model=spec.model, checkpoint_every=spec.checkpoints.training_epochs), inputs={"data": "dataset.initial"}, group="initial model"),
    ]
    model, data, start = "train.initial", "dataset.initial", "initial_data"
    for number, (name, it) in enumerate(iteration_names(spec), start=1):
        step_seed = (seed * 1009 + number) % 2**31
        pools = {}
        for sampler_name, sampler in it.samplers.items():
            node_name = f"{name}.{sampler_name}"
            if sampler.kind == "md":
                d3 = spec.d3 if sampler.hybrid_d3 else None
                step, inputs = MD(sampler=sampler, seed=step_seed, d3=d3), {"model": model, "start": start}
            elif sampler.kind == "geometry_optimisation":
                step, inputs = GeometryOptimisation(settings=sampler), {"model": model, "start": start}
            elif sampler.kind == "volume_scan":
                step, inputs = VolumeScan(settings=sampler), {"model": model, "start": start}
            elif sampler.kind == "initial_pool":
                step, inputs = InitialPool(settings=sampler), {"labelled": "label.initial_data",
                                                               "dataset": "dataset.initial"}
            else:
                step, inputs = Conformers(settings=sampler, ions=spec.system.ions, seed=step_seed), {}
            nodes.append(Node(node_name, step, inputs=inputs, group=name))
            pools[f"pool.{sampler_name}"] = node_name
            if sampler.kind in ("md", "geometry_optimisation"):
                start = node_name  # the next sampler continues from here
        nodes += [
            Node(f"{name}.select", Select(selection=it.selection, seed=step_seed),
                 inputs={"model": model, "train": data, **pools}, group=name),
            Node(f"{name}.label", label, inputs={"frames": f"{name}.select"}, group=name),
            Node(f"{name}.dataset", dataset(number, it.energy_outlier_sigma),
                 inputs={"previous": data, "new": f"{name}.label"}, group=name),
            Node(f"{name}.train", Train(model=model_with(spec, it.model), checkpoint_every=spec.checkpoints.training_epochs), inputs={"data": f"{name}.dataset"}, group=name),
        ]
        model, data = f"{name}.train", f"{name}.dataset"
    return nodes + final_nodes(spec, data)


def final_nodes(spec: CampaignSpec, data: str) -> list[Node]:
    """Each final model: the last dataset, relabelled and/or D3-shifted as asked, then trained."""
    from engine.steps.d3 import D3Relabel
    from engine.steps.label import Label
    from engine.steps.train import Train

    nodes = []
    for final in spec.final_models:
        source, group = data, f"final {final.name}"
        if final.relabel is not None:
            reference = type(spec.reference).model_validate(
                deep_merge(spec.reference.model_dump(mode="json"), final.relabel))
            retries = [type(reference).model_validate(deep_merge(reference.model_dump(mode="json"), o))
                       for o in spec.failures.retry_with or []]
            step = Label.from_spec(reference, retries, spec.failures)
            nodes.append(Node(f"final.{final.name}.label", step, inputs={"frames": source}, group=group))
            source = f"final.{final.name}.label"
        if final.d3 != "keep":
            cutoff = final.d3_cutoff or spec.d3.cutoff
            d3 = spec.d3.model_copy(update={"cutoff": cutoff, "cn_cutoff": final.d3_cutoff or spec.d3.cn_cutoff})
            step = D3Relabel(d3=d3, sign=1 if final.d3 == "add" else -1)
            nodes.append(Node(f"final.{final.name}.d3", step, inputs={"frames": source}, group=group))
            source = f"final.{final.name}.d3"
        nodes.append(Node(f"final.{final.name}.train", Train(model=model_with(spec, final.model), checkpoint_every=spec.checkpoints.training_epochs),
                          inputs={"data": source}, group=group))
    return nodes


def model_with(spec: CampaignSpec, overrides: dict) -> ApaxModel:
    """The model section with an iteration's or a final model's overrides applied."""
    if not overrides:
        return spec.model
    return ApaxModel.model_validate(deep_merge(spec.model.model_dump(mode="json"), overrides))


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
