"""The whole spec: every section, and what follows from them together (the stages of the
schedule, each with its reference method, its models and the dispersion of its labels)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce
from math import gcd

from pydantic import Field, field_validator, model_validator

from ilcampaign.campaign.spec.analyses import Analysis
from ilcampaign.campaign.spec.analyses.common import ModelAnalysisSettings, RunAnalysisSettings
from ilcampaign.campaign.spec.base import Problem, Section, brief, with_overrides
from ilcampaign.campaign.spec.campaign_info import CampaignInfo
from ilcampaign.campaign.spec.checkpoints import Checkpoints
from ilcampaign.campaign.spec.d3 import DispersionCorrection
from ilcampaign.campaign.spec.execution import Execution, LocalExecution
from ilcampaign.campaign.spec.failures import Failures
from ilcampaign.campaign.spec.final_models import FinalModel
from ilcampaign.campaign.spec.guards import Guards
from ilcampaign.campaign.spec.initial_data import InitialData, InitialMD, InitialSplit
from ilcampaign.campaign.spec.model import ApaxModel
from ilcampaign.campaign.spec.production import Production
from ilcampaign.campaign.spec.reference import Reference, dispersion
from ilcampaign.campaign.spec.reference.cp2k import CP2K
from ilcampaign.campaign.spec.reference.xtb import XTB
from ilcampaign.campaign.spec.reference_data import ReferenceData
from ilcampaign.campaign.spec.samplers.md import runs_in_jax_md
from ilcampaign.campaign.spec.sampling import (
    Iteration,
    Planned,
    expand,
    inherit_iterations,
)
from ilcampaign.campaign.spec.system import System

RESERVED_NAMES = ("initial", "initial_data", "molecules", "pack", "final", "label", "dataset", "train", "last",
                  "all", "production", "analysis")


@dataclass(frozen=True)
class Stage:
    """One iteration as it runs: the reference labelling its new frames (or relabelling the
    dataset), the model its samplers use, the model it trains, and the dispersion its labels hold."""

    planned: Planned
    reference: XTB | CP2K
    sampling_model: ApaxModel
    model: ApaxModel
    dispersion: tuple[str, ...]


@dataclass(frozen=True)
class FinalStage:
    """A final model: the reference of its labels, how D3 is shifted, its model and dispersion."""

    final: FinalModel
    index: int
    reference: XTB | CP2K
    d3: DispersionCorrection | None  # the torch-dftd term added or removed
    model: ApaxModel
    dispersion: tuple[str, ...]


class CampaignSpec(Section):
    """A whole study: system, reference method, initial data, the LotF schedule and final models."""

    campaign: CampaignInfo
    system: System
    reference: Reference = Field(default_factory=XTB)
    initial_data: InitialData = Field(default_factory=InitialMD)
    initial_split: InitialSplit = Field(default_factory=InitialSplit)
    failures: Failures = Field(default_factory=Failures)
    model: ApaxModel = Field(default_factory=ApaxModel)
    d3: DispersionCorrection = Field(default_factory=DispersionCorrection)
    sampling: list[Iteration] = Field(default_factory=list, description="the LotF schedule, in order")
    final_models: list[FinalModel] = Field(default_factory=list, description="trained on the final dataset")
    checkpoints: Checkpoints = Field(default_factory=Checkpoints)
    execution: Execution = Field(default_factory=LocalExecution)
    guards: Guards = Field(default_factory=Guards)
    production: Production = Field(default_factory=Production)
    analyses: dict[str, Analysis] = Field(default_factory=dict, description="named analyses, one step each")
    references: dict[str, ReferenceData] = Field(default_factory=dict, description="reference data by name")

    @field_validator("sampling", mode="before")
    @classmethod
    def _inherit(cls, value):
        return inherit_iterations(value)

    @model_validator(mode="after")
    def _fill_retries(self) -> CampaignSpec:
        if self.failures.retry_with is None:
            self.failures.retry_with = [dict(r) for r in type(self.reference).default_retries]
        for index, override in enumerate(self.failures.retry_with):
            if "kind" in override:
                raise ValueError(f"failures.retry_with[{index}] must not change the reference kind")
            try:
                with_overrides(self.reference, override)
            except ValueError as exc:
                raise ValueError(f"failures.retry_with[{index}] is not a valid {self.reference.kind} override: {brief(exc)}")
        return self

    @model_validator(mode="after")
    def _check_overrides(self) -> CampaignSpec:
        for index, it in enumerate(self.sampling):
            try:
                with_overrides(self.model, it.model)
            except ValueError as exc:
                raise ValueError(f"sampling[{index}].model is not a valid override of the model section: {brief(exc)}")
            if it.relabel is not None:
                if "kind" in it.relabel.reference:
                    raise ValueError(f"sampling[{index}].relabel.reference must not change the reference kind")
                try:
                    with_overrides(self.reference, it.relabel.reference)
                except ValueError as exc:
                    raise ValueError(f"sampling[{index}].relabel.reference is not a valid {self.reference.kind} "
                                     f"override: {brief(exc)}")
        return self

    @model_validator(mode="after")
    def _check_initial_pool(self) -> CampaignSpec:
        for index, it in enumerate(self.sampling):
            if any(s.kind == "initial_pool" for s in it.samplers.values()) and self.initial_split.n_train is None:
                raise ValueError(
                    f"sampling[{index}] has an initial_pool sampler, but the first model is trained on every "
                    "initial frame, so the pool is empty: set initial_split.n_train (and n_valid) to keep a pool"
                )
        return self

    @model_validator(mode="after")
    def _check_final_models(self) -> CampaignSpec:
        names = [final.name for final in self.final_models]
        if len(set(names)) != len(names):
            raise ValueError(f"final_models names must be unique, got {names}")
        for index, final in enumerate(self.final_models):
            try:
                with_overrides(self.model, final.model)
                with_overrides(self.reference, final.relabel)
            except ValueError as exc:
                raise ValueError(f"final_models[{index}] ({final.name}): {brief(exc)}")
        return self

    # ------------------------------------------------------------- what follows from the sections
    def retry_references(self, reference: XTB | CP2K | None = None) -> list[XTB | CP2K]:
        """``reference`` (default: the spec's) with each retry override applied, in order."""
        reference = reference or self.reference
        return [with_overrides(reference, override) for override in self.failures.retry_with or []]

    def stages(self) -> list[Stage]:
        """Every iteration in order (``repeat`` expanded) with its reference, models and dispersion."""
        reference, model = self.reference, self.model
        labels = dispersion(reference)
        stages = []
        for planned in expand(self.sampling):
            it = planned.iteration
            sampling_model = model
            if it.relabel is not None:
                reference = with_overrides(reference, it.relabel.reference)
                labels = dispersion(reference)
            model = with_overrides(self.model, it.model)
            stages.append(Stage(planned, reference, sampling_model, model, labels))
        return stages

    def final_stages(self) -> list[FinalStage]:
        """Each final model with the reference of its labels, its D3 shift and the result's dispersion."""
        stages = self.stages()
        reference = stages[-1].reference if stages else self.reference
        finals = []
        for index, final in enumerate(self.final_models):
            labelled_by = with_overrides(reference, final.relabel)
            labels = list(dispersion(labelled_by))
            d3 = None
            if final.d3 != "keep":
                cutoff = final.d3_cutoff
                d3 = self.d3 if cutoff is None else self.d3.model_copy(update={"cutoff": cutoff, "cn_cutoff": cutoff})
                if final.d3 == "add":
                    labels.append(d3.describe())
                else:
                    labels = [term for term in labels if "D3" not in term]
            finals.append(FinalStage(final, index, labelled_by, d3, with_overrides(self.model, final.model),
                                     tuple(labels)))
        return finals

    def problems(self) -> list[Problem]:
        """What is wrong across sections (located), beyond what each section checks itself."""
        return [*self._name_problems(), *self._start_problems(), *self._model_problems(), *self._dispersion_problems(),
                *self._production_problems(), *self._mts_problems(), *self._analysis_problems(),
                *self._driver_problems()]

    def _driver_problems(self) -> list[Problem]:
        """A driver with the reference's own settings computes every kept frame twice."""
        section = self.initial_data
        driver = getattr(section, "driver", "reference")
        if driver == "reference" or driver.model_dump(exclude={"threads"}) != self.reference.model_dump(
                exclude={"threads"}):
            return []
        return [Problem(("initial_data", "driver"), "the driver is the reference itself: the kept frames would be "
                        "computed twice", "write `driver: reference`: its MD labels the kept frames at no extra "
                        "cost", warning=True)]

    def formula_unit(self) -> list[int]:
        """Ions per formula unit (the smallest neutral set): the system's counts over their gcd."""
        divisor = reduce(gcd, (ion.count for ion in self.system.ions))
        return [ion.count // divisor for ion in self.system.ions]

    def model_names(self) -> list[str]:
        """Names of the trained models, in training order: ``initial`` (with a schedule), each
        training iteration, ``final.<name>``."""
        if not self.sampling:
            return []
        return ["initial", *(s.planned.name for s in self.stages()), *(f"final.{f.name}" for f in self.final_models)]

    def resolve_models(self, names: list[str]) -> list[str]:
        """``names`` with ``last`` replaced by the last model trained and ``all`` by every model."""
        known = self.model_names()
        resolved = []
        for name in names:
            resolved += known if name == "all" else known[-1:] if name == "last" else [name]
        return list(dict.fromkeys(resolved))

    def _production_problems(self) -> list[Problem]:
        problems, known = [], self.model_names()
        for run_name, run in self.production.runs.items():
            for index, model in enumerate(run.models):
                if model not in (*known, "last", "all"):
                    problems.append(Problem(("production", "runs", run_name, "models", index),
                                            f"no trained model {model!r}",
                                            f"models this spec trains: {', '.join(known) or 'none (no sampling)'}"))
            reference = run.box.density_reference
            if reference is not None and (reference not in self.references
                                          or self.references[reference].quantity != "density"):
                problems.append(Problem(("production", "runs", run_name, "box", "density_reference"),
                                        f"no density entry {reference!r} in references",
                                        f"density entries: {', '.join(n for n, r in self.references.items() if r.quantity == 'density') or 'none'}"))
            if run.hybrid_d3 and run.engine == "jax" and self.d3.damping != "bj":
                problems.append(Problem(("production", "runs", run_name, "engine"),
                                        "JAX MD runs D3 with BJ damping only", "use engine: auto or ase, or damping: bj"))
            if run.hybrid_d3 and run.engine == "jax" and run.ensemble == "npt" and self.d3.tail_correction:
                problems.append(Problem(("production", "runs", run_name, "engine"),
                                        "JAX NPT has no pressure term for the D3 tail correction",
                                        "use engine: auto or ase (ASE's stress has it), or d3.tail_correction: false"))
        return problems

    def _mts_problems(self) -> list[Problem]:
        """``d3.mts_interval`` > 1: every hybrid sampler and production run must go to JAX MD (the only
        engine that integrates D3 every k steps), keep its frames at the ends of D3 cycles and, for a
        run, equilibrate in whole cycles (preparation phases that go through ASE, the compression's
        box ramp, integrate D3 every step)."""
        k = self.d3.mts_interval
        if k == 1:
            return []
        runs = [(("sampling", index, "samplers", name), sampler.runs_in_jax_md(self.d3), sampler.interval)
                for index, it in enumerate(self.sampling) for name, sampler in it.samplers.items()
                if sampler.kind == "md" and sampler.hybrid_d3]
        problems = []
        for name, run in self.production.runs.items():
            if not run.hybrid_d3:
                continue
            where = ("production", "runs", name)
            runs.append((where, runs_in_jax_md(ensemble=run.ensemble, thermostat=run.thermostat, engine=run.engine,
                                               ramped=False, d3=self.d3), run.interval))
            nvt_steps = round(run.box.nvt / run.timestep) if run.box.nvt is not None else 0
            if nvt_steps % k:
                problems.append(Problem((*where, "box", "nvt"), f"its {nvt_steps} NVT steps are not whole cycles of "
                                        f"d3.mts_interval {k} steps", "make box.nvt / timestep a multiple of it"))
        for where, in_jax, interval in runs:
            if not in_jax:
                problems.append(Problem((*where, "engine"), f"d3.mts_interval {k}: multiple time stepping runs in JAX "
                                        "MD only, and this hybrid goes through ASE", (
                                            "JAX MD runs Nose-Hoover NVT at a fixed cell and NPT with engine: jax "
                                            "(D3 with BJ damping, NPT without the tail correction); or set "
                                            "d3.mts_interval: 1")))
            if interval % k:
                problems.append(Problem((*where, "interval"), f"frames are kept at the ends of D3 cycles: interval "
                                        f"{interval} is not a multiple of d3.mts_interval {k}",
                                        "make interval a multiple of it"))
        return problems

    def analysed_runs(self, analysis: RunAnalysisSettings) -> list[str]:
        """The production runs an analysis reads: those it names that exist, else every run."""
        return [run for run in (analysis.runs or self.production.runs) if run in self.production.runs]

    def _analysis_problems(self) -> list[Problem]:
        """The checks every analysis gets (runs, models, ions and reference entries that exist),
        then each analysis' own (``problems`` of its settings class)."""
        problems = []
        ions = {ion.name: ion for ion in self.system.ions}
        runs = self.production.runs
        for name, analysis in self.analyses.items():
            where = ("analyses", name)
            if isinstance(analysis, RunAnalysisSettings):
                for index, run in enumerate(analysis.runs or []):
                    if run not in runs:
                        problems.append(Problem((*where, "runs", index), f"no production run {run!r}",
                                                f"runs: {', '.join(runs) or 'none'}"))
                if not self.analysed_runs(analysis):
                    problems.append(Problem(where, f"a {analysis.kind} analysis needs production runs",
                                            "add production.runs, or name existing ones in runs"))
            if isinstance(analysis, ModelAnalysisSettings):
                for index, model in enumerate(analysis.models):
                    if model not in (*self.model_names(), "last", "all"):
                        problems.append(Problem((*where, "models", index), f"no trained model {model!r}",
                                                f"models: {', '.join(self.model_names())}"))
            for site in analysis.used_sites():
                if site.ion not in ions:
                    problems.append(Problem(where, f"no ion {site.ion!r} in system.ions", f"ions: {', '.join(ions)}"))
            reference = getattr(analysis, "reference", None)
            if reference is not None:
                if reference not in self.references:
                    problems.append(Problem((*where, "reference"), f"no references entry {reference!r}",
                                            f"entries: {', '.join(self.references) or 'none'}"))
                elif self.references[reference].quantity != analysis.kind:
                    problems.append(Problem((*where, "reference"), f"references.{reference} holds "
                                            f"{self.references[reference].quantity}, not {analysis.kind}"))
            problems += analysis.problems(self, where)
        return problems

    def _name_problems(self) -> list[Problem]:
        problems, seen = [], {}
        for planned in expand(self.sampling):
            where = ("sampling", planned.index, "name")
            if planned.name in RESERVED_NAMES:
                problems.append(Problem(where, f"the iteration name {planned.name!r} is reserved for other steps",
                                        "choose another name"))
            elif planned.name in seen and seen[planned.name] != planned.index:
                problems.append(Problem(where, f"two iterations are named {planned.name!r} (the other is "
                                        f"sampling[{seen[planned.name]}])", "names, after repeat, must be unique"))
            seen.setdefault(planned.name, planned.index)
        return problems

    def _start_problems(self) -> list[Problem]:
        """Every ``start.step`` names an earlier step that makes structures."""
        problems = []
        starts = ["initial_data"]  # earlier steps with end structures, in order
        for planned in expand(self.sampling):
            for name, sampler in planned.iteration.samplers.items():
                start = getattr(sampler, "start", None)
                if start is not None and start.step is not None and start.step not in starts:
                    problems.append(Problem(
                        ("sampling", planned.index, "samplers", name, "start"),
                        f"start: no earlier step {start.step!r} makes structures to start from",
                        f"steps before this one that do: {', '.join(sorted(starts))}"))
                if sampler.provides_starts:
                    starts.append(f"{planned.name}.{name}")
        return problems

    def _model_problems(self) -> list[Problem]:
        """An uncertainty stop needs an ensemble."""
        problems = []
        for stage in self.stages():
            for name, sampler in stage.planned.iteration.samplers.items():
                if sampler.kind == "md" and sampler.uncertainty_threshold is not None \
                        and stage.sampling_model.ensemble is None:
                    problems.append(Problem(
                        ("sampling", stage.planned.index, "samplers", name, "uncertainty_threshold"),
                        "the model this sampler runs is a single model (ensemble: null), which has no force "
                        "uncertainty to stop on",
                        "set uncertainty_threshold: null, or train an ensemble in the iteration before"))
        return problems

    def _dispersion_problems(self) -> list[Problem]:
        """Dispersion counted twice: a hybrid (MLP + D3) sampler or a final model adding D3 on
        labels that already contain dispersion; or removing D3 that is not there."""
        problems = []
        for stage in self.stages():  # a sampling stage's model was trained on labels like its new ones
            for name, sampler in stage.planned.iteration.samplers.items():
                if sampler.kind == "md" and sampler.hybrid_d3 and stage.dispersion:
                    problems.append(Problem(
                        ("sampling", stage.planned.index, "samplers", name, "hybrid_d3"),
                        f"dispersion would be counted twice: the model of this hybrid (model + torch-dftd D3) "
                        f"sampler was trained on labels that contain {' and '.join(stage.dispersion)}",
                        "relabel the dataset without dispersion first (an iteration with "
                        "`relabel: {reference: {d3: null}}`), or set hybrid_d3: false"))
        labels = self.stages()[-1].dispersion if self.sampling else dispersion(self.reference)
        for final in self.final_stages():
            relabelled = dispersion(final.reference) if final.final.relabel is not None else labels
            if final.final.d3 == "add" and relabelled:
                problems.append(Problem(
                    ("final_models", final.index, "d3"),
                    f"dispersion would be counted twice: the labels of final model {final.final.name!r} already "
                    f"contain {' and '.join(relabelled)}",
                    "relabel without dispersion first (`relabel: {d3: null}`), or use d3: keep"))
            if final.final.d3 == "remove" and not any("D3" in term for term in relabelled):
                problems.append(Problem(
                    ("final_models", final.index, "d3"),
                    f"there is no D3 to remove from the labels of final model {final.final.name!r} "
                    f"(they contain {' and '.join(relabelled) or 'no dispersion'})",
                    "use d3: keep, or d3: add"))
        return problems
