"""Long runs split into chunks, one task each: a chunk starts from the state file the previous one
left, so a killed run resumes at its last finished chunk (losing at most one chunk of work).

A chunk's task id holds its step range (``steps000001000-000002000``), so the chunks already run
fix where the next one starts even if the checkpoint interval was changed in between.
"""

from __future__ import annotations

import re

from ilcampaign.archive.atomic import atomic_write_bytes
from ilcampaign.engine.step import StepContext

_RANGE = re.compile(r"steps(\d{9})-(\d{9})$")


def chunk_id(first: int, last: int, prefix: str = "") -> str:
    return f"{prefix}steps{first:09d}-{last:09d}"


def chunk_range(task_id: str) -> tuple[int, int]:
    """(first, last) step of a chunk task id."""
    match = _RANGE.search(task_id)
    if match is None:
        raise ValueError(f"not a chunk task id: {task_id}")
    return int(match.group(1)), int(match.group(2))


def chunks(done: dict[str, dict], prefix: str = "") -> list[str]:
    """The finished chunk task ids with ``prefix``, in step order."""
    return sorted(t for t in done if t.startswith(prefix) and _RANGE.search(t[len(prefix):]))


def next_chunk(done: dict[str, dict], n_steps: int, every: int, prefix: str = "") -> list[str]:
    """The next chunk to run (at most ``every`` steps), or none once the run reached ``n_steps``
    or a chunk reported that it stopped (``stopped_at`` in its summary)."""
    finished = chunks(done, prefix)
    if any(done[t].get("stopped_at") is not None for t in finished):
        return []
    first = chunk_range(finished[-1])[1] if finished else 0
    return [chunk_id(first, min(first + every, n_steps), prefix)] if first < n_steps else []


def read_state(ctx: StepContext, task_id: str) -> bytes | None:
    """The state the chunk before ``task_id`` left (None for a run's first chunk)."""
    first = chunk_range(task_id)[0]
    if first == 0:
        return None
    prefix = task_id[: _RANGE.search(task_id).start()]
    done = ctx.done_tasks()
    previous = [t for t in chunks(done, prefix) if chunk_range(t)[1] == first]
    if not previous:
        raise RuntimeError(f"{ctx.key[:12]}: no finished chunk ends at step {first}")
    return ctx.archive.task_file(ctx.key, previous[0], ".state").read_bytes()


def write_state(ctx: StepContext, task_id: str, state: bytes) -> None:
    """Store a chunk's end state (before its summary marks it finished)."""
    atomic_write_bytes(ctx.archive.task_file(ctx.key, task_id, ".state"), state)
