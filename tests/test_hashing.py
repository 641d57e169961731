"""Step keys depend on kind, version, canonical parameters and input keys, and nothing else."""

from __future__ import annotations

from pathlib import Path

from ilcampaign.campaign.loader import load_spec
from ilcampaign.engine.graph import build_graph
from ilcampaign.engine.hashing import canonical, digest
from tests.conftest import tiny_spec

CP2K_SPEC = """\
campaign: {{name: k, seed: 1}}
system:
  ions:
    - {{name: BMIM, smiles: "CCCCn1cc[n+](C)c1", count: 2}}
    - {{name: BF4, smiles: "F[B-](F)(F)F", count: 2}}
  density: 1.21 g/cm^3
reference:
  kind: cp2k
  {a}
  {b}
  command: {command}
initial_data: {{kind: rattle, n_frames: 3}}
"""


def keys(path: Path) -> dict[str, str]:
    return {node.name: node.key for node in build_graph(load_spec(path))}


def test_canonical_floats_and_order():
    assert digest({"a": 800, "b": [1.0, 2]}) == digest({"b": [1, 2.0], "a": 800.0})
    assert canonical(0.1 + 0.2) == 0.3
    assert digest({"a": 1}) != digest({"a": 1.5})
    assert canonical(True) is True  # booleans are not folded into integers


def test_key_order_and_number_spelling_do_not_matter(tmp_path):
    variants = [
        ("cutoff: 800 Ry", "rel_cutoff: 60 Ry", "cp2k_shell"),
        ("rel_cutoff: 60.0 Ry", "cutoff: 800.0 Ry", "cp2k_shell"),
        ("cutoff: 10884.554409746897 eV", "rel_cutoff: 60 Ry", "cp2k_shell"),
        # the executable is not part of the result: changing it must not rerun anything
        ("cutoff: 800 Ry", "rel_cutoff: 60 Ry", "/opt/cp2k/bin/cp2k_shell.psmp"),
    ]
    found = []
    for i, (a, b, command) in enumerate(variants):
        path = tmp_path / f"s{i}.yaml"
        path.write_text(CP2K_SPEC.format(a=a, b=b, command=command))
        found.append(keys(path))
    assert all(k == found[0] for k in found)
    changed = tmp_path / "changed.yaml"
    changed.write_text(CP2K_SPEC.format(a="cutoff: 600 Ry", b="rel_cutoff: 60 Ry", command="cp2k_shell"))
    assert keys(changed)["label.initial_data"] != found[0]["label.initial_data"]


def test_label_setting_changes_label_only(tmp_path):
    base = keys(tiny_spec(tmp_path / "a.yaml"))
    for variant in (
        tiny_spec(tmp_path / "b.yaml", accuracy=0.5),
        tiny_spec(tmp_path / "d.yaml", on_failure="skip"),
    ):
        changed = keys(variant)
        assert changed["pack"] == base["pack"]
        assert changed["initial_data"] == base["initial_data"]
        assert changed["label.initial_data"] != base["label.initial_data"]


def test_upstream_change_propagates(tmp_path):
    base = keys(tiny_spec(tmp_path / "a.yaml"))
    more = keys(tiny_spec(tmp_path / "b.yaml", initial_data="  kind: rattle\n  n_frames: 7\n"))
    assert more["pack"] == base["pack"]
    assert more["initial_data"] != base["initial_data"]
    assert more["label.initial_data"] != base["label.initial_data"]  # its input changed


def test_keys_are_stable_across_processes(tmp_path):
    """Same spec, same keys, in a fresh interpreter (no dependence on hash randomisation)."""
    import subprocess
    import sys

    spec = tiny_spec(tmp_path / "a.yaml")
    code = (
        "from ilcampaign.campaign.loader import load_spec; from ilcampaign.engine.graph import build_graph; "
        f"print([n.key for n in build_graph(load_spec({str(spec)!r}))])"
    )
    outputs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).parent.parent)}).stdout
        for seed in ("1", "2")
    }
    assert len(outputs) == 1
    assert outputs.pop().strip() == str([n.key for n in build_graph(load_spec(spec))])


def test_failure_tolerance_is_not_part_of_the_key(tmp_path):
    """Raising max_failed_fraction after a failed run must not relabel what was labelled."""
    assert keys(tiny_spec(tmp_path / "a.yaml")) == keys(tiny_spec(tmp_path / "b.yaml", max_failed_fraction=0.3))
