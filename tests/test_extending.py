"""docs/development/extending.md is true: its example analysis, added to a copy of ilcampaign by
writing exactly the files the guide names (its code blocks, by their titles), validates, plans,
runs on a production run's series and is drawn in the report."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap

from tests.conftest import ROOT, trained_spec

GUIDE = ROOT / "docs" / "development" / "extending.md"

EXTRA = """\
sampling:
  - samplers:
      md: {n_steps: 10}
    selection: {kind: random, n: 1}
production:
  runs:
    nvt: {temperatures: [300 K, 350 K], ion_pairs: [1], length: 2 ps, interval: 10, box: {optimise: null}}
analyses:
  thermostat: {kind: thermostat, runs: [nvt], tolerance: 0.02}
"""

#: in the copy: commit a made-up production series for each run the analysis reads (300 and 350 K
#: targets, the second run 5 % too hot), run only the analysis step, then draw its figure
CHECK = """
import sys
from pathlib import Path

import numpy as np
import xarray as xr

from ilcampaign.archive.arrays import write_dataset
from ilcampaign.archive.store import Archive
from ilcampaign.campaign.loader import load_spec
from ilcampaign.engine.graph import build_graph
from ilcampaign.engine.graph.manifest import campaign_manifest
from ilcampaign.engine.run.runner import run_graph
from ilcampaign.reports.figures import FIGURES, Plot
from ilcampaign.reports.view import CampaignView

spec_path, workdir = Path(sys.argv[1]), Path(sys.argv[2])
spec = load_spec(spec_path)
nodes = build_graph(spec, base=spec_path.parent)
analysis = next(node for node in nodes if node.name == "analysis.thermostat")
assert type(analysis.step).__name__ == "ThermostatStep" and analysis.step.kind == "thermostat"
archive = Archive(workdir / "archive")
archive.write_manifest(campaign_manifest(spec, spec_path, nodes))
rng = np.random.default_rng(0)
for slot, name in sorted(analysis.inputs.items()):
    key = analysis.input_keys[slot]
    target = 300.0 if "300K" in name else 350.0
    time = np.arange(4000) * 0.5
    series = xr.Dataset({"temperature": ("step", target * (1.05 if target == 350.0 else 1.0)
                                         + rng.normal(0.0, 3.0, time.size), {"units": "K"})},
                        coords={"time": ("step", time, {"units": "fs"})})
    archive.step_dir(key).mkdir(parents=True)
    write_dataset(archive.step_dir(key) / "series.nc", series)
    archive.commit(key, name, {"kind": "production", "params": {}, "inputs": {}, "summary": {},
                               "started": "2026-01-01T00:00:00+00:00", "finished": "2026-01-01T00:01:00+00:00"},
                   ["series.nc"])
run_graph([analysis], workdir, workers=1, progress=lambda *a: None)
record = archive.record(analysis.key)
print("within tolerance:", record["summary"]["runs_within_tolerance"])
view = CampaignView(archive, archive.manifest())
(plot,) = next(build for build in FIGURES if build.__name__ == "thermostat_check")(view)
assert isinstance(plot, Plot), plot
print("figure:", plot.id, sorted(plot.data))
"""


def guide_blocks() -> dict[str, str]:
    """The guide's code blocks by title (a file path, or ``<path> (appended)``)."""
    blocks = re.findall(r'```python title="([^"]+)"\n(.*?)```', GUIDE.read_text(), re.DOTALL)
    return {title: code for title, code in blocks}


def test_the_guide_names_three_files():
    assert sorted(guide_blocks()) == ["campaign/spec/analyses/thermostat.py", "engine/steps/thermostat.py",
                                      "reports/figures.py (appended)"]


def test_the_example_analysis_runs_when_added_as_the_guide_says(tmp_path):
    copy = tmp_path / "src" / "ilcampaign"
    for package in ("archive", "campaign", "engine", "publish", "reports"):
        shutil.copytree(ROOT / package, copy / package, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "__init__.py").write_text("")
    for title, code in guide_blocks().items():
        path = copy / title.removesuffix(" (appended)")
        if title.endswith("(appended)"):
            path.write_text(path.read_text() + "\n\n" + code)
        else:
            assert not path.exists(), f"{title} is a new file in the guide"
            path.write_text(code)
    spec = trained_spec(tmp_path / "spec.yaml", EXTRA)
    env = dict(os.environ, PYTHONPATH=str(copy.parent))
    check = subprocess.run([sys.executable, "-m", "ilcampaign.campaign", "validate", spec], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stderr
    assert "steps)" in check.stdout
    typo = spec.with_name("typo.yaml")
    typo.write_text(spec.read_text().replace("kind: thermostat", "kind: thermostats"))
    wrong = subprocess.run([sys.executable, "-m", "ilcampaign.campaign", "validate", typo], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300)
    assert wrong.returncode == 2 and "did you mean 'thermostat'?" in wrong.stderr, wrong.stderr
    run = subprocess.run([sys.executable, "-c", textwrap.dedent(CHECK), spec, tmp_path / "wd"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "within tolerance: ['production.nvt.iter01.300K.1']" in run.stdout
    assert "figure: thermostat" in run.stdout
