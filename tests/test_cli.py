"""The `campaign` command as a user meets it: exit codes, messages, and the read-only verbs."""

from __future__ import annotations

import json

import pytest
from ruamel.yaml import YAML

from ilcampaign.campaign.loader import load_spec
from tests.conftest import ROOT, run_cli
from tests.test_spec_errors import BASE, edited

BAD_SPECS = {
    "yaml syntax": (edited("  name: demo\n", "  name: [demo\n"), 3),
    "duplicate key": (edited("  seed: 42\n", "  seed: 42\n  seed: 43\n"), 4),
    "unknown key": (edited("  density:", "  densty:"), 12),
    "wrong type": (edited("      count: 4\n    - name: BF4", "      count: four\n    - name: BF4"), 8),
    "out of range": (edited("density: 1.21 g/cm^3", "density: -1.21 g/cm^3"), 12),
    "invalid smiles": (edited('"F[B-](F)(F)F"', '"F[B-](F)(F"'), 10),
    "non-neutral": (edited("      count: 4\n  density", "      count: 3\n  density"), 5),
    "unknown kind": (edited("  kind: xtb", "  kind: xtbb"), 14),
    "unknown executor": (BASE + "execution:\n  kind: slurm\n", 16),
    "parsl without config": (BASE + "execution:\n  kind: parsl\n", 15),
    "empty": ("", 1),
}


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
@pytest.mark.parametrize("verb", ["validate", "plan"])
def test_bad_spec_exits_2_with_line_and_no_traceback(tmp_path, case, verb):
    text, line = BAD_SPECS[case]
    spec = tmp_path / "bad.yaml"
    spec.write_text(text)
    result = run_cli(verb, spec)
    assert result.returncode == 2, (case, result.stdout, result.stderr)
    assert f"{spec}:{line}:" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_binary_file_exits_2(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00")
    result = run_cli("run", spec, "-w", tmp_path / "wd")
    assert result.returncode == 2 and "binary" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "wd").exists()  # nothing is created for a bad spec


def test_example_specs_validate_and_plan():
    for name in ("demo", "bmim_bf4"):
        spec = ROOT / "specs" / f"{name}.yaml"
        assert run_cli("validate", spec).returncode == 0
        plan = run_cli("plan", spec, "-w", "/nonexistent/workdir")
        assert plan.returncode == 0, plan.stderr
        for step in ("pack", "initial_data", "label.initial_data"):
            assert step in plan.stdout
        assert "to run" in plan.stdout


def test_show_spec_prints_defaults_that_load_again(tmp_path):
    result = run_cli("show-spec", ROOT / "specs" / "bmim_bf4.yaml")
    assert result.returncode == 0
    resolved = YAML(typ="safe").load(result.stdout)
    assert resolved["reference"]["cutoff"] == "800.0 Ry"
    assert resolved["reference"]["d3"]["cutoff"] == "7.93766 Angstrom"
    assert resolved["failures"]["retry_with"]  # method defaults are filled in and visible
    (tmp_path / "resolved.yaml").write_text(result.stdout)
    assert load_spec(tmp_path / "resolved.yaml") == load_spec(ROOT / "specs" / "bmim_bf4.yaml")


def test_schema_is_json_schema():
    result = run_cli("schema")
    schema = json.loads(result.stdout)
    assert set(schema["properties"]) >= {"campaign", "system", "reference", "initial_data", "failures"}
    assert "cp2k" in json.dumps(schema["$defs"]["CP2K"])


def test_why_unknown_step_is_an_error(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(BASE)
    result = run_cli("why", spec, "nosuchstep")
    assert result.returncode == 2 and "label.initial_data" in result.stderr


def test_run_with_a_bad_parsl_config_exits_2_naming_the_field(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(BASE)
    config = tmp_path / "parsl.yaml"
    config.write_text("provider: slurm\nwalltime: soon\n")
    result = run_cli("run", spec, "--workdir", tmp_path / "wd", "--parsl", config)
    assert result.returncode == 2, result.stderr
    assert "parsl.yaml" in result.stderr and "walltime" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
