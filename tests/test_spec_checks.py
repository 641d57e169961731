"""What `campaign validate` finds at full scale before any step runs: each defect a review found in
the paper spec, put into a spec, is caught with a located message and a fix; the shipped specs
are free of them; a copied spec works from any folder; no spec makes validate print a traceback."""

from __future__ import annotations

import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner

from ilcampaign.campaign.cli import app
from ilcampaign.campaign.loader import load_spec
from ilcampaign.engine.graph import build_graph
from tests.conftest import ROOT

PAPER = ROOT / "specs" / "bmim_bf4.yaml"
SPECS = sorted((ROOT / "specs").glob("*.yaml"))


def validate(path: Path):
    return CliRunner().invoke(app, ["validate", str(path)])


def paper_with(tmp_path: Path, old: str, new: str) -> Path:
    """The paper spec with ``old`` replaced by ``new`` (once), in ``tmp_path``."""
    text = PAPER.read_text()
    assert text.count(old) == 1, old
    path = tmp_path / "bmim_bf4.yaml"
    path.write_text(text.replace(old, new))
    return path


def test_every_shipped_spec_validates_without_errors():
    for spec in SPECS:
        result = validate(spec)
        assert result.exit_code == 0, result.output
        assert "warning" not in result.output, result.output


def test_an_rdf_reaching_past_half_the_smallest_box_is_an_error(tmp_path):
    result = validate(paper_with(tmp_path, "r_max: 6.5 A", "r_max: 7.5 A"))
    assert result.exit_code == 2
    assert re.search(r"bmim_bf4\.yaml:\d+:\d+: analyses\.rdf\.r_max: r_max 7\.5 A is more than half the smallest "
                     r"box this analysis reads \(production\.nvt\.final\.dft_d3_8A\.283K\.8: 13\.5\d A", result.output)
    assert "set r_max to 6.7 A or less" in result.output


def test_model_errors_on_the_test_frames_a_relabel_dropped_is_an_error(tmp_path):
    result = validate(paper_with(tmp_path, "    split: valid   ", "    split: test    "))
    assert result.exit_code == 2
    assert ("analyses.model_errors.models[0]: model final.dft's dataset holds no test frames to score (the "
            "relabel iteration d3_free drops them: its splits leave out test)") in result.output


def test_a_relabel_that_drops_the_validation_frames_is_an_error(tmp_path):
    result = validate(paper_with(tmp_path, "splits: [train, valid]", "splits: [train]"))
    assert result.exit_code == 2
    assert "model d3_free would train on a dataset without valid frames" in result.output


def test_a_finite_size_correction_over_fewer_than_three_sizes_is_a_warning(tmp_path):
    one_size = paper_with(tmp_path, "ion_pairs: [8, 16, 32] ", "ion_pairs: [8, 16]     ")
    result = validate(one_size)
    assert result.exit_code == 0
    assert "analyses.diffusion.runs: warning: the finite-size correction needs 3 box sizes" in result.output
    off = one_size.read_text().replace("    blocks: 5 ", "    finite_size_correction: false\n    blocks: 5 ")
    one_size.write_text(off)
    result = validate(one_size)
    assert result.exit_code == 0 and "warning" not in result.output


def test_a_missing_reference_file_is_located(tmp_path):
    result = validate(paper_with(tmp_path, "shipped: bmim_bf4_density_experimental.csv",
                                 "file: densities.csv"))
    assert result.exit_code == 2
    assert re.search(r":\d+:\d+: references\.density_experimental\.file: no file .*densities\.csv", result.output)
    result = validate(paper_with(tmp_path, "shipped: bmim_bf4_density_experimental.csv", "shipped: rho.csv"))
    assert result.exit_code == 2 and "no file 'rho.csv' ships with ilcampaign" in result.output


def test_every_production_temperature_starts_from_its_sizes_optimised_box():
    """For every production run of every shipped spec: each temperature's first preparation phase
    (or the run itself) reads the optimised (or packed) box of its size, never another temperature's."""
    from ilcampaign.engine.graph.production import temperature_label

    checked = 0
    for path in SPECS:
        spec = load_spec(path)
        nodes = {node.name: node for node in build_graph(spec, base=path.parent)}
        for run_name, run in spec.production.runs.items():
            for pairs in run.ion_pairs:
                for model in spec.resolve_models(run.models):
                    box = (f"production.{run_name}.{model}.{pairs}.optimise" if run.box.optimise is not None
                           else f"production.{run_name}.{pairs}.pack")
                    for temperature in run.temperatures:
                        point = f"production.{run_name}.{model}.{temperature_label(temperature)}.{pairs}"
                        first = next(f"{point}.{phase}" for phase in ("compress", "nvt", "")
                                     if f"{point}.{phase}".rstrip(".") in nodes).rstrip(".")
                        assert nodes[first].inputs["start"] == box, (path.name, first)
                        checked += 1
    assert checked >= 49  # the grid points of the shipped specs


def test_the_paper_runs_the_hybrid_density_at_8_and_20_angstrom():
    spec = load_spec(PAPER)
    hybrid = {name: run for name, run in spec.production.runs.items() if run.hybrid_d3}
    assert sorted(run.d3_cutoff for run in hybrid.values()) == pytest.approx([7.93766, 20.0])
    assert set(spec.analyses["density"].runs) >= set(hybrid)


def test_the_volume_scan_range_is_the_workflows_and_table_1s_is_explained():
    from ilcampaign.campaign.spec.schedule import table

    rows = {row.iteration: row for row in table(load_spec(PAPER))}
    assert "VS 0.113-1.235 g/cm^3" in rows["vs"].conditions
    assert "Table 1's 0.151-1.661 is the same factors on a box at 1.210 g/cm^3" in PAPER.read_text()
    assert 1.210 / 2.0**3 == pytest.approx(0.151, abs=5e-4) and 1.210 / 0.9**3 == pytest.approx(1.660, abs=2e-3)


def test_a_copied_demo_spec_validates_and_plans_in_an_empty_folder(tmp_path):
    shutil.copy(ROOT / "specs" / "demo.yaml", tmp_path / "demo.yaml")
    for command in ("validate", "plan"):
        result = subprocess.run([sys.executable, "-m", "ilcampaign.campaign", command, "demo.yaml"], cwd=tmp_path,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr


def mutations(data, rng: random.Random, count: int):
    """``count`` copies of a spec's YAML tree, each with one node deleted or given a wrong value."""
    paths = []

    def walk(node, path):
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            paths.append((*path, key))
            walk(value, (*path, key))

    walk(data, ())
    for path in rng.sample(paths, min(count, len(paths))):
        for change in ("delete", None, "x", -1, [], {"kind": "nonsense"}):
            yaml = YAML()
            copy = yaml.load(_dump(data))
            parent = copy
            for key in path[:-1]:
                parent = parent[key]
            if change == "delete":
                del parent[path[-1]]
            else:
                parent[path[-1]] = change
            yield path, change, copy


def _dump(data) -> str:
    import io

    stream = io.StringIO()
    YAML().dump(data, stream)
    return stream.getvalue()


@pytest.mark.parametrize("name", [spec.name for spec in SPECS])
def test_validate_never_prints_a_traceback(tmp_path, name):
    """Random single changes to every shipped spec (a node deleted, or set to null, a string, -1, an
    empty list, a mapping with an unknown kind): validate says ok or exits 2, never an exception."""
    data = YAML().load((ROOT / "specs" / name).read_text())
    path = tmp_path / name
    for where, change, mutated in mutations(data, random.Random(name), 8):
        path.write_text(_dump(mutated))
        result = validate(path)
        assert result.exit_code in (0, 2), (where, change, result.output, result.exception)
        assert result.exception is None or isinstance(result.exception, SystemExit), (where, change, result.exception)
