"""``select``: pick the configurations worth labelling from the iteration's candidates.

``bal``: batch active learning with last-layer-gradient features of the current ensemble and
MaxDist (apax.bal; in apax 0.14 the training frames are masked out of the pick but do not
enter the distances, so the pick is spread within the pool); ``random``; ``all``. A pool larger
than ``max_pool`` falls back to random selection (the paper's rule for very large pools).
"""

from __future__ import annotations

from typing import Any, ClassVar

from campaign.spec import Selection
from engine.step import Step, StepContext, TaskResult, register


@register
class Select(Step):
    """Select from every ``pool.*`` input; ``model`` and ``train`` feed the BAL features."""

    kind: ClassVar[str] = "select"
    version: ClassVar[int] = 1
    inputs: ClassVar[tuple[str, ...] | None] = None  # model, train, pool.<sampler>...

    selection: Selection
    seed: int

    def tasks(self, ctx: StepContext) -> list[str]:
        return [] if "select" in ctx.done_tasks() else ["select"]

    def run_task(self, ctx: StepContext, task_id: str) -> TaskResult:
        import numpy as np

        pool = [frame for slot in sorted(ctx.inputs) if slot.startswith("pool.") for frame in ctx.input_frames(slot)]
        n = min(self.selection.n, len(pool))
        method = self.selection.kind
        if method == "bal" and self.selection.max_pool is not None and len(pool) > self.selection.max_pool:
            method = "random (pool larger than max_pool)"
        if method == "bal" and n < len(pool):
            from engine.apax_model import bal_select

            train = [f for f in ctx.input_frames("train") if f.info.get("split") == "train"]
            picked = bal_select(ctx.model_dir(), train, pool, n).indices
        elif method == "all" or n == len(pool):
            picked = list(range(len(pool)))
        else:
            picked = sorted(np.random.default_rng(self.seed).choice(len(pool), size=n, replace=False).tolist())
        chosen = [pool[i] for i in picked]
        for frame, index in zip(chosen, picked):
            frame.info["pool_index"] = int(index)
        return TaskResult(chosen, {"n_pool": len(pool), "n_selected": len(chosen), "method": method,
                                   "picked": [int(i) for i in picked]})

    def finish(self, ctx: StepContext) -> tuple[list[str], dict[str, Any]]:
        return ctx.finish_single("select")
