"""Shared pieces of the sampler step kinds: where they start, chunked optimisations, and storing
candidates and end structures."""

from __future__ import annotations

from typing import Any, ClassVar

from campaign.spec import Optimiser, Start, not_hashed
from engine.chunks import chunk_range, chunks, next_chunk, read_state, write_state
from engine.step import FRAMES, Step, StepContext, StepFailed, TaskResult

ENDS = "ends.h5"  # the structures a later sampler continues from, where they differ from the candidates


def start_frames(ctx: StepContext, start: Start) -> list:
    """The ``start`` input's end structures chosen by ``start`` (first or last n), without labels."""
    from archive.frames import read_frames

    record = ctx.input_record("start")
    path = ctx.archive.output(ctx.inputs["start"], ENDS if ENDS in record["outputs"] else FRAMES)
    frames = read_frames(path)
    if len(frames) < start.count:
        raise StepFailed(f"step {record['name']} has {len(frames)} end structure(s); "
                         f"this sampler starts from {start.count}")
    chosen = frames[: start.first] if start.first is not None else frames[-start.count:]
    for frame in chosen:
        frame.calc = None
    return chosen


def model_r_max(ctx: StepContext) -> float:
    """The cutoff of the model feeding the ``model`` input (from its train step's record)."""
    return float(ctx.input_record("model")["params"]["model"]["r_max"])


def is_ensemble(ctx: StepContext) -> bool:
    """Whether the model feeding the ``model`` input is an ensemble (has a force uncertainty)."""
    return ctx.input_record("model")["params"]["model"].get("ensemble") is not None


def tag_candidates(frames: list, source: str) -> list:
    """Unlabelled candidate configurations tagged with the sampler that made them."""
    for index, frame in enumerate(frames):
        frame.calc = None
        frame.info.update(source=source, candidate=index)
    return frames


def candidates(frames: list, source: str, **summary: Any) -> TaskResult:
    """A task result of tagged candidates and a summary."""
    return TaskResult(tag_candidates(frames, source), {"n_candidates": len(frames), **summary})


class OptimisingStep(Step):
    """Optimises each start structure with the model in chunks of ``checkpoint_every`` optimiser
    steps (tasks ``s<structure>.steps<first>-<last>``, resumable); subclasses say which settings."""

    inputs: ClassVar[tuple[str, ...]] = ("model", "start")
    checkpoint_every: int = not_hashed(default=100, ge=1, description="optimiser steps per chunk")

    def optimiser(self) -> Optimiser | None:
        """The optimiser settings, or None to skip optimising."""
        raise NotImplementedError

    def start(self) -> Start:
        raise NotImplementedError

    @staticmethod
    def prefix(structure: int) -> str:
        return f"s{structure:03d}."

    def optimisation_tasks(self, ctx: StepContext) -> list[str]:
        """The next optimisation chunk of every structure still optimising."""
        settings, done = self.optimiser(), ctx.done_tasks()
        if settings is None:
            return []
        return [task for j in range(self.start().count)
                for task in next_chunk(done, settings.max_steps, self.checkpoint_every, self.prefix(j))]

    def optimised(self, ctx: StepContext, structure: int) -> bool:
        """Whether structure ``structure`` is done optimising (or needs no optimisation)."""
        return self.optimiser() is None or not next_chunk(
            ctx.done_tasks(), self.optimiser().max_steps, self.checkpoint_every, self.prefix(structure))

    def run_optimisation(self, ctx: StepContext, task_id: str) -> TaskResult:
        from engine.apax_model import load_calculator
        from engine.dynamics import optimise_chunk

        structure = int(task_id[1:4])
        first, last = chunk_range(task_id)
        atoms = start_frames(ctx, self.start())[structure]
        calc = load_calculator(ctx.model_dir(), cache_dir=ctx.jax_cache)
        frames, state, ended = optimise_chunk(atoms, calc, self.optimiser(),
                                              steps=last - first, state=read_state(ctx, task_id))
        write_state(ctx, task_id, state)
        return TaskResult(frames, {"n_frames": len(frames), "stopped_at": last if ended else None})

    def optimisation_frames(self, ctx: StepContext, structure: int) -> list:
        """Every configuration the optimisation of ``structure`` visited, in order (the start
        structure itself when there was no optimisation)."""
        if self.optimiser() is None:
            return start_frames(ctx, self.start())[structure : structure + 1]
        return [frame for task in chunks(ctx.done_tasks(), self.prefix(structure)) for frame in ctx.task_frames(task)]
