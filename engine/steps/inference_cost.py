"""``inference_cost``: seconds per MD step against system size for each model path (our JAX MD,
ASE, ASE + torch-dftd D3 at each cutoff), on the system's box replicated to each size, one task
per model. Timings depend on the machine: the record keeps its devices and thread counts."""

from __future__ import annotations

from typing import Any, ClassVar

from ilcampaign.campaign.spec import DispersionCorrection
from ilcampaign.engine.step import GPU_TASK, StepContext, TaskResult, register
from ilcampaign.engine.steps.analysis import ModelAnalysis


def replication(factor: int) -> tuple[int, int, int]:
    """The most cubic (a, b, c) with a * b * c = ``factor``."""
    triples = [(a, b, factor // (a * b)) for a in range(1, factor + 1) if factor % a == 0
               for b in range(1, factor // a + 1) if (factor // a) % b == 0]
    return min(triples, key=lambda t: (max(t) / min(t), t))


@register
class InferenceCost(ModelAnalysis):
    """Inputs: ``box`` (the system's packed box) and ``model000``, ``model001`` ..."""

    kind: ClassVar[str] = "inference_cost"
    version: ClassVar[int] = 1
    prefix: ClassVar[str] = "cost"
    exclusive: ClassVar[bool] = True  # timings: nothing else may run meanwhile, its tasks one at a time

    ion_pairs: list[int]
    box_pairs: int  # formula units in the input box
    paths: list[str]
    d3: DispersionCorrection
    d3_cutoffs: list[float]
    n_steps: int
    warmup: int

    def task_resources(self) -> dict[str, Any]:
        return dict(GPU_TASK)

    def run_task(self, ctx: StepContext, task_id: str) -> TaskResult:
        from ilcampaign.archive.arrays import write_dataset
        from ilcampaign.engine.analysis.inference_cost import inference_cost

        (box,) = ctx.input_frames("box")
        box.calc = None
        repeats = [replication(n // self.box_pairs) for n in self.ion_pairs]
        cutoffs = self.d3_cutoffs if {"jax+d3", "ase+d3"} & set(self.paths) else []
        ds = inference_cost(ctx.model_dir(f"model{task_id}"), box, repeats=repeats, paths=self.paths,
                            d3=self.d3, d3_cutoffs=cutoffs, n_steps=self.n_steps, warmup=self.warmup,
                            cache_dir=ctx.jax_cache)
        ds.attrs.update(model=self.models[int(task_id)], model_step=ctx.inputs[f"model{task_id}"])
        write_dataset(ctx.archive.task_file(ctx.key, task_id, ".nc"), ds)
        return TaskResult(summary={"model": self.models[int(task_id)], "ion_pairs": self.ion_pairs})
