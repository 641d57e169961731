"""Long steps resume inside: an MD step killed with SIGKILL mid-run continues from its last finished
chunk (the journal shows no finished chunk started twice) and ends with the trajectory of an
uninterrupted run, bit for bit: ASE NVT with temperature and box ramps, ASE NPT with a ramp, and
our JAX MD. Also: the initial data keep their reference labels (no second calculation)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ilcampaign.archive.frames import read_frames
from ilcampaign.archive.store import Archive
from ilcampaign.campaign.loader import load_spec
from ilcampaign.engine.run.runner import run_graph
from tests.conftest import ROOT, nodes_until, trained_spec

pytestmark = pytest.mark.slow

SAMPLERS = {  # thousands of steps, in chunks of 500 (checkpoints.md_steps)
    "ase-nvt-ramps": "{thermostat: langevin, temperature: {start: 300 K, end: 400 K, amplitude: 30 K, oscillations: 2}, "
                     "box: {amplitude: 0.1 A, oscillations: 1}, timestep: 0.5 fs, n_steps: 2000, interval: 100, "
                     "uncertainty_threshold: null, engine: ase}",
    "ase-npt-ramp": "{ensemble: npt, temperature: {start: 300 K, end: 350 K}, timestep: 0.5 fs, n_steps: 2000, "
                    "interval: 100, uncertainty_threshold: null, engine: ase}",
    "jax-nvt": "{thermostat: nose_hoover_chain, temperature: {start: 300 K, end: 400 K}, timestep: 0.5 fs, "
               "n_steps: 4000, interval: 100, uncertainty_threshold: null, engine: jax}",
}


def spec_for(path: Path, sampler: str) -> Path:
    return trained_spec(path, f"sampling:\n  - samplers:\n      md: {sampler}\n    selection: {{kind: random, n: 1}}\n")


def test_initial_data_labels_come_from_the_md(trained):
    archive = Archive(trained / "archive")
    index = archive.index()["names"]
    label = index["label.initial_data"]
    summary = archive.record(label)["summary"]
    assert summary["n_labelled"] == 4 and summary["n_computed"] == 0  # all four from the MD's own calculations
    assert not [e for e in archive.events(label) if e["event"] == "reference_call"]
    md = read_frames(archive.output(index["initial_data"], "frames.h5"))
    labelled = read_frames(archive.output(label, "frames.h5"))
    assert [f.info["step"] for f in md] == [2, 4, 6, 8]
    for a, b in zip(md, labelled):
        assert a.get_potential_energy() == b.get_potential_energy()
        np.testing.assert_array_equal(a.get_forces(), b.get_forces())
        np.testing.assert_array_equal(a.get_stress(), b.get_stress())


RUNNER = """\
import sys
from pathlib import Path
from ilcampaign.campaign.loader import load_spec
from ilcampaign.engine.graph import build_graph
from ilcampaign.engine.run.runner import run_graph
spec = Path(sys.argv[1])
nodes = build_graph(load_spec(spec), base=spec.parent)
nodes = nodes[: [n.name for n in nodes].index("iter01.md") + 1]
run_graph(nodes, Path(sys.argv[2]), workers=1, progress=lambda *a: None)
"""


def md_events(workdir: Path, key: str, kind: str) -> list[dict]:
    return [e for e in Archive(workdir / "archive").events(key) if e["event"] == kind]


@pytest.mark.parametrize("case", SAMPLERS)
def test_killed_md_resumes_at_its_last_chunk_bit_identical(trained, tmp_path, case):
    spec = spec_for(tmp_path / "spec.yaml", SAMPLERS[case])
    nodes = nodes_until(spec, "iter01.md")
    key = nodes[-1].key
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    shutil.copytree(trained, reference)
    shutil.copytree(trained, killed)
    assert run_graph(nodes, reference, workers=1, progress=lambda *a: None) == ["iter01.md"]

    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(RUNNER))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    process = subprocess.Popen([sys.executable, str(script), str(spec), str(killed)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while len(md_events(killed, key, "task_done")) < 2:
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, "timed out waiting for two chunks"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    archive = Archive(killed / "archive")
    finished = set(archive.done_tasks(key))
    n_steps = load_spec(spec).sampling[0].samplers["md"].n_steps
    n_chunks = n_steps // 500
    assert 2 <= len(finished) < n_chunks and not archive.is_done(key)

    assert run_graph(nodes, killed, workers=1, progress=lambda *a: None) == ["iter01.md"]
    starts = Counter(e["task"] for e in md_events(killed, key, "task_start"))
    assert all(starts[task] == 1 for task in finished), starts  # no finished chunk ran again
    assert sum(starts.values()) <= n_chunks + 1  # at most one chunk started twice: the one killed
    one = read_frames(Archive(reference / "archive").output(key, "frames.h5"))
    two = read_frames(archive.output(key, "frames.h5"))
    assert [f.info["step"] for f in two] == list(range(100, n_steps + 1, 100))
    for a, b in zip(one, two, strict=True):
        np.testing.assert_array_equal(a.positions, b.positions)
        np.testing.assert_array_equal(a.get_momenta(), b.get_momenta())
        np.testing.assert_array_equal(a.cell.array, b.cell.array)
    record = archive.record(key)
    assert record["summary"]["n_chunks"] == n_chunks
    if case.startswith("ase-npt"):
        assert len({round(f.get_volume(), 6) for f in two}) > 1  # the barostat moved the cell
    assert record["summary"]["engine"] == case.split("-")[0]
    assert not list((killed / "archive" / "steps" / key / "tasks").glob("*.state"))  # pruned after the commit
