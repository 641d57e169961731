"""What the analysis step kinds share: one task per analysed production run (its input slot
``run000``, ...), each writing a dataset, then a finish that combines them (fits across
temperatures and sizes, comparison with reference data) into ``result.nc``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from ilcampaign.campaign.spec import ModelAnalysisSettings, RunAnalysisSettings
from ilcampaign.engine.analysis.reference_data import ReferenceTable
from ilcampaign.engine.hashing import hashed_as_fields
from ilcampaign.engine.step import Step, StepContext, TaskResult, Work, WorkFacts, without_timings

if TYPE_CHECKING:
    from ilcampaign.campaign.spec import CampaignSpec

RESULT = "result.nc"


class RunFacts(BaseModel):
    """What an analysis needs to know of a production run it reads (from the spec, not the run)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    run: str
    model: str
    temperature_K: float
    ion_pairs: int
    replica: int
    ensemble: str
    equilibration_fs: float


def run_slot(index: int) -> str:
    return f"run{index:03d}"


class RunAnalysisStep(Step):
    """Base of the analyses over production runs; subclasses declare their ``settings`` (the spec
    entry, hashed as the step's own fields) and define ``analyse`` and ``combine``."""

    inputs: ClassVar[tuple[str, ...] | None] = None  # run000, run001, ...
    settings: RunAnalysisSettings = hashed_as_fields(omit=("kind", "runs", "reference"))
    runs: list[RunFacts]
    reference: ReferenceTable | None = None

    @classmethod
    def from_analysis(cls, spec: CampaignSpec, settings: RunAnalysisSettings, runs: list[RunFacts],
                      reference: ReferenceTable | None) -> RunAnalysisStep:
        """The step of a spec entry over ``runs``; where it reads sites, with the ions' SMILES."""
        ions = {"ions": {ion.name: ion.smiles for ion in spec.system.ions}} if "ions" in cls.model_fields else {}
        return cls(settings=settings, runs=runs, reference=reference, **ions)

    def expected_tasks(self) -> int:
        return len(self.runs)

    def work(self, facts: WorkFacts) -> Work:
        """The frames of the runs it reads, times their atoms (an analysis passes over each frame)."""
        return Work("frames x atoms", facts.trajectory or 0)

    def tasks(self, ctx: StepContext) -> list[str]:
        done = ctx.done_tasks()
        return [run_slot(i) for i in range(len(self.runs)) if run_slot(i) not in done]

    def run_task(self, ctx: StepContext, task_id: str) -> TaskResult:
        from ilcampaign.archive.arrays import write_dataset

        facts = self.runs[int(task_id[3:])]
        ds = self.analyse(ctx, task_id, facts)
        ds.attrs.update(run=facts.name, input_key=ctx.inputs[task_id])
        write_dataset(ctx.archive.task_file(ctx.key, task_id, ".nc"), ds)
        return TaskResult(summary={"run": facts.name})

    def finish(self, ctx: StepContext) -> tuple[list[str], dict[str, Any]]:
        import json

        from ilcampaign.archive.arrays import read_dataset, write_dataset

        per_run = {facts.name: read_dataset(ctx.archive.task_file(ctx.key, run_slot(i), ".nc"))
                   for i, facts in enumerate(self.runs)}
        for one in per_run.values():
            for attribute in ("run", "input_key"):
                one.attrs.pop(attribute, None)
        ds, summary = self.combine(ctx, per_run)
        ds.attrs["input_steps"] = json.dumps({facts.name: ctx.inputs[run_slot(i)] for i, facts in enumerate(self.runs)})
        write_dataset(ctx.out_dir / RESULT, ds)
        return [RESULT], summary

    def trajectory(self, ctx: StepContext, slot: str, facts: RunFacts):
        """The production run's trajectory (ilcampaign.engine.analysis.Trajectory, frame times from the run's
        frame interval) and the first frame after its equilibration."""
        from ilcampaign.engine.analysis.trajectory import Trajectory
        from ilcampaign.engine.steps.production import TRAJECTORY

        interval = ctx.input_record(slot)["summary"]["frame_interval_fs"]
        traj = Trajectory(ctx.archive.output(ctx.inputs[slot], TRAJECTORY), timestep_fs=interval)
        return traj, int(facts.equilibration_fs // interval)

    def analyse(self, ctx: StepContext, slot: str, facts: RunFacts) -> Any:
        """One run's result as an xarray.Dataset (units on every variable)."""
        raise NotImplementedError

    def combine(self, ctx: StepContext, per_run: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """All runs' results in one dataset, and the step's summary (comparisons included)."""
        raise NotImplementedError


def resolve_sites(traj: Any, ions: dict[str, str], site: Any) -> Any:
    """The points of a spec ``Site`` in a trajectory (ilcampaign.engine.analysis.sites.Sites): the molecules of
    its ion (matched by the SMILES' atoms in order), their atoms of one element, or centres of mass.
    StepFailed when the trajectory has no such molecules."""
    import numpy as np

    from ilcampaign.engine.analysis.sites import Sites, element_groups, molecules, of_species
    from ilcampaign.engine.structures.guards import template
    from ilcampaign.engine.step import StepFailed

    if traj.mol_ids is None:
        raise StepFailed("the trajectory has no molecule ids (mol_id): species cannot be told apart")
    found = of_species(molecules(traj.mol_ids, traj.numbers), template(ions[site.ion]).symbols)
    if not found:
        raise StepFailed(f"no {site.ion} molecule in the trajectory")
    groups = element_groups(found, site.element) if site.element else [m.atoms for m in found]
    if site.centre:
        return Sites.centres_of_mass(groups, traj.masses)
    return Sites.atoms(np.concatenate(groups))


class ModelAnalysisStep(Step):
    """Base of the analyses over trained models (input slots ``model000``, ...): one task per model,
    each writing ``<prefix>.<model>.nc``; subclasses declare their ``settings`` and define
    ``run_task`` and ``prefix``."""

    inputs: ClassVar[tuple[str, ...] | None] = None
    prefix: ClassVar[str]
    settings: ModelAnalysisSettings = hashed_as_fields(omit=("kind", "models"))
    models: list[str]  # the settings' names resolved (``last``, ``all``)

    @classmethod
    def from_analysis(cls, spec: CampaignSpec, settings: ModelAnalysisSettings) -> ModelAnalysisStep:
        return cls(settings=settings, models=spec.resolve_models(settings.models))

    def wiring(self, trained: dict[str, tuple[str, str]]) -> dict[str, str]:
        """Input slots: ``model<i>`` is the train step of model i (``trained``: model name -> its
        train step and the dataset step it was trained on); subclasses add what else they read."""
        return {f"model{index:03d}": trained[model][0] for index, model in enumerate(self.models)}

    def expected_tasks(self) -> int:
        return len(self.models)

    def tasks(self, ctx: StepContext) -> list[str]:
        done = ctx.done_tasks()
        return [f"{i:03d}" for i in range(len(self.models)) if f"{i:03d}" not in done]

    def finish(self, ctx: StepContext) -> tuple[list[str], dict[str, Any]]:
        from ilcampaign.archive.atomic import atomic_copy

        done = ctx.done_tasks()
        outputs = []
        for i, name in enumerate(self.models):
            outputs.append(f"{self.prefix}.{name}.nc")
            atomic_copy(ctx.archive.task_file(ctx.key, f"{i:03d}", ".nc"), ctx.out_dir / outputs[-1])
        return outputs, {"models": [without_timings(done[f"{i:03d}"]) for i in range(len(self.models))]}
