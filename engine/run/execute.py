"""Running tasks: the picklable task call, executors, and committing task results.

Any ``concurrent.futures.Executor`` can run tasks (a process pool here, Parsl on a cluster
later): the callable is a module-level function of a small picklable :class:`TaskRef`, and the
worker writes its result into the archive itself, so nothing large crosses process borders.
"""

from __future__ import annotations

import time
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ilcampaign.archive.store import Archive
from ilcampaign.engine.run import compilation, memory_maps
from ilcampaign.engine.step import REGISTRY, StepContext


@dataclass(frozen=True)
class TaskRef:
    """Everything a worker needs to run one task."""

    archive_root: str
    scratch_root: str
    kind: str
    params: dict[str, Any]
    key: str
    inputs: dict[str, str]
    task_id: str
    resources: dict[str, Any] = field(default_factory=dict)  # what the task needs (ilcampaign.engine.step.TASK_RESOURCES)


def context(archive_root: str | Path, scratch_root: str | Path, key: str, inputs: dict[str, str]) -> StepContext:
    return StepContext(Archive(archive_root), key, dict(inputs), Path(scratch_root) / key[:16])


def run_task(ref: TaskRef) -> str:
    """Run one task and commit its result: frames file first, summary last. Returns the task id."""
    import ilcampaign.engine.steps  # noqa: F401  (fills the step registry in a fresh worker process)

    step = REGISTRY[ref.kind].model_validate(ref.params)
    ctx = context(ref.archive_root, ref.scratch_root, ref.key, ref.inputs)
    archive = ctx.archive
    archive.journal(ref.key, {"event": "task_start", "task": ref.task_id, "time": time.time()})
    compilation.listen()
    started, cpu, compiling = time.perf_counter(), time.process_time(), compilation.spent()
    result = step.run_task(ctx, ref.task_id)
    if result.frames:
        from ilcampaign.archive.frames import write_frames

        write_frames(archive.task_file(ref.key, ref.task_id, ".h5"), result.frames, velocities=result.velocities)
    summary = dict(result.summary, wall_s=time.perf_counter() - started, cpu_s=time.process_time() - cpu,
                   compile_s=compilation.spent() - compiling)
    archive.commit_task(ref.key, ref.task_id, summary)
    archive.journal(ref.key, {"event": "task_done", "task": ref.task_id, "time": time.time()})
    relieved = memory_maps.relieve()
    if relieved:
        archive.journal(ref.key, {"event": "compiled_code_dropped", "task": ref.task_id, "maps": relieved[0],
                                  "maps_after": relieved[1], "time": time.time()})
    return ref.task_id


class SerialExecutor(Executor):
    """Runs each task in this process at submission: the simplest local backend, and the one
    whose behaviour tests can count exactly."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001  (handed to the caller through the future)
            future.set_exception(exc)
        return future


def make_executor(workers: int) -> Executor:
    """Local executor: in-process for one worker, a spawn-based process pool for more."""
    if workers <= 1:
        return SerialExecutor()
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
