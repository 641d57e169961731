"""``label``: reference energies, forces and stress for a set of configurations, one task each.

Failures follow the spec's ``failures`` policy: ``retry`` walks through the retry settings in
order, ``skip`` records and goes on, ``stop`` records and stops the run. With
``uniform_settings`` every configuration ends up labelled with one setting (the strongest any
configuration needed); otherwise the setting used is recorded per frame as ``reference_level``.
A label with a force component above ``max_force`` is refused: recorded with its force, kept in
the calculation cache, never passed on to a dataset.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar, Literal

from pydantic import Field

from ilcampaign.campaign.spec import Failures, Reference, not_hashed
from ilcampaign.engine.step import FRAMES, TASK_RESOURCES, Step, StepContext, StepFailed, TaskResult, Work, WorkFacts, register


def _task(index: int, level: int) -> str:
    return f"{index:06d}" if level == 0 else f"{index:06d}.L{level}"


def _parse(task_id: str) -> tuple[int, int]:
    index, _, level = task_id.partition(".L")
    return int(index), int(level or 0)


@register
class LabelStep(Step):
    """Label the frames of the ``frames`` input with the reference method."""

    kind: ClassVar[str] = "label"
    version: ClassVar[int] = 2
    inputs: ClassVar[tuple[str, ...]] = ("frames",)

    settings: list[Reference] = Field(min_length=1, description="level 0: the reference; then retry settings")
    on_failure: Literal["retry", "skip", "stop"]
    uniform_settings: bool
    splits: list[Literal["train", "valid", "test"]] | None = Field(
        default=None, description="label only frames of these dataset splits (relabelling a dataset); null: all")
    max_force: float | None = Field(default=None, gt=0, description="eV/A: labels with a larger force component "
                                    "are refused; null: none")
    # a tolerance, not an input of the result: raising it after a failed run reuses every label
    max_failed_fraction: float = not_hashed()

    @classmethod
    def from_spec(cls, reference: Any, retries: list[Any], failures: Failures, splits: list[str] | None = None,
                  max_force: float | None = None) -> LabelStep:
        return cls(
            settings=[reference, *retries] if failures.on_failure == "retry" else [reference],
            on_failure=failures.on_failure,
            uniform_settings=failures.uniform_settings,
            splits=splits,
            max_force=max_force,
            max_failed_fraction=failures.max_failed_fraction,
        )

    def work(self, facts: WorkFacts) -> Work:
        return Work("reference calls", facts.frames or 0, weight=facts.atoms)

    def work_done(self, facts: WorkFacts, summary: dict[str, Any], tasks: dict[str, dict[str, Any]]) -> Work:
        return Work("reference calls", len(tasks), weight=facts.atoms)  # a task is a call (retries included)

    def _indices(self, ctx: StepContext) -> list[int]:
        """The input frames to label: all, or those of the wanted splits."""
        from ilcampaign.archive.frames import count_frames, read_frames

        path = ctx.archive.output(ctx.inputs["frames"], FRAMES)
        if self.splits is None:
            return list(range(count_frames(path)))
        return [i for i, frame in enumerate(read_frames(path)) if frame.info.get("split") in self.splits]

    # ------------------------------------------------------------- planning
    def _final(self, done: dict[str, dict[str, Any]]) -> dict[int, dict[str, Any]]:
        """Per frame, the result of its highest-level finished task."""
        final: dict[int, dict[str, Any]] = {}
        for task_id in sorted(done, key=_parse):
            index, _ = _parse(task_id)
            final[index] = dict(done[task_id], task=task_id)
        return final

    def task_resources(self) -> dict[str, Any]:
        """One reference calculation: as many cores as the reference runs threads."""
        return {**TASK_RESOURCES, "cores": self.settings[0].threads}

    def tasks(self, ctx: StepContext) -> list[str]:
        final = self._final(ctx.done_tasks())
        first_round = [_task(i, 0) for i in self._indices(ctx) if i not in final]
        if first_round:
            return first_round
        labelled = [r for r in final.values() if not r["failed"] and not r.get("refused")]
        if not self.uniform_settings or not labelled:
            return []
        top = max(r["level"] for r in labelled)
        return [_task(i, top) for i, r in sorted(final.items())
                if not r["failed"] and not r.get("refused") and r["level"] < top]

    # ------------------------------------------------------------- one frame
    def run_task(self, ctx: StepContext, task_id: str) -> TaskResult:
        from ilcampaign.archive.frames import read_frames
        from ilcampaign.engine.structures.guards import max_force
        from ilcampaign.engine.labels.cache import label
        from ilcampaign.engine.labels.method import ReferenceFailure

        index, start = _parse(task_id)
        atoms = read_frames(ctx.archive.output(ctx.inputs["frames"], FRAMES), indices=[index])[0]
        attempts = []
        for level in range(start, len(self.settings)):
            began = time.perf_counter()
            try:
                labelled, computed = label(ctx.archive, self.settings[level], atoms, ctx.scratch)
            except ReferenceFailure as exc:
                attempts.append({"level": level, "error": str(exc), "wall_s": time.perf_counter() - began})
                ctx.archive.journal(ctx.key, {"event": "reference_failed", "task": task_id, "level": level, "error": str(exc)})
                if self.on_failure == "stop":
                    raise StepFailed(
                        f"reference calculation failed for frame {index}: {exc} (failures.on_failure is 'stop')"
                    ) from exc
                if self.on_failure == "skip":
                    break
                continue
            if computed:
                ctx.archive.journal(ctx.key, {"event": "reference_call", "task": task_id, "level": level})
            labelled.info.update(source_index=index, reference_level=level)
            result = {"failed": False, "level": level, "attempts": attempts, "computed": computed}
            largest = max_force(labelled)
            if self.max_force is not None and largest > self.max_force:
                result.update(refused=True, reason=f"frame {index}: a force component of {largest:.1f} eV/A > "
                              f"guards.max_force {self.max_force:g} eV/A")
                ctx.archive.journal(ctx.key, {"event": "label_refused", "task": task_id, "max_force_eV_A": largest})
                return TaskResult([], result)
            return TaskResult([labelled], result)
        return TaskResult([], {"failed": True, "level": len(self.settings) - 1, "attempts": attempts})

    # ------------------------------------------------------------- assembling
    def finish(self, ctx: StepContext) -> tuple[list[str], dict[str, Any]]:
        from ilcampaign.engine.labels.method import reference_programs

        final = self._final(ctx.done_tasks())
        failed = {i: r["attempts"] for i, r in final.items() if r["failed"]}
        fraction = len(failed) / max(len(final), 1)
        if fraction > self.max_failed_fraction:
            worst = next(iter(failed.values()))[-1]["error"] if failed else ""
            raise StepFailed(
                f"{len(failed)} of {len(final)} reference calculations failed ({fraction:.0%} > "
                f"failures.max_failed_fraction {self.max_failed_fraction:.0%}); last error: {worst}"
            )
        refused = {str(i): r["reason"] for i, r in sorted(final.items()) if r.get("refused")}
        frames = [ctx.task_frames(r["task"])[0] for i, r in sorted(final.items())
                  if not r["failed"] and not r.get("refused")]
        levels = sorted({r["level"] for r in final.values() if not r["failed"]})
        summary = {
            "n_input": len(final),
            "n_labelled": len(frames),
            "n_failed": len(failed),
            "n_refused": len(refused),
            "refused": refused,
            "n_computed": sum(bool(r.get("computed")) for r in final.values()),  # the rest came from the cache
            "failed": {str(i): attempts for i, attempts in failed.items()},
            "levels_used": levels,
            "mixed_settings": len(levels) > 1,
            "settings": [s.model_dump(mode="json") for s in self.settings],
            "programs": reference_programs(self.settings),  # for the record: what computed the labels
        }
        return [ctx.write_frames(frames)], summary
