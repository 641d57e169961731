"""The learning-on-the-fly part of the graph: the first model on the initial data, then per
iteration the samplers (their step classes, by kind, from the step registry), selection,
labelling, the dataset and training; relabelling iterations; and the final models."""

from __future__ import annotations

from typing import Any

import ilcampaign.engine.steps  # noqa: F401  (fills the step registry)
from ilcampaign.campaign.spec import ApaxModel, CampaignSpec, dispersion
from ilcampaign.engine.graph.node import Node
from ilcampaign.engine.step import REGISTRY, Step
from ilcampaign.engine.steps.d3 import D3Step
from ilcampaign.engine.steps.dataset import DatasetStep
from ilcampaign.engine.steps.label import LabelStep
from ilcampaign.engine.steps.sampling import GuardedStep, guard_fields
from ilcampaign.engine.steps.select import SelectStep
from ilcampaign.engine.steps.train import TrainStep


def labeller(spec: CampaignSpec, reference: Any, splits: list[str] | None = None) -> Step:
    """The label step for ``reference`` with the spec's failure policy (retries applied to it)."""
    return LabelStep.from_spec(reference, spec.retry_references(reference), spec.failures, splits,
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
    seed = spec.campaign.seed

    def dataset(number: int, energy_outlier_sigma: float | None, **counts: int | None) -> DatasetStep:
        return DatasetStep(seed=seed + number, validation_fraction=spec.model.validation_fraction,
                           fixed_validation=spec.model.fixed_validation, energy_outlier_sigma=energy_outlier_sigma,
                           **counts)

    split = spec.initial_split
    first = dataset(0, split.energy_outlier_sigma, n_test=split.n_test, n_valid=split.n_valid, n_train=split.n_train)
    nodes = [
        Node("dataset.initial", first, inputs={"new": "label.initial_data"}, group="initial model"),
        Node("train.initial", _train(spec, spec.model), inputs={"data": "dataset.initial"}, group="initial model",
             notes=dispersion_note(dispersion(spec.reference))),
    ]
    model, data, chain = "train.initial", "dataset.initial", "initial_data"
    for stage in spec.stages():
        name, it = stage.planned.name, stage.planned.iteration
        notes = dispersion_note(stage.dispersion)
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
            step = REGISTRY[sampler.kind].from_sampler(spec, sampler, step_seed)
            inputs = step.sampler_inputs(model, chain)
            if isinstance(step, GuardedStep):
                inputs |= step.guard_inputs()
            nodes.append(Node(node_name, step, inputs=inputs, group=name, notes=step.note()))
            pools[f"pool.{sampler_name}"] = node_name
            if sampler.chained:
                chain = node_name
        select = SelectStep(selection=it.selection, seed=step_seed, **guard_fields(spec))
        nodes += [
            Node(f"{name}.select", select, inputs={"model": model, "train": data, **pools, **select.guard_inputs()},
                 group=name),
            Node(f"{name}.label", labeller(spec, stage.reference), inputs={"frames": f"{name}.select"}, group=name,
                 notes=notes),
            Node(f"{name}.dataset", dataset(stage.planned.number, it.energy_outlier_sigma),
                 inputs={"previous": data, "new": f"{name}.label"}, group=name),
            Node(f"{name}.train", _train(spec, stage.model), inputs={"data": f"{name}.dataset"}, group=name,
                 notes=notes),
        ]
        model, data = f"{name}.train", f"{name}.dataset"
    return nodes + final_nodes(spec, data)


def _train(spec: CampaignSpec, model: ApaxModel) -> Step:
    return TrainStep(model=model, checkpoint_every=spec.checkpoints.training_epochs)


def dispersion_note(terms: tuple[str, ...]) -> str:
    return "labels: " + (" + ".join(terms) if terms else "no dispersion")


def final_nodes(spec: CampaignSpec, data: str) -> list[Node]:
    """Each final model: the last dataset, relabelled and/or D3-shifted as asked, then trained."""
    nodes = []
    for final in spec.final_stages():
        name, source = final.final.name, data
        group, notes = f"final {name}", dispersion_note(final.dispersion)
        if final.final.relabel is not None:
            nodes.append(Node(f"final.{name}.label", labeller(spec, final.reference), inputs={"frames": source},
                              group=group))
            source = f"final.{name}.label"
        if final.d3 is not None:
            step = D3Step(d3=final.d3, sign=1 if final.final.d3 == "add" else -1)
            nodes.append(Node(f"final.{name}.d3", step, inputs={"frames": source}, group=group))
            source = f"final.{name}.d3"
        nodes.append(Node(f"final.{name}.train", _train(spec, final.model), inputs={"data": source}, group=group,
                          notes=notes))
    return nodes
