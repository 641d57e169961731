"""Shared pieces of the sampler step kinds: where they start, and storing candidates."""

from __future__ import annotations

from typing import Any

from engine.step import StepContext, StepFailed, TaskResult


def start_frames(ctx: StepContext, count: int) -> list:
    """The last ``count`` configurations of the ``start`` input, without labels."""
    frames = ctx.input_frames("start")[-count:]
    if not frames:
        name = ctx.input_record("start")["name"]
        raise StepFailed(f"no structure to start from: step {name} produced no configurations")
    for frame in frames:
        frame.calc = None
    return frames


def model_r_max(ctx: StepContext) -> float:
    """The cutoff of the model feeding the ``model`` input (from its train step's record)."""
    return float(ctx.input_record("model")["params"]["model"]["r_max"])


def candidates(frames: list, source: str, **summary: Any) -> TaskResult:
    """Unlabelled candidate configurations tagged with the sampler that made them."""
    for index, frame in enumerate(frames):
        frame.calc = None
        frame.info.update(source=source, candidate=index)
    return TaskResult(frames, {"n_candidates": len(frames), **summary})
