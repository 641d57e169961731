"""End to end through the CLI: run, plan/why after an edit, kill -9 and resume, the lock."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ilcampaign.archive.frames import read_frames
from ilcampaign.archive.store import Archive
from ilcampaign.campaign.loader import load_spec
from ilcampaign.engine.graph import build_graph
from tests.conftest import MD, ROOT, campaign_cmd, run_cli, tiny_spec

pytestmark = pytest.mark.slow


def node_keys(spec: Path) -> dict[str, str]:
    return {node.name: node.key for node in build_graph(load_spec(spec))}


def events(workdir: Path, key: str, kind: str) -> list[dict]:
    return [e for e in Archive(workdir / "archive").events(key) if e["event"] == kind]


def start(spec: Path, workdir: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(campaign_cmd("run", spec, "-w", workdir), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for(predicate, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert process.poll() is None, f"run ended early: {process.stderr.read()}"
        assert time.monotonic() < deadline, "timed out waiting for the run"
        time.sleep(0.01)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny campaign (1 ion pair, 12 rattled frames, GFN2-xTB) run to the end once."""
    root = tmp_path_factory.mktemp("finished")
    spec = tiny_spec(root / "spec.yaml", initial_data="  kind: rattle\n  n_frames: 12\n  stdev: 0.05 A\n")
    result = run_cli("run", spec, "-w", root / "wd")
    assert result.returncode == 0, result.stderr
    return spec, root / "wd"


def test_run_labels_every_frame(finished):
    spec, workdir = finished
    keys = node_keys(spec)
    archive = Archive(workdir / "archive")
    frames = read_frames(archive.output(keys["label.initial_data"], "frames.h5"))
    assert [f.info["source_index"] for f in frames] == list(range(12))
    for frame in frames:
        assert np.isfinite(frame.get_potential_energy())
        assert frame.get_forces().shape == (len(frame), 3)
        assert frame.get_stress().shape == (6,)
    record = archive.record(keys["label.initial_data"])
    assert record["summary"]["n_labelled"] == 12 and record["summary"]["n_failed"] == 0
    assert {"host", "software", "started", "finished", "wall_s", "cpu_s", "task_compile_s", "params", "inputs"} <= set(record)
    assert run_cli("verify", workdir).returncode == 0
    status = run_cli("status", spec, "-w", workdir)
    assert status.returncode == 0 and "label.initial_data" in status.stdout


def test_edit_reruns_only_the_changed_step(finished, tmp_path):
    spec, workdir = finished
    copy = tmp_path / "wd"
    shutil.copytree(workdir, copy)
    edited = tiny_spec(tmp_path / "edited.yaml", accuracy=0.5,
                       initial_data="  kind: rattle\n  n_frames: 12\n  stdev: 0.05 A\n")
    plan = run_cli("plan", edited, "-w", copy)
    assert plan.returncode == 0, plan.stderr
    rows = {line.split("│")[1].strip(): line for line in plan.stdout.splitlines() if line.startswith("│ ")}
    assert "done" in rows["pack"] and "done" in rows["initial_data"]
    assert "stale" in rows["label.initial_data"]
    why = run_cli("why", edited, "label.initial_data", "-w", copy)
    assert "settings[0].accuracy: 1 -> 0.5" in why.stdout, why.stdout
    again = run_cli("run", edited, "-w", copy)
    assert again.returncode == 0, again.stderr
    keys = node_keys(edited)
    for name in ("pack", "initial_data"):
        assert keys[name] == node_keys(spec)[name]
        assert not events(copy, keys[name], "step_start")[1:], f"{name} ran again"
    assert len(events(copy, keys["label.initial_data"], "reference_call")) == 12


@pytest.mark.parametrize("kill_after", [0, 2, 7])
def test_kill_during_labelling_and_resume(finished, tmp_path, kill_after):
    spec, workdir = finished
    copy = tmp_path / "wd"
    shutil.copytree(workdir, copy)
    edited = tiny_spec(tmp_path / "edited.yaml", accuracy=0.3,
                       initial_data="  kind: rattle\n  n_frames: 12\n  stdev: 0.05 A\n")
    key = node_keys(edited)["label.initial_data"]
    process = start(edited, copy)
    if kill_after == 0:
        wait_for(lambda: events(copy, key, "task_start"), process)
    else:
        wait_for(lambda: len(events(copy, key, "task_done")) >= kill_after, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    archive = Archive(copy / "archive")
    done_at_kill = set(archive.done_tasks(key))
    assert not archive.is_done(key)
    assert run_cli("verify", copy).returncode == 0  # the archive is readable and intact mid-step

    result = run_cli("run", edited, "-w", copy)
    assert result.returncode == 0, result.stderr
    frames = read_frames(archive.output(key, "frames.h5"))
    assert sorted(f.info["source_index"] for f in frames) == list(range(12))  # each exactly once
    calls = Counter(e["task"] for e in events(copy, key, "reference_call"))
    for task in done_at_kill:
        assert calls[task] == 1, f"finished task {task} was recomputed"
    assert all(count == 1 for count in calls.values())  # the cache catches a task killed after its calculation
    assert run_cli("verify", copy).returncode == 0


def test_kill_during_md_resumes_bit_identical(tmp_path):
    md = MD.format(n_steps=24, interval=4, chunk=6)
    reference = tiny_spec(tmp_path / "ref.yaml", initial_data=md)
    assert run_cli("run", reference, "-w", tmp_path / "ref").returncode == 0
    spec = tiny_spec(tmp_path / "spec.yaml", initial_data=md)
    key = node_keys(spec)["initial_data"]
    process = start(spec, tmp_path / "killed")
    wait_for(lambda: len(events(tmp_path / "killed", key, "task_done")) >= 2, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = set(Archive(tmp_path / "killed" / "archive").done_tasks(key))
    assert {"steps000000000-000000006", "steps000000006-000000012"} <= finished
    assert run_cli("run", spec, "-w", tmp_path / "killed").returncode == 0
    chunk_starts = Counter(e["task"] for e in events(tmp_path / "killed", key, "task_start"))
    assert all(chunk_starts[task] == 1 for task in finished) and len(chunk_starts) == 4
    for name in ("initial_data", "label.initial_data"):
        one = read_frames(Archive(tmp_path / "ref" / "archive").output(node_keys(spec)[name], "frames.h5"))
        two = read_frames(Archive(tmp_path / "killed" / "archive").output(node_keys(spec)[name], "frames.h5"))
        assert len(one) == len(two) == 6
        for a, b in zip(one, two):
            np.testing.assert_array_equal(a.positions, b.positions)
            np.testing.assert_array_equal(a.get_forces(), b.get_forces())
    assert [f.info["step"] for f in two] == [4, 8, 12, 16, 20, 24]
    # the guards stay silent on a healthy campaign (the initial MD would have failed on its contact or
    # temperature guard)
    records = {name: Archive(tmp_path / "ref" / "archive").record(node_keys(spec)[name])["summary"]
               for name in ("molecules", "pack", "label.initial_data")}
    assert {name: made["source"] for name, made in records["molecules"]["ions"].items()} == {
        "BMIM": "rdkit-mmff+GFN2-xTB", "BF4": "rdkit-uff+GFN2-xTB"}
    assert records["pack"]["rejected"] == [] and records["label.initial_data"]["n_refused"] == 0


def test_second_run_is_refused(tmp_path):
    spec = tiny_spec(tmp_path / "spec.yaml", initial_data=MD.format(n_steps=400, interval=50, chunk=50))
    workdir = tmp_path / "wd"
    process = start(spec, workdir)
    try:
        wait_for(lambda: (workdir / "run.lock").exists() and (workdir / "run.lock").read_text(), process)
        second = run_cli("run", spec, "-w", workdir)
        assert second.returncode == 3
        assert "in use by a running campaign" in second.stderr
        assert f"pid {process.pid}" in second.stderr
    finally:
        process.kill()
        process.wait()


def test_failure_policy_skip_records_and_stop_stops(tmp_path):
    """max_iterations 1 makes every xTB SCF fail: skip records each failure; stop ends the run."""
    spec = tiny_spec(tmp_path / "skip.yaml", on_failure="skip", max_failed_fraction=1.0)
    spec.write_text(spec.read_text().replace("  kind: xtb\n", "  kind: xtb\n  max_iterations: 1\n"))
    result = run_cli("run", spec, "-w", tmp_path / "wd")
    assert result.returncode == 0, result.stderr
    key = node_keys(spec)["label.initial_data"]
    summary = Archive(tmp_path / "wd" / "archive").record(key)["summary"]
    assert summary["n_failed"] == 6 and summary["n_labelled"] == 0
    assert all(attempts[0]["error"] for attempts in summary["failed"].values())

    stop = tiny_spec(tmp_path / "stop.yaml", on_failure="stop")
    stop.write_text(stop.read_text().replace("  kind: xtb\n", "  kind: xtb\n  max_iterations: 1\n"))
    result = run_cli("run", stop, "-w", tmp_path / "wd")
    assert result.returncode == 1
    assert "failed for frame 0" in result.stderr and "Traceback" not in result.stderr
    key = node_keys(stop)["label.initial_data"]
    failed = events(tmp_path / "wd", key, "step_failed")
    assert failed and "frame 0" in failed[0]["message"]
    assert len(events(tmp_path / "wd", key, "reference_failed")) == 1  # stopped at the first failure
    assert json.loads((tmp_path / "wd" / "archive" / "index.json").read_text())["steps"]  # earlier steps kept


def test_retry_policy_uses_the_retry_setting_and_records_it(tmp_path):
    spec = tiny_spec(tmp_path / "retry.yaml")
    spec.write_text(spec.read_text().replace("  kind: xtb\n", "  kind: xtb\n  max_iterations: 1\n").replace(
        "  on_failure: retry\n", "  on_failure: retry\n  retry_with: [{max_iterations: 300}]\n"))
    result = run_cli("run", spec, "-w", tmp_path / "wd")
    assert result.returncode == 0, result.stderr
    key = node_keys(spec)["label.initial_data"]
    archive = Archive(tmp_path / "wd" / "archive")
    summary = archive.record(key)["summary"]
    assert summary["n_labelled"] == 6 and summary["levels_used"] == [1]
    assert summary["settings"][1]["max_iterations"] == 300
    frames = read_frames(archive.output(key, "frames.h5"))
    assert {f.info["reference_level"] for f in frames} == {1}
    assert len(events(tmp_path / "wd", key, "reference_failed")) == 6  # each first attempt recorded
