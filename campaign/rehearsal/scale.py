"""A spec in miniature: the same step graph (every iteration, relabel, final model, production grid
point and analysis), on a few ion pairs, with short runs, tiny models and a fast stand-in reference.

Everything geometric scales together with the box: with ``f`` the ratio of ion pairs and
``s = f^(1/3)`` the ratio of box lengths at the same density, cell lengths of box ramps and their
amplitudes, model cutoffs, D3 cutoffs and analysis cutoffs are multiplied by ``s``, so every ratio
the full-scale run depends on (an RDF's r_max to its box, a model's cutoff to the box JAX MD needs)
stays as it is. Counts of frames scale by a data factor ``d`` (so the splits, pools and
selections keep their proportions), MD, optimisations and scans are cut short, trainings run a
few epochs of a tiny network, and optimisations and trainings checkpoint often, so their
resumption code runs too. The reference becomes ``stand_in``, which carries the real method's
dispersion (engine/labels/stand_in.py); an initial MD's driver other than the reference stays
as it is.
Every change is listed, for the rehearsal's report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from ilcampaign.campaign.spec import ApaxModel, CampaignSpec
from ilcampaign.campaign.units import dimension, to_internal

#: the rehearsal's limits (steps are MD steps, counts are frames)
MD_STEPS = 16  # a learning-on-the-fly MD run
MD_FRAMES = 4
PRODUCTION_STEPS = 80  # a production run: enough frames for block statistics and the MSD
PRODUCTION_FRAMES = 40
PRODUCTION_TIMESTEP = 0.025  # fs: a few-epoch model keeps its bonds over 2 fs (over 10 fs it breaks them)
INFERENCE_SIZES = 1
PREPARATION_STEPS = 8  # compression and NVT before a production run
OPTIMISER_STEPS = 4
SCAN_FRAMES = 4
CONFORMERS, BOXES, UNITS = 2, 2, 4
INITIAL_FRAMES = 16  # the initial data's frames scale to about this many
EPOCHS = 2
BATCH, VALID_BATCH = 2, 4
CHECKPOINTS = {"md_steps": 80, "optimisation_steps": 2, "training_epochs": 1}
#: a tiny network on the spec's radial basis (a coarser one let a few-epoch model with a long cutoff
#: pull bonded atoms together)
TINY = {"nn": [8, 8], "n_radial": 2}
#: lengths of molecules and displacements, not of the box: a rehearsal keeps them
MOLECULAR_LENGTHS = {"packmol_tolerance", "tolerance", "r_min", "stdev", "skin"}
INFERENCE_STEPS, INFERENCE_WARMUP = 2, 1


@dataclass
class Miniature:
    """A rehearsal's spec and how it was made: the factors and every change, in words."""

    spec: CampaignSpec
    pairs: int  # formula units of the rehearsal's system box
    real_pairs: int
    real_runs: dict[str, list[int]]  # each production run's system sizes at full scale
    length_factor: float  # s
    data_factor: float  # d
    changes: list[str] = field(default_factory=list)


def miniature(spec: CampaignSpec, pairs: int = 2, stretch: int = 1) -> Miniature:
    """The rehearsal of ``spec`` on ``pairs`` formula units (see the module docstring); ``stretch``
    multiplies its MD, optimiser and training lengths (a larger rehearsal, to check a forecast)."""
    units = spec.formula_unit()
    real_pairs = spec.system.ions[0].count // units[0]
    if pairs > real_pairs:
        pairs = real_pairs
    f = pairs / real_pairs
    s = f ** (1 / 3)
    d = min(1.0, INITIAL_FRAMES / _initial_frames(spec))
    data = spec.model_dump(mode="json")
    scaler = _Scaler(s, d, f, pairs, data, stretch)
    scaler.apply(spec)
    real_runs = {name: list(run.ion_pairs) for name, run in spec.production.runs.items()}
    return Miniature(CampaignSpec.model_validate(data), pairs, real_pairs, real_runs, s, d, scaler.changes)


def _initial_frames(spec: CampaignSpec) -> int:
    section = spec.initial_data
    if section.kind == "md":
        return max(1, section.n_steps // section.interval)
    if section.kind == "rattle":
        return section.n_frames
    return section.max_frames or INITIAL_FRAMES


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models inside an annotation (through Optional, list, Annotated)."""
    from typing import get_args

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in _models(arg)]


def _same_quantity(a: str, b: str) -> bool:
    """Whether two quantity strings ("0.0 fs", "0 fs") hold the same number in the same unit."""
    try:
        (x, unit_a), (y, unit_b) = a.split(maxsplit=1), b.split(maxsplit=1)
        return unit_a == unit_b and float(x) == float(y)
    except ValueError:
        return False


def _length(value: Any) -> float:
    return to_internal(value, "length")


def _time(value: Any) -> float:
    return to_internal(value, "time")


class _Scaler:
    """Edits the JSON form of a spec in place and records each edit."""

    def __init__(self, s: float, d: float, f: float, pairs: int, data: dict[str, Any], stretch: int):
        self.s, self.d, self.f, self.pairs, self.data, self.stretch = s, d, f, pairs, data, stretch
        self.changes: list[str] = []

    # ------------------------------------------------------------------ helpers
    def note(self, where: str, old: Any, new: Any, why: str = "") -> None:
        if old != new and not (isinstance(old, str) and isinstance(new, str) and _same_quantity(old, new)):
            self.changes.append(f"{where}: {old} -> {new}" + (f" ({why})" if why else ""))

    def set(self, node: dict, key: str, value: Any, where: str, why: str = "") -> None:
        self.note(where, node.get(key), value, why)
        node[key] = value

    def shorter(self, node: dict, key: str, limit: int, where: str, why: str = "") -> None:
        if node.get(key) is not None and node[key] > limit:
            self.set(node, key, limit, where, why)

    def lengths(self, model: BaseModel, node: dict, where: str) -> None:
        """Every length of a section and of the sections in it that belongs to the box, x s (a
        length field is found by its quantity type; MOLECULAR_LENGTHS keep their value)."""
        for name, info in type(model).model_fields.items():
            value, path = getattr(model, name), f"{where}.{name}"
            if value is None or name not in node:
                continue
            if dimension(info) == "length" and name not in MOLECULAR_LENGTHS:
                scaled = [v * self.s for v in value] if isinstance(value, list) else value * self.s
                self.set(node, name, [f"{v:.6g} A" for v in scaled] if isinstance(value, list) else f"{scaled:.6g} A",
                         path, "x box length factor")
            elif isinstance(value, BaseModel):
                self.lengths(value, node[name], path)
            elif isinstance(value, (list, tuple)):
                for index, item in enumerate(value):
                    if isinstance(item, BaseModel):
                        self.lengths(item, node[name][index], f"{path}[{index}]")
            elif isinstance(value, dict):
                for key, item in value.items():
                    if isinstance(item, BaseModel):
                        self.lengths(item, node[name][key], f"{path}.{key}")

    def override_lengths(self, section: type[BaseModel], override: dict, where: str) -> None:
        """The lengths in a partial section (an override of ``section``), as ``lengths`` does."""
        for name, value in override.items():
            info = section.model_fields.get(name)
            if info is None or value is None:
                continue
            if dimension(info) == "length" and name not in MOLECULAR_LENGTHS:
                self.set(override, name, f"{_length(value) * self.s:.6g} A", f"{where}.{name}", "x box length factor")
            elif isinstance(value, dict):
                inner = next((m for m in _models(info.annotation)), None)
                if inner is not None:
                    self.override_lengths(inner, value, f"{where}.{name}")

    def count(self, n: int | None) -> int | None:
        """A frame count times the data factor, at least one where it was."""
        return None if n is None else 0 if n == 0 else max(1, math.ceil(n * self.d))

    def run(self, node: dict, steps: int, frames: int, where: str) -> None:
        """An MD section (``n_steps``, ``interval``) cut to ``steps`` steps and at most ``frames`` frames."""
        n_steps = min(node["n_steps"], steps)
        kept = max(1, min(frames, node["n_steps"] // node["interval"]))
        interval = max(1, n_steps // kept)
        self.set(node, "n_steps", interval * kept, f"{where}.n_steps", "a short run")
        self.set(node, "interval", interval, f"{where}.interval")

    def model(self, node: dict, where: str) -> None:
        """A model section, or a partial one: a tiny network, a few epochs, small batches, cutoffs x s."""
        for key, value in TINY.items():
            if key in node or where == "model":
                self.set(node, key, value, f"{where}.{key}", "a tiny network")
        if "zbl" in node or where == "model":
            self.set(node, "zbl", True, f"{where}.zbl", "a few-epoch network has learnt no repulsion: ZBL keeps "
                     "bonded atoms apart")
        if where != "model":  # the model section itself was scaled with the rest of the spec
            self.override_lengths(ApaxModel, node, where)
        if node.get("r_min") is not None and node.get("r_max") is not None and _length(node["r_min"]) >= _length(node["r_max"]):
            self.set(node, "r_min", f"{_length(node['r_max']) / 2:.6g} A", f"{where}.r_min", "below the scaled r_max")
        for key, limit in (("epochs", EPOCHS * self.stretch), ("batch_size", BATCH), ("valid_batch_size", VALID_BATCH),
                           ("patience", EPOCHS * self.stretch)):
            self.shorter(node, key, limit, f"{where}.{key}")

    def reference(self, section: dict, where: str) -> dict:
        """A reference section (or partial override) as the stand-in's, under mirrors (its lengths
        were scaled with the rest of the spec, or are scaled here for an override)."""
        if where != "reference":
            self.override_lengths(self.method, section, where)
        return {"mirrors": section}

    # ------------------------------------------------------------------ sections
    def apply(self, spec: CampaignSpec) -> None:
        data, units = self.data, spec.formula_unit()
        self.method = type(spec.reference)
        self.lengths(spec, data, "spec")
        self.set(data["campaign"], "name", f"{spec.campaign.name}-rehearsal", "campaign.name", "its own work directory")
        for ion, unit in zip(data["system"]["ions"], units):
            self.set(ion, "count", unit * self.pairs, f"system.ions.{ion['name']}.count",
                     f"{self.pairs} formula units, f = {self.f:.3g}, box lengths x s = {self.s:.3g}")
        real = data["reference"]
        data["reference"] = {"kind": "stand_in", **self.reference(real, "reference"),
                             "ions": [ion["smiles"] for ion in data["system"]["ions"]]}
        self.changes.append(f"reference: {real['kind']} -> stand_in (the same dispersion in its labels)")
        data["failures"]["retry_with"] = [self.reference(r, "failures.retry_with")
                                          for r in data["failures"]["retry_with"] or []]
        self.initial(data)
        self.model(data["model"], "model")
        for key, value in CHECKPOINTS.items():
            self.set(data["checkpoints"], key, value, f"checkpoints.{key}", "chunked resumption runs too")
        if data["execution"]["kind"] != "local":
            self.set(data, "execution", {"kind": "local", "workers": 1}, "execution", "a rehearsal runs here")
        for index, iteration in enumerate(data["sampling"]):
            self.iteration(iteration, f"sampling[{index}]")
        for final in data["final_models"]:
            where = f"final_models.{final['name']}"
            self.model(final["model"], f"{where}.model")
            if final.get("relabel"):
                final["relabel"] = self.reference(final["relabel"], f"{where}.relabel")
        for name, run in data["production"]["runs"].items():
            self.production(run, f"production.runs.{name}")
        for name, analysis in data["analyses"].items():
            self.analysis(analysis, f"analyses.{name}")

    def initial(self, data: dict) -> None:
        section, split = data["initial_data"], data["initial_split"]
        if section["kind"] == "md":
            if section.get("driver", "reference") != "reference":  # the driver is no reference: it stays
                self.changes.append(f"initial_data.driver: {section['driver']['kind']} as in the spec (the "
                                    "stand-in labels its kept frames)")
            frames = self.count(section["n_steps"] // section["interval"])
            interval = min(section["interval"], 2)
            self.set(section, "interval", interval, "initial_data.interval")
            self.set(section, "n_steps", frames * interval, "initial_data.n_steps", f"{frames} frames, x d = {self.d:.3g}")
        elif section["kind"] == "rattle":
            self.set(section, "n_frames", self.count(section["n_frames"]), "initial_data.n_frames", "x d")
        elif section.get("max_frames"):
            self.set(section, "max_frames", self.count(section["max_frames"]), "initial_data.max_frames", "x d")
        for key in ("n_test", "n_valid", "n_train"):
            self.set(split, key, self.count(split[key]), f"initial_split.{key}", "x d")

    def iteration(self, iteration: dict, where: str) -> None:
        self.model(iteration.get("model") or {}, f"{where}.model")
        if iteration.get("relabel"):
            iteration["relabel"]["reference"] = self.reference(iteration["relabel"]["reference"], f"{where}.relabel")
            return
        for name, sampler in (iteration.get("samplers") or {}).items():
            self.sampler(sampler, f"{where}.samplers.{name}")
        for index, rule in enumerate(iteration.get("selection") or []):
            if rule["kind"] != "all":
                self.set(rule, "n", self.count(rule["n"]), f"{where}.selection[{index}].n", "x d")

    def sampler(self, sampler: dict, where: str) -> None:
        kind = sampler["kind"]
        if kind == "md":
            self.run(sampler, MD_STEPS * self.stretch, MD_FRAMES, where)
        elif kind == "geometry_optimisation":
            self.shorter(sampler, "max_steps", OPTIMISER_STEPS * self.stretch, f"{where}.max_steps")
        elif kind == "volume_scan":
            self.shorter(sampler, "n_frames", SCAN_FRAMES, f"{where}.n_frames")
            if sampler.get("optimise"):
                self.shorter(sampler["optimise"], "max_steps", OPTIMISER_STEPS * self.stretch, f"{where}.optimise.max_steps")
        elif kind == "conformers":
            self.shorter(sampler, "n_conformers", CONFORMERS, f"{where}.n_conformers")
            self.shorter(sampler, "n_boxes", BOXES, f"{where}.n_boxes")
            self.shorter(sampler, "n_units", UNITS, f"{where}.n_units")
        start = sampler.get("start") or {}
        for key in ("first", "last"):
            self.shorter(start, key, BOXES, f"{where}.start.{key}", "the conformer boxes there are")

    def production(self, run: dict, where: str) -> None:
        sizes, taken = [], set()
        for n in run["ion_pairs"]:
            size = max(1, math.ceil(n * self.f))
            while size in taken:  # sizes stay distinct: a finite-size fit keeps its points
                size += 1
            taken.add(size)
            sizes.append(size)
        self.set(run, "ion_pairs", sizes, f"{where}.ion_pairs", "x f, distinct")
        n_steps = round(_time(run["length"]) / _time(run["timestep"]))
        timestep = min(_time(run["timestep"]), PRODUCTION_TIMESTEP)
        self.set(run, "timestep", f"{timestep:g} fs", f"{where}.timestep",
                 "a few-epoch model keeps its bonds over 2 fs, not over 10 fs")
        kept = min(n_steps // run["interval"], PRODUCTION_FRAMES)
        interval = max(1, min(n_steps, PRODUCTION_STEPS * self.stretch) // kept)
        fraction = _time(run["equilibration"]) / _time(run["length"])
        length = interval * kept * timestep
        self.set(run, "length", f"{length:g} fs", f"{where}.length", "a short run")
        self.set(run, "interval", interval, f"{where}.interval")
        equilibration = round(fraction * interval * kept) * timestep
        self.set(run, "equilibration", f"{min(equilibration, length - timestep):g} fs", f"{where}.equilibration",
                 "the same fraction of the run")
        box = run["box"]
        steps = PREPARATION_STEPS * self.stretch
        self.shorter(box, "compress_steps", steps, f"{where}.box.compress_steps")
        if box.get("nvt") is not None and _time(box["nvt"]) > steps * timestep:
            self.set(box, "nvt", f"{steps * timestep:g} fs", f"{where}.box.nvt", "a short run")
        if box.get("optimise"):
            self.shorter(box["optimise"], "max_steps", OPTIMISER_STEPS * self.stretch, f"{where}.box.optimise.max_steps")

    def analysis(self, analysis: dict, where: str) -> None:
        if analysis["kind"] == "inference_cost":
            sizes = sorted({self.pairs * max(1, math.ceil(n * self.f / self.pairs)) for n in analysis["ion_pairs"]})
            self.set(analysis, "ion_pairs", sizes[:INFERENCE_SIZES], f"{where}.ion_pairs",
                     f"x f, whole copies of the box, the smallest {INFERENCE_SIZES}")
            self.set(analysis, "n_steps", INFERENCE_STEPS, f"{where}.n_steps")
            self.set(analysis, "warmup", INFERENCE_WARMUP, f"{where}.warmup")
