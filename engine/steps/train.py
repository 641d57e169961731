"""``train``: an apax ensemble (or single model) trained on all labelled data of a dataset step,
checkpointed so that a killed run resumes (events ``checkpoint`` and ``resumed`` in the journal).

The model directory is stored as a content-addressed tar blob (deterministic: sorted entries,
no timestamps), with validation metrics and per-epoch learning curves as netCDF.
"""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any, ClassVar

from campaign.spec import ApaxModel, not_hashed
from engine.step import SingleTaskStep, StepContext, TaskResult, register

METRIC_UNITS = {"energy": "eV/atom", "forces": "eV/Angstrom", "stress": "eV/Angstrom^3"}


def _tar(directory: Path, target: Path) -> None:
    """Pack ``directory`` as ``model/...`` reproducibly (same files, same bytes)."""

    def clean(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
        return info

    with tarfile.open(target, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(directory.rglob("*")):
            tar.add(path, arcname=str(Path("model") / path.relative_to(directory)), recursive=False, filter=clean)


@register
class Train(SingleTaskStep):
    """Train the model on the ``data`` input's train split, validate on its valid split."""

    kind: ClassVar[str] = "train"
    version: ClassVar[int] = 1
    task: ClassVar[str] = "fit"
    inputs: ClassVar[tuple[str, ...]] = ("data",)

    model: ApaxModel
    checkpoint_every: int = not_hashed(default=10, ge=1, description="epochs between checkpoints")

    def run_task(self, ctx: StepContext, task_id: str) -> TaskResult:
        """Train in the task's checkpoint folder, so a killed run resumes from its latest checkpoint."""
        from functools import partial

        from archive.arrays import write_dataset
        from engine.apax_training import train

        frames = ctx.input_frames("data")
        training = [f for f in frames if f.info.get("split") == "train"]
        validation = [f for f in frames if f.info.get("split") == "valid"]
        result = train(self.model, training, validation, ctx.checkpoint_dir(task_id),
                       checkpoint_every=self.checkpoint_every, on_event=partial(ctx.journal, task=task_id))
        ctx.scratch.mkdir(parents=True, exist_ok=True)
        _tar(result.model_dir, ctx.scratch / "model.tar")
        digest = ctx.archive.put_blob(ctx.scratch / "model.tar")
        write_dataset(ctx.archive.task_file(ctx.key, task_id, ".curves.nc"), result.curves)
        return TaskResult([], {"model": digest, "metrics": result.metrics})

    def finish(self, ctx: StepContext) -> tuple[list[str], dict[str, Any]]:
        import shutil

        import xarray as xr

        from archive.arrays import write_dataset

        done = ctx.done_tasks()[self.task]
        shutil.copyfile(ctx.archive.task_file(ctx.key, self.task, ".curves.nc"), ctx.out_dir / "curves.nc")
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
        return ["curves.nc", "metrics.nc"], {**metrics, "blobs": {"model": done["model"]}}
