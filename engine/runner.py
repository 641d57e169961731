"""Executing a graph: the work-directory lock, task rounds, progress bars, and commits.

Work directory layout: ``archive/`` (see :mod:`archive.store`), ``scratch/`` (calculator
files, safe to delete) and ``run.lock``.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from archive.store import Archive
from engine.execute import TaskRef, context, make_executor, run_task
from engine.graph import Node
from engine.hashing import canonical
from engine.step import StepFailed, versions


class LockedError(Exception):
    """Another ``campaign run`` holds the work directory."""


@contextmanager
def workdir_lock(workdir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the work directory; the OS drops it if the process dies."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "run.lock"
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise LockedError(f"{workdir} is in use by a running campaign ({holder}); wait for it or stop it") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {_now()}")
    handle.flush()
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


Progress = Callable[[str, int, int], None]  # (step name, tasks done, tasks known)


def _submit_windowed(executor: Executor, refs: list[TaskRef]) -> Iterator[str]:
    """Keep at most ``executor``'s worker count of tasks in flight; yield ids as they finish.

    A failing task raises at once, so a ``stop`` policy stops before the remaining tasks start.
    """
    window = max(getattr(executor, "_max_workers", 1), 1)
    queue = list(reversed(refs))
    running: set[Future] = set()
    while queue or running:
        while queue and len(running) < window:
            running.add(executor.submit(run_task, queue.pop()))
        finished, running = wait(running, return_when=FIRST_COMPLETED)
        for future in finished:
            yield future.result()


def run_step(node: Node, workdir: Path, executor: Executor, progress: Progress) -> None:
    """Run a node's unfinished tasks round by round, then finish and commit it."""
    archive = Archive(workdir / "archive")
    scratch = workdir / "scratch"
    ctx = context(archive.root, scratch, node.key, node.input_keys)
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    started, wall, cpu = _now(), time.perf_counter(), time.process_time()
    archive.journal(node.key, {"event": "step_start", "time": time.time()})
    params = node.step.model_dump(mode="json")
    while pending := node.step.tasks(ctx):
        done = len(ctx.done_tasks())
        total = max(done + len(pending), node.step.expected_tasks())
        progress(node.name, done, total)
        refs = [
            TaskRef(str(archive.root), str(scratch), node.step.kind, params, node.key, node.input_keys, task)
            for task in pending
        ]
        for _ in _submit_windowed(executor, refs):
            done += 1
            progress(node.name, done, total)
    outputs, summary = node.step.finish(ctx)
    blobs = summary.pop("blobs", {})  # content-addressed files the step stored (e.g. a trained model)
    timings = summary.pop("timings", {})  # times the step measured itself (e.g. per epoch): record only
    task_times = [t.get("wall_s", 0.0) for t in ctx.done_tasks().values()]
    record = {
        "kind": node.step.kind,
        "version": node.step.version,
        "params": canonical(node.step),
        "spec_params": params,
        "inputs": node.input_keys,
        "summary": summary,
        "blobs": blobs,
        "software": versions(),
        "host": socket.gethostname(),
        "started": started,
        "finished": _now(),
        "wall_s": time.perf_counter() - wall,
        "cpu_s": time.process_time() - cpu,
        "task_wall_s": sum(task_times),
        "n_tasks": len(task_times),
        "timings": timings,
    }
    archive.commit(node.key, node.name, record, outputs)
    archive.prune_task_files(node.key)
    archive.journal(node.key, {"event": "step_done", "time": time.time()})


def run_graph(nodes: list[Node], workdir: Path, workers: int, progress: Progress,
              manifest: dict | None = None) -> list[str]:
    """Run every node not yet done, in order, under the work-directory lock; returns names run.
    ``manifest`` (engine.manifest) is stored in the archive first, for reports."""
    ran = []
    with workdir_lock(workdir):
        archive = Archive(workdir / "archive")
        archive.sweep_temporaries()
        if manifest is not None:
            archive.write_manifest(manifest)
        executor = make_executor(workers)
        try:
            for node in nodes:
                if archive.is_done(node.key):
                    continue
                try:
                    run_step(node, workdir, executor, progress)
                except Exception as exc:
                    message = str(exc) if isinstance(exc, StepFailed) else f"{type(exc).__name__}: {exc}"
                    archive.journal(node.key, {"event": "step_failed", "message": message, "time": time.time()})
                    raise
                ran.append(node.name)
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
    return ran
