"""``select``: pick the configurations worth labelling from the iteration's candidates.

An iteration's rules run in order, each over the candidates of its samplers that no earlier
rule took. ``bal``: batch active learning with last-layer-gradient features of the current
ensemble and MaxDist (apax.bal; in apax 0.14 the training frames are masked out of the pick but
do not enter the distances, so the pick is spread within the pool); ``random``; ``all``. A pool
larger than ``max_pool`` falls back to random selection (the paper's rule for very large pools).
A rule may force its frames into the training or the validation set. Candidates that break the
contact or bond guard are dropped from the pools first and counted per sampler.
"""

from __future__ import annotations

from typing import Callable, ClassVar

from ilcampaign.campaign.spec import Selection
from ilcampaign.engine.step import SingleTaskStep, StepContext, TaskResult, register
from ilcampaign.engine.steps.sampling import GuardedStep


@register
class SelectStep(SingleTaskStep, GuardedStep):
    """Select from every ``pool.<sampler>`` input; ``model`` and ``train`` feed the BAL features."""

    kind: ClassVar[str] = "select"
    version: ClassVar[int] = 3
    task: ClassVar[str] = "select"
    inputs: ClassVar[tuple[str, ...] | None] = None  # model, train, pool.<sampler>...

    selection: list[Selection]
    seed: int

    def run_task(self, ctx: StepContext, task_id: str) -> TaskResult:
        from functools import cache

        # read once, and only if a rule really runs BAL (its frames are masked out of the pick)
        training = cache(lambda: [f for f in ctx.input_frames("train") if f.info.get("split") == "train"])
        pools = {slot.removeprefix("pool."): ctx.input_frames(slot) for slot in sorted(ctx.inputs)
                 if slot.startswith("pool.")}
        check = self.guard(ctx)
        guard = {name: self._guard(check, pool) for name, pool in pools.items()}
        taken: set[tuple[str, int]] = {(name, i) for name, (removed, _) in guard.items() for i in removed}
        chosen, rules = [], []
        for number, rule in enumerate(self.selection):
            offered = [(name, i) for name in (rule.samplers or sorted(pools)) for i in range(len(pools[name]))
                       if (name, i) not in taken]
            picked, method = self._pick(ctx, rule, [pools[name][i] for name, i in offered], number, training)
            for index in picked:
                name, i = offered[index]
                taken.add((name, i))
                frame = pools[name][i]
                frame.info.pop("split", None)
                if rule.split != "auto":
                    frame.info["split"] = rule.split
                frame.info.update(pool=name, pool_index=i)
                chosen.append(frame)
            rules.append({"samplers": sorted({name for name, _ in offered}), "n_pool": len(offered),
                          "n_selected": len(picked), "method": method, "split": rule.split,
                          "picked": [list(offered[index]) for index in picked]})
        return TaskResult(chosen, {"n_pool": sum(len(p) for p in pools.values()), "n_selected": len(chosen),
                                   "n_guarded": sum(len(removed) for removed, _ in guard.values()), "rules": rules,
                                   "guard": {name: {"n_removed": len(removed), "removed": removed, "worst": worst}
                                             for name, (removed, worst) in guard.items() if removed}})

    @staticmethod
    def _guard(check: Callable, pool: list) -> tuple[list[int], str | None]:
        """Indices of the candidates that break a guard, and the worst violation among them."""
        found = [(i, violation) for i, violation in enumerate(map(check, pool)) if violation is not None]
        worst = max(found, key=lambda item: item[1].severity)[1] if found else None
        return [i for i, _ in found], None if worst is None else str(worst)

    def _pick(self, ctx: StepContext, rule: Selection, pool: list, number: int,
              training: Callable[[], list]) -> tuple[list[int], str]:
        """Indices into ``pool`` picked by one rule, and the method actually used."""
        import numpy as np

        n = min(rule.n, len(pool))
        method = rule.kind
        if method == "bal" and rule.max_pool is not None and len(pool) > rule.max_pool:
            method = "random (pool larger than max_pool)"
        if method == "all" or n == len(pool):
            return list(range(len(pool))), method
        if method == "bal":
            from ilcampaign.engine.models.bal import bal_select

            return list(bal_select(ctx.model_dir(), training(), pool, n).indices), method
        rng = np.random.default_rng([self.seed, number])
        return sorted(rng.choice(len(pool), size=n, replace=False).tolist()), method
