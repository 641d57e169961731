"""``train``: an apax ensemble (or single model) trained on all labelled data of a dataset step,
checkpointed so that a killed run resumes (events ``checkpoint`` and ``resumed`` in the journal).

The model is stored as a content-addressed blob in canonical form (ilcampaign.engine.models.blob: apax's
config without machine paths, the parameters as a byte-stable array file), with validation
metrics and per-epoch learning curves as netCDF; the same training gives the same bytes. The
epoch wall times go to the record's ``timings``, not to the outputs.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ilcampaign.campaign.spec import ApaxModel, not_hashed
from ilcampaign.engine.step import GPU_TASK, SingleTaskStep, StepContext, TaskResult, Work, WorkFacts, register

METRIC_UNITS = {"energy": "eV/atom", "forces": "eV/Angstrom", "stress": "eV/Angstrom^3"}


@register
class TrainStep(SingleTaskStep):
    """Train the model on the ``data`` input's train split, validate on its valid split."""

    kind: ClassVar[str] = "train"
    version: ClassVar[int] = 2  # 2: canonical model blob, no epoch times in curves.nc
    task: ClassVar[str] = "fit"
    inputs: ClassVar[tuple[str, ...]] = ("data",)

    model: ApaxModel
    checkpoint_every: int = not_hashed(default=10, ge=1, description="epochs between checkpoints")

    def work(self, facts: WorkFacts) -> Work:
        members = self.model.ensemble.n_members if self.model.ensemble and self.model.ensemble.kind == "full" else 1
        return Work("epochs x frames", self.model.epochs * (facts.frames or 0) * members)

    def task_resources(self) -> dict[str, Any]:
        return dict(GPU_TASK)

    def run_task(self, ctx: StepContext, task_id: str) -> TaskResult:
        """Train in the task's checkpoint folder, so a killed run resumes from its latest checkpoint."""
        from functools import partial

        from ilcampaign.archive.arrays import write_dataset
        from ilcampaign.engine.models.training import train
        from ilcampaign.engine.models.blob import pack

        frames = ctx.input_frames("data")
        training = [f for f in frames if f.info.get("split") == "train"]
        validation = [f for f in frames if f.info.get("split") == "valid"]
        result = train(self.model, training, validation, ctx.checkpoint_dir(task_id),
                       checkpoint_every=self.checkpoint_every, on_event=partial(ctx.journal, task=task_id),
                       cache_dir=ctx.jax_cache)
        ctx.scratch.mkdir(parents=True, exist_ok=True)
        pack(result.model_dir, ctx.scratch / "model.tar")
        digest = ctx.archive.put_blob(ctx.scratch / "model.tar")
        write_dataset(ctx.archive.task_file(ctx.key, task_id, ".curves.nc"), result.curves)
        return TaskResult([], {"model": digest, "metrics": result.metrics, "epoch_s": result.epoch_times})

    def finish(self, ctx: StepContext) -> tuple[list[str], dict[str, Any]]:
        import xarray as xr

        from ilcampaign.archive.arrays import write_dataset
        from ilcampaign.archive.atomic import atomic_copy

        done = ctx.done_tasks()[self.task]
        atomic_copy(ctx.archive.task_file(ctx.key, self.task, ".curves.nc"), ctx.out_dir / "curves.nc")
        metrics = done["metrics"]
        table = xr.Dataset(
            {
                f"{quantity}_{kind}": ((), metrics[f"{quantity}_{kind}"], {"units": unit})
                for quantity, unit in METRIC_UNITS.items()
                for kind in ("mae", "rmse")
                if f"{quantity}_{kind}" in metrics
            }
        )
        write_dataset(ctx.out_dir / "metrics.nc", table)
        return ["curves.nc", "metrics.nc"], {**metrics, "blobs": {"model": done["model"]},
                                             "timings": {"epoch_s": done["epoch_s"]}}
