"""``inference_cost``: seconds per MD step against system size for each model path (our JAX MD,
ASE, ASE + torch-dftd D3 at each cutoff), on the system's box replicated to each size, one task
per model. Timings depend on the machine: the record keeps its devices and thread counts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from ilcampaign.campaign.spec import DispersionCorrection, InferenceCostSettings
from ilcampaign.engine.analysis.inference_cost import D3_PATHS, timed_runs
from ilcampaign.engine.hashing import hashed_as_fields, hashed_without
from ilcampaign.engine.step import GPU_TASK, StepContext, TaskResult, Work, WorkFacts, register
from ilcampaign.engine.steps.analysis import ModelAnalysisStep

if TYPE_CHECKING:
    from ilcampaign.campaign.spec import CampaignSpec


def replication(factor: int) -> tuple[int, int, int]:
    """The most cubic (a, b, c) with a * b * c = ``factor``."""
    triples = [(a, b, factor // (a * b)) for a in range(1, factor + 1) if factor % a == 0
               for b in range(1, factor // a + 1) if (factor // a) % b == 0]
    return min(triples, key=lambda t: (max(t) / min(t), t))


@register
class InferenceCostStep(ModelAnalysisStep):
    """Inputs: ``box`` (the system's packed box) and ``model000``, ``model001`` ..."""

    kind: ClassVar[str] = "inference_cost"
    version: ClassVar[int] = 1
    prefix: ClassVar[str] = "cost"
    exclusive: ClassVar[bool] = True  # timings: nothing else may run meanwhile, its tasks one at a time

    settings: InferenceCostSettings = hashed_as_fields(omit=("kind", "models"))
    box_pairs: int  # formula units in the input box
    d3: DispersionCorrection = hashed_without("mts_interval", "mts_split")  # its JAX path times exact integration

    @classmethod
    def from_analysis(cls, spec: CampaignSpec, settings: InferenceCostSettings) -> InferenceCostStep:
        return cls(settings=settings, models=spec.resolve_models(settings.models), d3=spec.d3,
                   box_pairs=spec.system.ions[0].count // spec.formula_unit()[0])

    def wiring(self, trained: dict[str, tuple[str, str]]) -> dict[str, str]:
        return {**super().wiring(trained), "box": "pack"}

    def task_resources(self) -> dict[str, Any]:
        return dict(GPU_TASK)

    def d3_cutoffs(self) -> list[float]:
        """The D3 cutoffs timed: the settings' where a D3 path is timed, else none."""
        return list(self.settings.d3_cutoffs) if set(D3_PATHS) & set(self.settings.paths) else []

    def work(self, facts: WorkFacts) -> Work:
        """The MD steps it times (warm-up included) times their atoms: each model through each path
        (a D3 path at each cutoff) at each size, ``facts.atoms`` being the packed box's."""
        runs = len(timed_runs(self.settings.paths, self.d3_cutoffs()))
        atoms = sum(facts.atoms * n // self.box_pairs for n in self.settings.ion_pairs)
        return Work("MD steps x atoms", len(self.models) * runs * (self.settings.n_steps + self.settings.warmup) * atoms)

    def run_task(self, ctx: StepContext, task_id: str) -> TaskResult:
        from ilcampaign.archive.arrays import write_dataset
        from ilcampaign.engine.analysis.inference_cost import inference_cost

        (box,) = ctx.input_frames("box")
        box.calc = None
        repeats = [replication(n // self.box_pairs) for n in self.settings.ion_pairs]
        ds = inference_cost(ctx.model_dir(f"model{task_id}"), box, repeats=repeats, paths=self.settings.paths,
                            d3=self.d3, d3_cutoffs=self.d3_cutoffs(), n_steps=self.settings.n_steps, warmup=self.settings.warmup,
                            cache_dir=ctx.jax_cache)
        ds.attrs.update(model=self.models[int(task_id)], model_step=ctx.inputs[f"model{task_id}"])
        write_dataset(ctx.archive.task_file(ctx.key, task_id, ".nc"), ds)
        return TaskResult(summary={"model": self.models[int(task_id)], "ion_pairs": self.settings.ion_pairs})
