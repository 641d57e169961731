"""Checks of a spec at full scale that need files, the step registry or the step graph, found at
``validate`` and ``plan`` time as located problems (``campaign.spec.Problem``), never in a running
step: files that are missing, step kinds that do not exist, an RDF reaching past half a box, a model
or analysis reading a split no frame is in, and a finite-size correction over too few box sizes."""

from __future__ import annotations

import difflib
from collections import defaultdict
from pathlib import Path

from ilcampaign.campaign.spec import CampaignSpec, DiffusionSettings, ModelErrorsSettings, Problem, RDFSettings
from ilcampaign.engine.analysis.reference_data import load_reference
from ilcampaign.engine.graph.node import Node
from ilcampaign.engine.graph.production import production_points, target_density, unit_mass
from ilcampaign.engine.step import REGISTRY

#: Yeh-Hummer's extrapolation over 1/L needs this many box sizes for a confidence interval
FINITE_SIZE_SIZES = 3


def file_problems(spec: CampaignSpec, base: Path) -> list[Problem]:
    """Files the spec names that are missing or unreadable (reference data, an initial trajectory)."""
    problems = []
    for name, entry in spec.references.items():
        try:
            load_reference(name, entry, base)
        except ValueError as exc:
            where = "shipped" if entry.shipped is not None else "file"
            problems.append(Problem(("references", name, where), str(exc).removeprefix(f"references.{name}: "),
                                    "the path is relative to the spec's folder; data shipped with ilcampaign "
                                    "are named with shipped: instead of file:"))
    if spec.initial_data.kind == "file" and not (base / spec.initial_data.path).is_file():
        problems.append(Problem(("initial_data", "path"), f"no file {(base / spec.initial_data.path).resolve()}",
                                "the path is relative to the spec's folder"))
    return problems


def graph_problems(spec: CampaignSpec, nodes: list[Node], base: Path) -> list[Problem]:
    """Everything the graph shows to be wrong (errors) or doubtful (warnings)."""
    return [*_resource_problems(spec, nodes), *_rdf_problems(spec, base), *_split_problems(spec),
            *_finite_size_problems(spec)]


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


def box_length(spec: CampaignSpec, run_name: str, pairs: int, temperature: float | None, base: Path) -> float:
    """The cubic cell length (A) of a production run's box at its target density."""
    density = target_density(spec, spec.production.runs[run_name], temperature, base)
    return (pairs * unit_mass(spec) / density) ** (1 / 3)


def _rdf_problems(spec: CampaignSpec, base: Path) -> list[Problem]:
    """An RDF's ``r_max`` fits in every box it reads: minimum image is exact up to half the cell width."""
    problems = []
    for name, analysis in spec.analyses.items():
        if not isinstance(analysis, RDFSettings):
            continue
        boxes = [(box_length(spec, facts["run"], facts["ion_pairs"], facts["temperature_K"], base), point)
                 for point, facts in production_points(spec, analysis.runs)]
        if not boxes:
            continue
        length, point = min(boxes)
        if analysis.r_max > length / 2:
            problems.append(Problem(
                ("analyses", name, "r_max"),
                f"r_max {analysis.r_max:g} A is more than half the smallest box this analysis reads ({point}: "
                f"{length:.2f} A at its target density)",
                f"set r_max to {int(length / 2 * 10) / 10:g} A or less, or analyse only runs with larger boxes"))
    return problems


def split_counts(spec: CampaignSpec) -> dict[str, dict[str, int | None]]:
    """Model name -> the train / valid / test frames of the dataset it is trained on, as the
    schedule implies them (None where only a run can tell)."""
    from ilcampaign.campaign.spec.schedule import table

    rows = table(spec)
    counts = {"initial": rows[0]}
    counts |= {stage.planned.name: row for stage, row in zip(spec.stages(), rows[1:])}
    counts |= {f"final.{final.name}": rows[-1] for final in spec.final_models}
    return {model: {"train": row.train, "valid": row.valid, "test": row.test} for model, row in counts.items()}


def _split_problems(spec: CampaignSpec) -> list[Problem]:
    """Every model is trained on a dataset with training and validation frames, and every
    model_errors analysis scores a split its models' datasets hold."""
    if not spec.sampling:
        return []
    counts = split_counts(spec)
    problems = []
    why = _why_empty(spec)
    for stage in spec.stages():
        model = counts[stage.planned.name]
        for split in ("train", "valid"):
            if model[split] == 0:
                problems.append(Problem(("sampling", stage.planned.index), f"model {stage.planned.name} would train "
                                        f"on a dataset without {split} frames ({why(stage.planned.name, split)})",
                                        f"keep {split} frames (relabel splits, initial_split)"))
    for name, analysis in spec.analyses.items():
        if not isinstance(analysis, ModelErrorsSettings):
            continue
        for model in spec.resolve_models(analysis.models):
            if counts.get(model, {}).get(analysis.split) == 0:
                index = analysis.models.index(model) if model in analysis.models else 0
                problems.append(Problem(
                    ("analyses", name, "models", index),
                    f"model {model}'s dataset holds no {analysis.split} frames to score "
                    f"({why(model, analysis.split)})",
                    f"score another split (split: valid scores the validation frames, as the paper's Fig. 1), or "
                    f"keep {analysis.split} frames"))
    return problems


def _why_empty(spec: CampaignSpec):
    """A function (model, split) -> why that model's dataset has none of that split, in words."""
    dropped: dict[str, str] = {}  # split -> the relabel iteration that dropped it
    by_model: dict[str, dict[str, str]] = {}
    for stage in spec.stages():
        relabel = stage.planned.iteration.relabel
        if relabel is not None:
            for split in ("train", "valid", "test"):
                if split not in relabel.splits:
                    dropped.setdefault(split, stage.planned.name)
        by_model[stage.planned.name] = dict(dropped)
    for final in spec.final_models:
        by_model[f"final.{final.name}"] = dict(dropped)

    def why(model: str, split: str) -> str:
        if split in by_model.get(model, {}):
            return f"the relabel iteration {by_model[model][split]} drops them: its splits leave out {split}"
        return "initial_split.n_test is 0" if split == "test" else f"the schedule adds no {split} frames"

    return why


def _finite_size_problems(spec: CampaignSpec) -> list[Problem]:
    """A warning where a diffusion analysis' finite-size correction has fewer than three box sizes
    at a (model, temperature): the extrapolation is then reported as unavailable."""
    problems = []
    for name, analysis in spec.analyses.items():
        if not isinstance(analysis, DiffusionSettings) or not analysis.finite_size_correction:
            continue
        sizes: dict[tuple[str, float], set[int]] = defaultdict(set)
        for _, facts in production_points(spec, analysis.runs):
            sizes[(facts["model"], facts["temperature_K"])].add(facts["ion_pairs"])
        short = sorted((model, temperature, sorted(found)) for (model, temperature), found in sizes.items()
                       if len(found) < FINITE_SIZE_SIZES)
        if short:
            listed = "; ".join(f"{model} at {temperature:g} K: {found}" for model, temperature, found in short[:4])
            more = f" and {len(short) - 4} more" if len(short) > 4 else ""
            problems.append(Problem(
                ("analyses", name, "runs"),
                f"the finite-size correction needs {FINITE_SIZE_SIZES} box sizes at each model and temperature; "
                f"the runs give fewer ({listed}{more}), so it will be reported as unavailable there",
                "add ion_pairs to the runs, or set finite_size_correction: false", warning=True))
    return problems
