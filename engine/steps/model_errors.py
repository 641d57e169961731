"""``model_errors``: each named model on one split of the dataset it was trained on (the held-out
test frames by default; energy, force, stress MAE/RMSE, per-element force errors, parity data), one
task per model. A split with no frames is found at ``campaign validate`` (engine.graph.checks)."""

from __future__ import annotations

from typing import Any, ClassVar

from ilcampaign.campaign.spec import ModelErrorsSettings
from ilcampaign.engine.hashing import hashed_as_fields
from ilcampaign.engine.step import StepContext, StepFailed, TaskResult, Work, WorkFacts, register
from ilcampaign.engine.steps.analysis import ModelAnalysisStep

SUMMARY = ("energy_mae_per_atom", "energy_rmse_per_atom", "force_mae", "force_rmse", "stress_mae", "stress_rmse")


@register
class ModelErrorsStep(ModelAnalysisStep):
    """Inputs: ``model000`` with ``data000`` (the dataset it was trained on), ``model001`` ..."""

    kind: ClassVar[str] = "model_errors"
    version: ClassVar[int] = 1
    prefix: ClassVar[str] = "errors"

    settings: ModelErrorsSettings = hashed_as_fields(omit=("kind", "models"))

    def wiring(self, trained: dict[str, tuple[str, str]]) -> dict[str, str]:
        data = {f"data{index:03d}": trained[model][1] for index, model in enumerate(self.models)}
        return {**super().wiring(trained), **data}

    def work(self, facts: WorkFacts) -> Work:
        """Its models' frames of its split (from the schedule) times the system box's atoms."""
        return Work("frames x atoms", (facts.frames or 0) * facts.atoms)

    def run_task(self, ctx: StepContext, task_id: str) -> TaskResult:
        from ilcampaign.archive.arrays import write_dataset
        from ilcampaign.engine.analysis.model_errors import model_errors

        split = self.settings.split
        frames = [f for f in ctx.input_frames(f"data{task_id}") if f.info.get("split") == split]
        name = self.models[int(task_id)]
        if not frames:
            raise StepFailed(f"model {name}: its dataset holds no {split} frames")
        ds = model_errors(ctx.model_dir(f"model{task_id}"), frames, cache_dir=ctx.jax_cache)
        ds.attrs.update(model=name, split=split, model_step=ctx.inputs[f"model{task_id}"],
                        data_step=ctx.inputs[f"data{task_id}"])
        write_dataset(ctx.archive.task_file(ctx.key, task_id, ".nc"), ds)
        return TaskResult(summary={"model": name, "split": split, "n_frames": len(frames), **{k: float(ds[k]) for k in SUMMARY},
                                   "units": {k: ds[k].attrs["units"] for k in SUMMARY}})

    def finish(self, ctx: StepContext) -> tuple[list[str], dict[str, Any]]:
        outputs, summary = super().finish(ctx)
        headline = {f"{row['model']}.{row['split']}_force_mae_eV_A": row["force_mae"] for row in summary["models"]}
        return outputs, {**headline, **summary}
