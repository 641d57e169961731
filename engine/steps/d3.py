"""``d3``: the same frames with torch-dftd D3 added to or removed from their labels.

This is how one dataset exists with and without D3 (paper: final models trained on DFT,
DFT+D3(8 A) and DFT+D3(20 A)). Frames are processed in chunks, one task each.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from ilcampaign.campaign.spec import DispersionCorrection
from ilcampaign.engine.hashing import hashed_without
from ilcampaign.engine.step import FRAMES, Step, StepContext, TaskResult, Work, WorkFacts, register

CHUNK = 50


@register
class D3Step(Step):
    """Shift the labels of the ``frames`` input by ``sign`` times their D3 energy, forces, stress."""

    kind: ClassVar[str] = "d3"
    version: ClassVar[int] = 1
    inputs: ClassVar[tuple[str, ...]] = ("frames",)

    d3: DispersionCorrection = hashed_without("mts_interval", "mts_split")
    sign: Literal[1, -1]

    def _chunks(self, ctx: StepContext) -> list[str]:
        from ilcampaign.archive.frames import count_frames

        n = count_frames(ctx.archive.output(ctx.inputs["frames"], FRAMES))
        return [f"{start:06d}" for start in range(0, n, CHUNK)]

    def work(self, facts: WorkFacts) -> Work:
        return Work("frames x atoms", (facts.frames or 0) * facts.atoms, weight=self.d3.cutoff_volume)

    def tasks(self, ctx: StepContext) -> list[str]:
        done = ctx.done_tasks()
        return [task for task in self._chunks(ctx) if task not in done]

    def run_task(self, ctx: StepContext, task_id: str) -> TaskResult:
        import torch

        from ilcampaign.archive.frames import read_frames
        from ilcampaign.engine.dispersion.label_shift import d3_results, shift_labels

        start = int(task_id)
        path = ctx.archive.output(ctx.inputs["frames"], FRAMES)
        frames = read_frames(path)[start : start + CHUNK]
        d3 = d3_results(frames, xc=self.d3.functional, damping=self.d3.damping, cutoff=self.d3.cutoff,
                        cn_cutoff=self.d3.cn_cutoff, dtype=getattr(torch, self.d3.dtype))
        shifted = shift_labels(frames, d3, self.sign)
        for frame, correction in zip(shifted, d3):
            frame.info["d3_energy"] = self.sign * correction["energy"]
        return TaskResult(shifted, {"n_frames": len(shifted)})

    def finish(self, ctx: StepContext) -> tuple[list[str], dict[str, Any]]:
        frames = [frame for task in self._chunks(ctx) for frame in ctx.task_frames(task)]
        return [ctx.write_frames(frames)], {"n_frames": len(frames), "sign": self.sign, "cutoff_A": self.d3.cutoff}
