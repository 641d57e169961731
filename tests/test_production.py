"""Production runs and every analysis on a tiny trained model, end to end through the engine: the
trajectory keeps every frame with velocities and cells, analyses write datasets with units and
compare with the shipped experimental densities, and a production run killed with SIGKILL
resumes from its last chunk, bit for bit."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter

import h5py
import numpy as np
import pytest

from ilcampaign.archive.arrays import NUMERIC_KINDS, read_dataset
from ilcampaign.archive.frames import read_frames
from ilcampaign.archive.store import Archive
from ilcampaign.engine.run.runner import run_graph
from tests.chromium import find_browser, open_report
from tests.conftest import ROOT, nodes_until, run_cli, trained_spec
from tests.test_production_spec import REFERENCES

pytestmark = pytest.mark.slow

EXTRA = f"""
sampling:
  - samplers:
      md: {{n_steps: 10}}
    selection: {{kind: random, n: 1}}
{REFERENCES}production:
  runs:
    nvt:
      models: [initial]
      temperatures: [298.15 K, 353.15 K, 400 K]
      ion_pairs: [1]
      length: 100 fs
      interval: 4
      equilibration: 20 fs
      engine: jax
      box: {{optimise: {{fmax: 1.0 eV/A, max_steps: 5}}}}
    npt:
      models: [initial]
      ensemble: npt
      temperatures: [298.15 K]
      ion_pairs: [1]
      length: 40 fs
      interval: 2
      box: {{pack_density: 0.9 g/cm^3, density_reference: rho, compress_steps: 10, nvt: 5 fs,
             optimise: {{fmax: 1.0 eV/A, max_steps: 5}}}}
    long:
      models: [initial]
      temperatures: [300 K]
      ion_pairs: [1]
      length: 1000 fs
      interval: 10
      engine: jax
      box: {{optimise: null}}
    hybrid:
      models: [initial]
      temperatures: [298.15 K]
      ion_pairs: [1]
      length: 20 fs
      interval: 4
      hybrid_d3: true
      d3_cutoff: 6 A
      box: {{optimise: null}}
    hybrid_npt:
      models: [initial]
      ensemble: npt
      engine: jax
      temperatures: [298.15 K]
      ion_pairs: [1]
      length: 20 fs
      interval: 4
      hybrid_d3: true
      d3_cutoff: 6 A
      box: {{optimise: null}}
analyses:
  rdf: {{kind: rdf, runs: [nvt], r_max: 3.5 A, bins: 50, pairs: [[{{ion: BMIM, centre: true}}, {{ion: BF4, element: B}}]]}}
  diffusion: {{kind: diffusion, runs: [nvt], sites: [{{ion: BMIM, centre: true}}, {{ion: BF4, element: B}}]}}
  density: {{kind: density, runs: [npt], reference: rho}}
  dihedrals: {{kind: dihedrals, runs: [nvt], ion: BMIM, smarts: "[CH3:1][CH2:2][CH2:3][CH2:4]"}}
  errors: {{kind: model_errors, models: [initial]}}
  cost: {{kind: inference_cost, models: [initial], ion_pairs: [1, 2], paths: [ase, ase+d3], d3_cutoffs: [5 A],
          n_steps: 3, warmup: 1}}
"""
LONG = "production.long.initial.300K.1"
HYBRID = "production.{}.initial.298.15K.1"


@pytest.fixture(scope="module")
def produced(trained, tmp_path_factory):
    """The trained work directory with every production run (but ``long``) and analysis done."""
    root = tmp_path_factory.mktemp("produced")
    spec = trained_spec(root / "spec.yaml", EXTRA)
    shutil.copytree(trained, root / "wd")
    nodes = [n for n in nodes_until(spec, "analysis.cost") if "long" not in n.name and "hybrid" not in n.name]
    nodes = [n for n in nodes if not n.name.startswith("iter01")]
    run_graph(nodes, root / "wd", workers=1, progress=lambda *a: None)
    return spec, Archive(root / "wd" / "archive"), {n.name: n for n in nodes}


def test_trajectory_keeps_every_frame_with_velocities(produced):
    _, archive, nodes = produced
    key = nodes["production.nvt.initial.298.15K.1"].key
    record = archive.record(key)
    assert record["summary"]["n_frames"] == 50 and record["summary"]["engine"] == "jax"
    frames = read_frames(archive.output(key, "trajectory.h5"))
    assert [f.info["step"] for f in frames] == list(range(4, 201, 4))
    assert all(np.abs(f.get_velocities()).max() > 0 for f in frames)
    assert all("mol_id" in f.arrays for f in frames)
    with h5py.File(archive.output(key, "trajectory.h5")) as f:
        assert f["particles/atoms/velocity/value"].attrs["unit"] == "Angstrom fs-1"
        assert f["particles/atoms/position/value"].chunks[0] > 1  # chunked along frames for streaming
    series = read_dataset(archive.output(key, "series.nc"))
    assert series["temperature"].attrs["units"] == "K"
    assert set(range(4, 201, 4)) <= set(series["step"].values.tolist())  # every frame's row


def test_every_analysis_is_stored_with_units(produced):
    _, archive, nodes = produced
    for name in ("analysis.rdf", "analysis.diffusion", "analysis.density", "analysis.dihedrals"):
        record = archive.record(nodes[name].key)
        ds = read_dataset(archive.output(nodes[name].key, "result.nc"))
        for variable in ds.variables.values():
            assert variable.dtype.kind not in NUMERIC_KINDS or "units" in variable.attrs
        assert set(eval_json(ds.attrs["input_steps"]).values()) == set(record["inputs"].values())
    rdf = read_dataset(archive.output(nodes["analysis.rdf"].key, "result.nc"))
    assert {"H-H", "B-F", "BMIM:all:com--BF4:B:all"} <= set(rdf["pair"].values) or "BMIM:all:com--BF4:B" in \
        set(rdf["pair"].values)
    assert rdf.sizes["r"] == 50 and rdf.sizes["run"] == 3
    # one B and four F: the running coordination number of F around B ends at most at 4, never falls
    bf = rdf["coordination"].sel(pair="B-F", run="production.nvt.initial.298.15K.1").values
    assert np.all(np.diff(bf) >= 0) and 0 < bf[-1] <= 4


def eval_json(text):
    import json

    return json.loads(text)


def test_density_states_its_deviation_from_experiment(produced):
    _, archive, nodes = produced
    summary = archive.record(nodes["analysis.density"].key)["summary"]
    (run,) = summary["runs"]
    comparison = run["comparison"]
    assert comparison["available"] and comparison["temperature_K"] == 298.15
    assert comparison["reference_mean"] == pytest.approx((1.2013 + 1.202 + 1.2005) / 3)
    assert comparison["deviation_percent"] == pytest.approx(100 * (run["density_g_cm3"] / comparison["reference_mean"] - 1))
    # the box was compressed to the measured density before the NPT run
    compress = archive.record(nodes["production.npt.initial.298.15K.1.compress"].key)
    assert compress["summary"]["n_steps"] == 10


def test_diffusion_fits_and_says_what_is_missing(produced):
    _, archive, nodes = produced
    summary = archive.record(nodes["analysis.diffusion"].key)["summary"]
    assert len(summary["D_m2_s"]) == 3
    for row in summary["D_m2_s"]:
        for site in ("BMIM:all:com", "BF4:B"):
            value, low, high = row[site]
            assert low <= value <= high
    assert all(not e["available"] and "1 system size" in e["reason"] for e in summary["yeh_hummer"])
    assert summary["comparisons"][0]["available"] is False
    fitted = [e for e in summary["arrhenius"] if e["available"]]
    assert all(len(e["temperatures_K"]) == 3 for e in fitted)


def test_model_errors_and_inference_cost(produced):
    _, archive, nodes = produced
    errors = archive.record(nodes["analysis.errors"].key)["summary"]["models"][0]
    assert errors["model"] == "initial" and errors["split"] == "test" and errors["n_frames"] == 1 and errors["force_mae"] > 0
    cost = read_dataset(archive.output(nodes["analysis.cost"].key, "cost.initial.nc"))
    assert list(cost["n_atoms"].values) == [30, 60]
    assert np.isfinite(cost["time_per_step"].values).all()


RUNNER = """\
import sys
from pathlib import Path
from ilcampaign.engine.run.runner import run_graph
from tests.conftest import nodes_until
run_graph(nodes_until(Path(sys.argv[1]), sys.argv[3]), Path(sys.argv[2]), workers=1, progress=lambda *a: None)
"""


def test_killed_production_resumes_bit_identical(trained, tmp_path):
    spec = trained_spec(tmp_path / "spec.yaml", EXTRA)
    nodes = [n for n in nodes_until(spec, LONG) if n.name in ("train.initial", "production.long.1.pack", LONG)
             or n.name in {m.name for m in nodes_until(spec, "train.initial")}]
    key = nodes[-1].key
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    shutil.copytree(trained, reference)
    shutil.copytree(trained, killed)
    assert run_graph(nodes, reference, workers=1, progress=lambda *a: None) == ["production.long.1.pack", LONG]

    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(RUNNER))
    process = subprocess.Popen([sys.executable, str(script), str(spec), str(killed), LONG],
                               env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    archive = Archive(killed / "archive")
    deadline = time.monotonic() + 600
    while len([e for e in archive.events(key) if e["event"] == "task_done"]) < 2:
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = set(archive.done_tasks(key))
    assert 2 <= len(finished) < 4 and not archive.is_done(key)

    assert run_graph(nodes, killed, workers=1, progress=lambda *a: None) == [LONG]
    starts = Counter(e["task"] for e in archive.events(key) if e["event"] == "task_start")
    assert all(starts[task] == 1 for task in finished)
    one = read_frames(Archive(reference / "archive").output(key, "trajectory.h5"))
    two = read_frames(archive.output(key, "trajectory.h5"))
    assert len(two) == 200
    for a, b in zip(one, two, strict=True):
        np.testing.assert_array_equal(a.positions, b.positions)
        np.testing.assert_array_equal(a.get_velocities(), b.get_velocities())


@pytest.mark.parametrize("run, reason", [("hybrid", "fastest valid engine"), ("hybrid_npt", "requested")])
def test_a_hybrid_production_runs_d3_inside_jax_md(trained, tmp_path, run, reason):
    """engine: auto puts a Nose-Hoover NVT run of the hybrid model (MLP + D3 at the run's cutoff) on
    JAX MD, engine: jax an NPT one; their energies are the hybrid's (tests/test_jax_md.py compares
    them with the ASE path) and the NPT run's density moves."""
    spec = trained_spec(tmp_path / "spec.yaml", EXTRA)
    base = {m.name for m in nodes_until(spec, "train.initial")}
    nodes = [n for n in nodes_until(spec, HYBRID.format(run))
             if n.name in base or n.name.startswith(f"production.{run}.")]
    shutil.copytree(trained, tmp_path / "wd")
    assert run_graph(nodes, tmp_path / "wd", workers=1, progress=lambda *a: None) == [
        f"production.{run}.1.pack", HYBRID.format(run)]
    archive = Archive(tmp_path / "wd" / "archive")
    summary = archive.record(nodes[-1].key)["summary"]
    assert summary["engine"] == "jax" and summary["engine_reason"] == reason
    assert summary["n_frames"] == 10
    density = read_dataset(archive.step_dir(nodes[-1].key) / "series.nc")["density"].values
    assert (np.ptp(density) > 1e-6) == (run == "hybrid_npt")


@pytest.mark.skipif(find_browser() is None, reason="needs Debian chromium (.ci/run installs it)")
def test_report_draws_every_result_figure_in_chromium(produced, tmp_path):
    spec, archive, _ = produced
    result = run_cli("report", spec, "--workdir", archive.root.parent, "--out", tmp_path / "report.html")
    assert result.returncode == 0, result.stderr
    _, figures = open_report(tmp_path / "report.html", find_browser())
    for name in ("fig1_parity", "fig2_inference_cost", "fig3_rdf", "fig5_dihedrals", "fig6_arrhenius", "fig7_density",
                 "learning_curves"):
        drawn = figures[name]
        assert drawn["missing"] is None and drawn["width"] > 100 and drawn["height"] > 100 and drawn["paths"] > 5, drawn
    assert "Not available" in figures["lotf_conditions"]["missing"]  # iteration 1 was left out of this archive
