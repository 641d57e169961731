"""ilcampaign.engine.run.runner's step scheduling: independent steps run at the same time and share the task
slots; a failing step stops only the steps that depend on it. The steps here are test kinds (a
task that waits, a task that fails) run on a thread pool, so that timing and failure are exact."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import pytest

from ilcampaign.archive.store import Archive
from ilcampaign.engine.graph import Node
from ilcampaign.engine.hashing import step_key
from ilcampaign.engine.run.runner import GraphFailed, run_graph
from ilcampaign.engine.step import SingleTaskStep, StepContext, StepFailed, TaskResult, register


@register
class Wait(SingleTaskStep):
    """Waits ``seconds`` (or fails if ``fail``), then records when."""

    kind: ClassVar[str] = "test_wait"
    task: ClassVar[str] = "wait"
    inputs: ClassVar[tuple[str, ...] | None] = None

    seconds: float = 0.0
    fail: bool = False
    label: str = ""

    def run_task(self, ctx: StepContext, task_id: str) -> TaskResult:
        started = time.time()
        time.sleep(self.seconds)
        if self.fail:
            raise StepFailed(f"{self.label} failed on purpose")
        return TaskResult([], {"started": started, "ended": time.time()})

    def finish(self, ctx: StepContext) -> tuple[list[str], dict[str, Any]]:
        return [], dict(ctx.done_tasks()[self.task])


def graph(*specs: tuple[str, dict, list[str]]) -> list[Node]:
    """Nodes from (name, Wait fields, names of inputs), with their keys."""
    nodes: dict[str, Node] = {}
    for name, fields, inputs in specs:
        step = Wait(label=name, **fields)
        slots = {f"in{i}": source for i, source in enumerate(inputs)}
        keys = {slot: nodes[source].key for slot, source in slots.items()}
        nodes[name] = Node(name, step, slots, key=step_key(step.kind, step.version, step, keys), input_keys=keys)
    return list(nodes.values())


def journal_times(workdir, node: Node) -> tuple[float, float]:
    """(step_start, step_done) from the step's journal."""
    events = [json.loads(line) for line in (workdir / "archive" / "steps" / node.key / "journal.jsonl").open()]
    times = {event["event"]: event["time"] for event in events}
    return times["step_start"], times["step_done"]


def test_independent_steps_overlap_and_dependents_wait(tmp_path):
    nodes = graph(("a", {"seconds": 1.0}, []), ("b", {"seconds": 1.0}, []), ("c", {}, ["a", "b"]))
    with ThreadPoolExecutor(max_workers=2) as pool:
        assert run_graph(nodes, tmp_path, workers=2, progress=lambda *a: None, executor=pool) == ["a", "b", "c"]
    (a_start, a_done), (b_start, b_done), (c_start, _) = (journal_times(tmp_path, node) for node in nodes)
    assert a_start < b_done and b_start < a_done  # a and b overlapped
    assert c_start >= max(a_done, b_done)  # c waited for both
    archive = Archive(tmp_path / "archive")
    records = [archive.record(node.key) for node in nodes]
    assert records[0]["summary"]["started"] < records[1]["summary"]["ended"]
    assert not archive.verify()


def test_a_failure_stops_only_its_descendants(tmp_path):
    nodes = graph(("bad", {"seconds": 0.2, "fail": True}, []), ("good", {"seconds": 1.0}, []),
                  ("after_bad", {}, ["bad"]), ("after_both", {}, ["bad", "good"]), ("after_good", {}, ["good"]))
    with ThreadPoolExecutor(max_workers=2) as pool, pytest.raises(GraphFailed) as failed:
        run_graph(nodes, tmp_path, workers=2, progress=lambda *a: None, executor=pool)
    assert [name for name, _ in failed.value.failures] == ["bad"]
    assert failed.value.blocked == ["after_bad", "after_both"]
    archive = Archive(tmp_path / "archive")
    done = {node.name for node in nodes if archive.is_done(node.key)}
    assert done == {"good", "after_good"}
    assert not archive.verify()
    # the failure is in the failed step's journal; a rerun without the failure finishes the rest
    events = [json.loads(line)["event"] for line in (archive.step_dir(nodes[0].key) / "journal.jsonl").open()]
    assert "step_failed" in events
    fixed = graph(("bad", {"seconds": 0.2}, []), ("good", {"seconds": 1.0}, []), ("after_bad", {}, ["bad"]),
                  ("after_both", {}, ["bad", "good"]), ("after_good", {}, ["good"]))
    with ThreadPoolExecutor(max_workers=2) as pool:
        assert run_graph(fixed, tmp_path, workers=2, progress=lambda *a: None, executor=pool) == [
            "bad", "after_bad", "after_both"]


def test_a_step_reached_under_two_names_runs_once(tmp_path):
    """As the paper's final D3-free model is its last iteration's training: one key, two names."""
    a, = graph(("a", {"seconds": 0.5}, []))
    again = Node("a_again", a.step, {}, key=a.key, input_keys={})
    after = Wait(label="after")
    later = Node("after", after, {"in0": "a_again"}, key=step_key(after.kind, after.version, after, {"in0": a.key}),
                 input_keys={"in0": a.key})
    with ThreadPoolExecutor(max_workers=2) as pool:
        ran = run_graph([a, again, later], tmp_path, workers=2, progress=lambda *args: None, executor=pool)
    assert ran == ["a", "a_again", "after"]
    events = [json.loads(line)["event"] for line in (tmp_path / "archive" / "steps" / a.key / "journal.jsonl").open()]
    assert events.count("step_start") == 1


def test_one_worker_runs_steps_one_after_another_in_graph_order(tmp_path):
    nodes = graph(("a", {"seconds": 0.3}, []), ("b", {"seconds": 0.3}, []))
    assert run_graph(nodes, tmp_path, workers=1, progress=lambda *a: None) == ["a", "b"]
    (_, a_done), (b_start, _) = (journal_times(tmp_path, node) for node in nodes)
    assert b_start >= a_done


def test_a_single_failure_is_raised_as_itself(tmp_path):
    nodes = graph(("bad", {"fail": True}, []), ("other", {}, []))
    with pytest.raises(StepFailed, match="bad failed on purpose"):
        run_graph(nodes, tmp_path, workers=1, progress=lambda *a: None)
    assert Archive(tmp_path / "archive").is_done(nodes[1].key)  # the independent step still ran


@register
class WaitAlone(Wait):
    """A Wait that must run alone, as a step that measures time does."""

    kind: ClassVar[str] = "test_wait_alone"
    exclusive: ClassVar[bool] = True


def test_an_exclusive_step_runs_alone(tmp_path):
    nodes = graph(("a", {"seconds": 0.5}, []), ("b", {"seconds": 0.5}, []))
    alone = WaitAlone(label="alone", seconds=0.5)
    nodes.insert(1, Node("alone", alone, key=step_key(alone.kind, alone.version, alone, {})))
    with ThreadPoolExecutor(max_workers=2) as pool:
        assert run_graph(nodes, tmp_path, workers=2, progress=lambda *a: None, executor=pool) == ["a", "alone", "b"]
    (a_start, a_done), (alone_start, alone_done), (b_start, b_done) = (journal_times(tmp_path, n) for n in nodes)
    assert a_start < b_done and b_start < a_done  # the others overlapped
    assert alone_start >= max(a_done, b_done) or alone_done <= min(a_start, b_start)  # alone overlapped nothing


def test_resources_come_from_the_kind_and_the_spec_and_are_recorded_with_cpu_hours(tmp_path):
    nodes = graph(("a", {"seconds": 0.2}, []))
    run_graph(nodes, tmp_path, workers=1, progress=lambda *a: None, resources={"test_wait": {"cores": 4, "gpus": None}})
    record = Archive(tmp_path / "archive").record(nodes[0].key)
    assert record["resources"] == {"cores": 4, "mpi_ranks": 1, "gpus": 0, "memory_gb": None, "walltime_h": None}
    assert record["cpu_hours"] == pytest.approx(record["task_wall_s"] * 4 / 3600)
    assert record["cpu_hours"] > 0 and record["gpu_hours"] == 0.0


def test_training_and_md_want_a_gpu():
    import ilcampaign.engine.steps  # noqa: F401  (fills the registry)
    from ilcampaign.engine.step import REGISTRY

    assert all(REGISTRY[kind].task_resources(None)["gpus"] == 1 for kind in ("train", "md", "production", "inference_cost"))
    assert REGISTRY["pack"].task_resources(None)["gpus"] == 0


def test_a_filesystem_without_locks_is_refused_clearly(tmp_path, monkeypatch):
    import errno
    import fcntl

    from ilcampaign.engine.run.runner import LockedError

    def no_locks(*_):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.raises(LockedError, match="filesystem without file locks .No locks available"):
        run_graph(graph(("a", {}, [])), tmp_path, workers=1, progress=lambda *a: None)
