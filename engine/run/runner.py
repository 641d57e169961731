"""Executing a graph: the work-directory lock, task rounds, progress bars, and commits.

Work directory layout: ``archive/`` (see :mod:`ilcampaign.archive.store`), ``scratch/`` (calculator
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
from typing import Any, Callable, Iterator

from ilcampaign.archive.store import Archive
from ilcampaign.engine.run.execute import TaskRef, context, make_executor, run_task
from ilcampaign.engine.graph import Node
from ilcampaign.engine.hashing import canonical
from ilcampaign.engine.step import StepFailed, versions


class LockedError(Exception):
    """Another ``campaign run`` holds the work directory."""


@contextmanager
def workdir_lock(workdir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the work directory; the OS drops it if the process dies. On a
    shared filesystem with locking (Linux maps flock to NFS byte-range locks) it holds across nodes."""
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
    except OSError as exc:  # e.g. ENOLCK: an NFS mount without lockd, some FUSE filesystems
        handle.close()
        raise LockedError(f"{workdir} is on a filesystem without file locks ({exc.strerror}), so two runs could "
                          "not be kept apart; use a local disk or a shared filesystem with locking "
                          "(NFS with lockd, Lustre with flock, GPFS)") from None
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


def _submit_windowed(executor: Executor, refs: list[TaskRef], window: int) -> Iterator[str]:
    """Keep at most ``window`` tasks in flight; yield ids as they finish.

    A failing task raises at once, so a ``stop`` policy stops before the remaining tasks start.
    """
    queue = list(reversed(refs))
    running: set[Future] = set()
    while queue or running:
        while queue and len(running) < window:
            running.add(executor.submit(run_task, queue.pop()))
        finished, running = wait(running, return_when=FIRST_COMPLETED)
        for future in finished:
            yield future.result()


def run_step(node: Node, workdir: Path, executor: Executor, progress: Progress,
             resources: dict[str, dict[str, Any]] | None = None) -> None:
    """Run a node's unfinished tasks round by round, then finish and commit it. ``resources``:
    the spec's per-kind overrides of what a task needs (``execution.resources``)."""
    archive = Archive(workdir / "archive")
    needs = task_needs(node, resources or {})
    window = 1 if node.step.exclusive else max(getattr(executor, "_max_workers", 1), 1)
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
            TaskRef(str(archive.root), str(scratch), node.step.kind, params, node.key, node.input_keys, task, needs)
            for task in pending
        ]
        for _ in _submit_windowed(executor, refs, window):
            done += 1
            progress(node.name, done, total)
    outputs, summary = node.step.finish(ctx)
    blobs = summary.pop("blobs", {})  # content-addressed files the step stored (e.g. a trained model)
    timings = summary.pop("timings", {})  # times the step measured itself (e.g. per epoch): record only
    programs = summary.pop("programs", [])  # the programs behind its labels (engine.labels.method)
    tasks = ctx.done_tasks().values()
    task_times = [t.get("wall_s", 0.0) for t in tasks]
    record = {
        "kind": node.step.kind,
        "version": node.step.version,
        "params": canonical(node.step),
        "spec_params": params,
        "inputs": node.input_keys,
        "summary": summary,
        "blobs": blobs,
        "software": versions() | {p["program"].lower(): p["version"] for p in programs if p["version"]},
        "programs": programs,
        "host": socket.gethostname(),
        "started": started,
        "finished": _now(),
        "wall_s": time.perf_counter() - wall,
        "cpu_s": time.process_time() - cpu,
        "task_wall_s": sum(task_times),
        "task_compile_s": sum(t.get("compile_s", 0.0) for t in tasks),  # of task_wall_s: JAX compiling
        "n_tasks": len(task_times),
        "timings": timings,
        "resources": needs,
        **hours(needs, sum(task_times), on_gpu=getattr(executor, "gpu_tasks", lambda *_: False)(node.step.kind, needs)),
    }
    archive.commit(node.key, node.name, record, outputs)
    archive.prune_task_files(node.key)
    archive.journal(node.key, {"event": "step_done", "time": time.time()})


def task_needs(node: Node, overrides: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What one task of ``node`` needs: its step kind's defaults, then the spec's values for the kind."""
    given = {name: value for name, value in overrides.get(node.step.kind, {}).items() if value is not None}
    return {**node.step.task_resources(), **given}


def hours(needs: dict[str, Any], task_wall_s: float, *, on_gpu: bool) -> dict[str, float]:
    """The cost ledger's CPU hours (task time x cores x MPI ranks) and GPU hours (task time x GPUs,
    where the executor placed the tasks on GPUs)."""
    cpu = task_wall_s * needs["cores"] * needs["mpi_ranks"] / 3600
    return {"cpu_hours": cpu, "gpu_hours": task_wall_s * needs["gpus"] / 3600 if on_gpu else 0.0}


class GraphFailed(Exception):
    """Steps of a run failed; every step that did not depend on them ran and was committed.
    ``failures``: (step name, exception) in graph order; ``blocked``: names of the steps not run
    because an input failed."""

    def __init__(self, failures: list[tuple[str, BaseException]], blocked: list[str]):
        self.failures, self.blocked = failures, blocked
        lines = [f"{name}: {_message(exc)}" for name, exc in failures]
        if blocked:
            lines.append(f"not run, as their inputs failed: {', '.join(blocked)}")
        super().__init__(f"{len(failures)} step(s) failed: " + "; ".join(lines))


def _message(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, StepFailed) else f"{type(exc).__name__}: {exc}"


def run_graph(nodes: list[Node], workdir: Path, workers: int, progress: Progress,
              manifest: dict | None = None, executor: Executor | None = None,
              resources: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """Run every node not yet done under the work-directory lock; returns the names run, in graph order.

    Independent steps run at the same time (up to the executor's worker count; one worker: one
    step after another, in graph order) and share the executor's task slots. A failing step
    stops only the steps that depend on it: the others run and are committed, then the failure
    is raised (a single one as itself, several as ``GraphFailed``). ``manifest`` (ilcampaign.engine.graph.manifest)
    is stored in the archive first, for reports. ``executor``: where tasks run (default: local,
    ``workers`` processes); the caller shuts down an executor it passes. ``resources``: the spec's
    ``execution.resources`` (step kind -> what its tasks need), recorded with each step.
    """
    with workdir_lock(workdir):
        archive = Archive(workdir / "archive")
        archive.sweep_temporaries()
        if manifest is not None:
            archive.write_manifest(manifest)
        own = executor is None
        executor = executor or make_executor(workers)
        try:
            ran, failures, blocked = _schedule(nodes, workdir, executor, progress, archive, resources or {})
        finally:
            if own:
                executor.shutdown(wait=True, cancel_futures=True)
    if len(failures) == 1 and not blocked:
        raise failures[0][1]
    if failures:
        raise GraphFailed(failures, blocked)
    return ran


def _schedule(nodes: list[Node], workdir: Path, executor: Executor, progress: Progress, archive: Archive,
              resources: dict[str, dict[str, Any]]) -> tuple[list[str], list[tuple[str, BaseException]], list[str]]:
    """Start each node once its inputs are done, at most ``slots`` at a time (each in a thread that
    feeds its tasks to ``executor``); (names run, failures, names blocked by a failed input). Nodes
    that share a key (one step reached under two names) run once."""
    import queue
    import threading

    slots = max(getattr(executor, "_max_workers", 1), 1)
    done = set(archive.index()["steps"])  # grows as steps here finish (reported, not merely committed)
    waiting = [node for node in nodes if node.key not in done]
    finished: queue.Queue[tuple[Node, BaseException | None]] = queue.Queue()
    running: dict[str, Node] = {}
    ran: set[str] = set()
    failures: dict[str, BaseException] = {}
    blocked: set[str] = set()

    def work(node: Node) -> None:
        try:
            run_step(node, workdir, executor, progress, resources)
        except Exception as exc:  # noqa: BLE001  (handed to the scheduler, which raises it)
            archive.journal(node.key, {"event": "step_failed", "message": _message(exc), "time": time.time()})
            finished.put((node, exc))
        else:
            finished.put((node, None))

    while waiting or running:
        for node in list(waiting):
            inputs = node.input_keys.values()
            if node.key in running:
                continue  # the same step under another name (e.g. a final model that is an iteration's)
            if node.key in done or node.key in failures:
                waiting.remove(node)  # ... which has finished: its outcome is this node's too
            elif any(key in failures or key in blocked for key in inputs):
                waiting.remove(node)
                blocked.add(node.key)
            elif _may_start(node, running, slots) and all(key in done for key in inputs):
                waiting.remove(node)
                running[node.key] = node
                if slots == 1:
                    work(node)  # in this thread: the serial executor runs its tasks here too
                else:
                    threading.Thread(target=work, args=(node,), name=node.name, daemon=True).start()
        if not running:
            if waiting:  # nothing runs and nothing can start
                missing = sorted({key[:12] for node in waiting for key in node.input_keys.values() if key not in done})
                raise StepFailed(f"{len(waiting)} step(s) wait for inputs that are neither done nor part of "
                                 f"this run: {', '.join(missing)}")
            break
        node, exc = finished.get()
        del running[node.key]
        if exc is None:
            ran.add(node.key)
            done.add(node.key)
        else:
            failures[node.key] = exc
    return ([node.name for node in nodes if node.key in ran],
            [(node.name, failures[node.key]) for node in nodes if node.key in failures],
            [node.name for node in nodes if node.key in blocked])


def _may_start(node: Node, running: dict[str, Node], slots: int) -> bool:
    """Whether a ready node may start beside the running ones: a free slot, and no exclusive step
    (one that measures time) on either side."""
    if not running:
        return True
    return len(running) < slots and not node.step.exclusive and not any(n.step.exclusive for n in running.values())
