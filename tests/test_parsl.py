"""Tasks through Parsl (ilcampaign.engine.run.parsl_executor): on local worker processes and on a real one-node
Slurm cluster (tests/slurm_cluster.py) the tiny campaign gives the step keys and the output files of
the local executor, bit for bit; a labelling run interrupted on Slurm (its job cancelled, or the
campaign process killed) loses no finished label and computes none twice, whether Parsl retries
the lost tasks on a new job in the same run or a second run resumes the step."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from ilcampaign.archive.frames import read_frames
from ilcampaign.archive.store import Archive
from ilcampaign.campaign.loader import load_spec
from ilcampaign.engine.graph import build_graph
from ilcampaign.engine.run.parsl_executor import ParslExecutor, load_config
from ilcampaign.engine.run.runner import run_graph
from tests.conftest import ROOT, tiny_spec
from tests.slurm_cluster import slurm_cluster, unavailable

VENV_PATH = f"export PATH={Path(sys.executable).parent}:$PATH"  # Slurm jobs run this Python
LOCAL = "provider: local\nworkers_per_node: 2\naddress: 127.0.0.1\nretries: 1\n"
SLURM = f"""\
provider: slurm
partition: debug
walltime: "00:10:00"
workers_per_node: 2
worker_init: "{VENV_PATH}"
address: 127.0.0.1
heartbeat_period: 1
heartbeat_threshold: 5
status_polling_interval: 3
retries: {{retries}}
"""
RATTLE_12 = "  kind: rattle\n  n_frames: 12\n  stdev: 0.05 A\n"


def nodes_of(spec: Path):
    return build_graph(load_spec(spec), base=spec.parent)


def run_parsl(nodes, workdir: Path, config: Path) -> list[str]:
    executor = ParslExecutor(config, workdir)
    try:
        return run_graph(nodes, workdir, executor._max_workers, lambda *a: None, executor=executor)
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def outputs(workdir: Path) -> dict[str, tuple[str, dict[str, str]]]:
    """{step name: (key, {output file: sha256})} of a work directory's finished steps."""
    archive = Archive(workdir / "archive")
    return {name: (key, archive.record(key)["outputs"]) for name, key in archive.index()["names"].items()}


def events(workdir: Path, key: str, kind: str) -> list[dict]:
    return [e for e in Archive(workdir / "archive").events(key) if e["event"] == kind]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, Path]:
    """The tiny campaign (1 ion pair, 6 rattled frames, GFN2-xTB) run by the local serial executor."""
    root = tmp_path_factory.mktemp("reference")
    spec = tiny_spec(root / "spec.yaml")
    run_graph(nodes_of(spec), root / "wd", workers=1, progress=lambda *a: None)
    return spec, root / "wd"


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A one-node Slurm cluster for this module's tests (skipped without root or Slurm)."""
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    with slurm_cluster(tmp_path_factory.mktemp("slurm")) as cluster:
        yield cluster


def batch_scripts(run_dir: Path) -> list[Path]:
    """The batch scripts Parsl submitted in one run (one per block)."""
    return [p for p in (run_dir / "submit_scripts").glob("parsl.cpu.block-*") if p.suffix not in (".stdout", ".stderr")]


def no_jobs_left(cluster, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while cluster.jobs():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


# ----------------------------------------------------------------------------- configuration
def test_config_errors_name_the_file_and_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("provider: slurm\nworkers_per_node: 0\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: field 'workers_per_node': .*greater than or equal to 1"):
        load_config(path)
    path.write_text("provider: pbs\n")
    with pytest.raises(ValueError, match=r"field 'provider'"):
        load_config(path)
    path.write_text("provider: slurm\npartition: debug\n")
    with pytest.raises(ValueError, match=r"field 'workers_per_node': give workers_per_node"):
        load_config(path)
    path.write_text("executors:\n  cpu: {provider: local}\n  gpu: {provider: local, kinds: [trian]}\n")
    with pytest.raises(ValueError, match=r"field 'executors\.gpu\.kinds': unknown step kind 'trian'"):
        load_config(path)
    path.write_text("provider: local\nwalltime: 10 minutes\n")
    with pytest.raises(ValueError, match=r"field 'walltime'"):
        load_config(path)
    path.write_text("provider: local\nnodes: 2\n")
    with pytest.raises(ValueError, match=r"field 'nodes': Extra inputs"):
        load_config(path)
    with pytest.raises(ValueError, match=r"missing\.yaml: cannot read"):
        load_config(tmp_path / "missing.yaml")
    path = tmp_path / "bad.py"
    path.write_text("config = 3\n")
    with pytest.raises(ValueError, match=r"bad\.py: field 'config'"):
        ParslExecutor(path, tmp_path)


def test_examples_load_and_route_kinds(tmp_path):
    cluster = ParslExecutor(ROOT / "specs" / "parsl" / "slurm_gpu_cluster.yaml", tmp_path)
    assert cluster.labels == ["cpu", "gpu"]
    assert cluster.label_for("label") == "cpu" and cluster.label_for("train") == "gpu"
    assert cluster.label_for("md") == "gpu" and cluster.label_for("pack") == "cpu"
    assert cluster.label_for("inference_cost", {"gpus": 1}) == "gpu"  # by its resources
    assert cluster.label_for("label", {"gpus": 1}) == "cpu"  # kinds win
    assert cluster.gpu_labels == ["gpu"]
    assert cluster.gpu_tasks("train", {"gpus": 1}) and not cluster.gpu_tasks("label", {"gpus": 0})  # GPU hours
    assert cluster._max_workers == 4 * 1 * 8 + 4 * 1 * 2
    local = ParslExecutor(ROOT / "specs" / "parsl" / "local.yaml", tmp_path)
    assert local.labels == ["cpu"] and local._max_workers == 2
    assert local.label_for("train", {"gpus": 1}) == "cpu"  # no GPU executor: the first one
    assert local.run_dir == (tmp_path / "parsl").resolve()
    python = tmp_path / "config.py"
    python.write_text(textwrap.dedent("""\
        from parsl.config import Config
        from parsl.executors import HighThroughputExecutor
        from parsl.providers import LocalProvider
        config = Config(executors=[HighThroughputExecutor(label="htex", max_workers_per_node=3,
                                                          provider=LocalProvider(max_blocks=2))])
        kinds = {"htex": ["label"]}
        """))
    power = ParslExecutor(python, tmp_path)
    assert power._max_workers == 6 and power.label_for("label") == "htex"
    assert power._config.run_dir == str((tmp_path / "parsl").resolve())  # not ./runinfo


# ----------------------------------------------------------------------------- local provider
@pytest.mark.slow
def test_any_callable_and_the_overhead_per_task(tmp_path, capsys):
    """Builtins too (no signature for Parsl), cancelling a waiting future, shutdown; the time one
    no-op task takes through Parsl (README: "Running on a cluster")."""
    config = tmp_path / "local.yaml"
    config.write_text(LOCAL)
    executor = ParslExecutor(config, tmp_path)
    try:
        assert executor.submit(int, "7").result(timeout=120) == 7
        started = time.perf_counter()
        for _ in range(20):
            executor.submit(int).result(timeout=60)
        per_task = (time.perf_counter() - started) / 20
        waiting = executor.submit(time.sleep, 2)
        assert waiting.cancel() and waiting.cancelled()
    finally:
        executor.shutdown(wait=True)
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(int)
    with capsys.disabled():
        print(f"\nParsl (LocalProvider HTEX) overhead: {per_task * 1000:.1f} ms per no-op task")
    assert per_task < 1.0


@pytest.mark.slow
def test_local_provider_gives_the_local_executors_files(reference, tmp_path, monkeypatch):
    spec, expected = reference
    monkeypatch.chdir(tmp_path)  # Parsl's files must not land in the current folder
    config = tmp_path / "local.yaml"
    config.write_text(LOCAL)
    submitted = Counter()
    original = ParslExecutor.submit

    def counting(self, fn, /, *args, **kwargs):
        submitted[args[0].kind] += 1
        return original(self, fn, *args, **kwargs)

    monkeypatch.setattr(ParslExecutor, "submit", counting)
    nodes = nodes_of(spec)
    workdir = tmp_path / "wd"
    # two runs in one process, each with its own ParslExecutor: Parsl starts again after a shutdown
    assert run_parsl(nodes[:3], workdir, config) == ["molecules", "pack", "initial_data"]
    assert run_parsl(nodes, workdir, config) == ["label.initial_data"]
    assert run_parsl(nodes, workdir, config) == []  # nothing to do: Parsl is not even started
    assert submitted == {"molecules": 2, "pack": 1, "initial_rattle": 1, "label": 6}
    assert outputs(workdir) == outputs(expected)
    assert sorted(p.name for p in (workdir / "parsl").iterdir()) == ["000", "001"]
    assert not (tmp_path / "runinfo").exists()
    assert Archive(workdir / "archive").verify() == []


# ----------------------------------------------------------------------------- Slurm
@pytest.mark.slow
def test_slurm_labels_like_the_local_executor(reference, slurm, tmp_path):
    spec, expected = reference
    assert no_jobs_left(slurm)
    config = tmp_path / "slurm.yaml"
    config.write_text(SLURM.format(retries=1))
    workdir = tmp_path / "wd"
    assert run_parsl(nodes_of(spec), workdir, config) == ["molecules", "pack", "initial_data", "label.initial_data"]
    assert outputs(workdir) == outputs(expected)
    scripts = batch_scripts(workdir / "parsl" / "000")
    assert scripts and "#SBATCH --partition=debug" in scripts[0].read_text()
    assert no_jobs_left(slurm), "the Parsl block was not cancelled at shutdown"
    assert Archive(workdir / "archive").verify() == []


RUNNER = """\
import sys
from pathlib import Path
from ilcampaign.campaign.loader import load_spec
from ilcampaign.engine.graph import build_graph
from ilcampaign.engine.run.parsl_executor import ParslExecutor
from ilcampaign.engine.run.runner import run_graph
spec, workdir, config = map(Path, sys.argv[1:])
nodes = build_graph(load_spec(spec), base=spec.parent)
executor = ParslExecutor(config, workdir)
try:
    print(run_graph(nodes, workdir, executor._max_workers, lambda *a: None, executor=executor))
finally:
    executor.shutdown(wait=True, cancel_futures=True)
"""


@pytest.mark.slow
@pytest.mark.parametrize("how", ["scancel", "scancel-retry", "sigkill"])
def test_interrupted_slurm_run_loses_and_repeats_no_label(reference, slurm, tmp_path, how):
    """Interrupt a labelling run on Slurm once some labels are done. ``scancel`` (retries 0): the
    Parsl block's job is cancelled, the run fails, a second run finishes the step. ``scancel-retry``
    (retries 1): Parsl resubmits the lost tasks to a new job and the run finishes by itself.
    ``sigkill``: the campaign process is killed; its interchange goes with it, so the job ends
    within the heartbeat threshold (not at its walltime), and a second run finishes the step.
    Each way every frame is labelled by exactly one reference calculation and one finished task."""
    _, finished = reference
    assert no_jobs_left(slurm)
    workdir = tmp_path / "wd"
    shutil.copytree(finished, workdir)  # molecules and pack done; new labels (another accuracy) to compute
    spec = tiny_spec(tmp_path / "spec.yaml", accuracy=0.5, initial_data=RATTLE_12)
    nodes = nodes_of(spec)
    key = nodes[-1].key
    config = tmp_path / "slurm.yaml"
    config.write_text(SLURM.format(retries=0 if how == "scancel" else 1))
    script = tmp_path / "run.py"
    script.write_text(RUNNER)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    process = subprocess.Popen([sys.executable, str(script), str(spec), str(workdir), str(config)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while len(events(workdir, key, "task_done")) < 2:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "timed out waiting for two labels"
            time.sleep(0.1)
        jobs = slurm.jobs()
        assert len(jobs) == 1, jobs
        if how == "sigkill":
            process.kill()
        else:
            slurm.cancel(jobs[0])
        done_at_interrupt = set(Archive(workdir / "archive").done_tasks(key))
        out, err = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert no_jobs_left(slurm, timeout=60), "a Slurm job outlived its campaign run"
    archive = Archive(workdir / "archive")
    done_before = set(archive.done_tasks(key))  # the first run's workers are gone: nothing more comes
    if how == "scancel-retry":
        assert process.returncode == 0, (out, err)
        assert "label.initial_data" in out
        assert len(batch_scripts(workdir / "parsl" / "000")) >= 2, "no second Slurm job for the lost tasks"
        assert run_parsl(nodes, workdir, config) == []
    else:
        if how == "scancel":
            assert process.returncode != 0 and "ManagerLost" in err, (out, err)
        assert 2 <= len(done_before) < 12 and not archive.is_done(key)
        assert run_parsl(nodes, workdir, config) == ["label.initial_data"]
    assert no_jobs_left(slurm)

    frames = read_frames(archive.output(key, "frames.h5"))
    assert sorted(f.info["source_index"] for f in frames) == list(range(12))
    done = Counter(e["task"] for e in events(workdir, key, "task_done"))
    assert sorted(done) == [f"{i:06d}" for i in range(12)] and set(done.values()) == {1}, done
    starts = Counter(e["task"] for e in events(workdir, key, "task_start"))
    kept = done_at_interrupt if how == "scancel-retry" else done_before
    assert all(starts[task] == 1 for task in kept), starts  # no finished label ran again
    assert sum(starts.values()) <= 12 + 2  # at most the two tasks in flight started twice
    calls = Counter(e["task"] for e in events(workdir, key, "reference_call"))
    assert sorted(calls) == sorted(done) and set(calls.values()) == {1}, calls  # each frame computed once
    assert archive.verify() == []
