"""The LotF schedule in the spec: inheritance, selection rules, starts, relabel iterations, the
initial pool and its split, dispersion bookkeeping (fast: no science runs here; the paper's
schedule is checked in test_paper_schedule.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase import Atoms

from ilcampaign.campaign.loader import SpecError, load_spec
from ilcampaign.engine.graph import build_graph
from ilcampaign.engine.steps.dataset import DatasetStep
from tests.test_spec_errors import BASE, write

ROOT = Path(__file__).resolve().parents[1]

SAMPLING = """\
sampling:
  - samplers:
      md: {n_steps: 10, interval: 5}
      initial_pool: {}
    selection:
      - {kind: all, samplers: [initial_pool]}
      - {kind: random, n: 2, samplers: [md], split: valid}
  - samplers:
      initial_pool: null
      md: {temperature: 400 K}
    selection: {n: 3}
"""


def spec_with(tmp_path, extra: str, split: str = "initial_split: {n_valid: 2, n_train: 3}\n"):
    return write(tmp_path, BASE + split + extra)


def only_problem(path):
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert len(info.value.problems) == 1, info.value.problems
    return info.value.problems[0]


def test_rules_and_inheritance(tmp_path):
    spec = load_spec(spec_with(tmp_path, SAMPLING))
    first, second = spec.sampling
    assert [(r.kind, r.samplers, r.split) for r in first.selection] == [("all", ["initial_pool"], "auto"),
                                                                      ("random", ["md"], "valid")]
    assert list(second.samplers) == ["md"]  # null drops the inherited initial pool
    assert second.samplers["md"].n_steps == 10 and second.samplers["md"].temperature.start == 400
    assert [(r.kind, r.n, r.samplers) for r in second.selection] == [("bal", 3, None)]  # a mapping is one rule


def test_graph_wires_the_initial_pool_to_the_first_dataset(tmp_path):
    nodes = {n.name: n for n in build_graph(load_spec(spec_with(tmp_path, SAMPLING)), base=tmp_path)}
    assert nodes["iter01.initial_pool"].inputs == {"labelled": "label.initial_data", "dataset": "dataset.initial"}
    assert set(nodes["iter01.select"].inputs) == {"model", "train", "molecules", "pool.md", "pool.initial_pool"}
    assert "iter02.initial_pool" not in nodes
    first = nodes["dataset.initial"].step
    assert (first.n_test, first.n_valid, first.n_train) == (0, 2, 3)


def test_rule_naming_a_missing_sampler(tmp_path):
    problem = only_problem(spec_with(tmp_path, SAMPLING.replace("samplers: [md]", "samplers: [mdd]")))
    assert (problem.line, problem.field_path) == (20, "sampling[0].selection")  # the `selection:` key
    assert "['mdd']" in problem.message and "['initial_pool', 'md']" in problem.message


def test_initial_pool_needs_a_pool(tmp_path):
    problem = only_problem(spec_with(tmp_path, SAMPLING, split=""))
    assert "set initial_split.n_train" in problem.message


def test_n_train_needs_n_valid(tmp_path):
    problem = only_problem(write(tmp_path, BASE + "initial_split: {n_train: 3}\n"))
    assert (problem.line, problem.field_path) == (15, "initial_split.n_train")


def test_bad_rule_field_points_at_the_value(tmp_path):
    problem = only_problem(spec_with(tmp_path, SAMPLING.replace("selection: {n: 3}", "selection: {n: 3, split: tets}")))
    assert (problem.line, problem.field_path) == (26, "sampling[1].selection.split")
    assert "got 'tets'" in problem.message


def frames(n: int, forced: dict[int, str] | None = None) -> list[Atoms]:
    made = [Atoms("H", positions=[[0, 0, i]]) for i in range(n)]
    for index, split in (forced or {}).items():
        made[index].info["split"] = split
    return made


def splits(step: DatasetStep, batch: list[Atoms], has_previous: bool = False) -> list[str]:
    return step._splits(batch, has_previous, np.random.default_rng(0))


def test_first_dataset_counts():
    step = DatasetStep(seed=0, validation_fraction=0.5, fixed_validation=False, n_test=3, n_valid=2, n_train=4)
    got = splits(step, frames(12))
    assert {s: got.count(s) for s in set(got)} == {"test": 3, "valid": 2, "train": 4, "unused": 3}
    again = splits(step, frames(12))
    assert got == again  # seeded


def test_fraction_split_and_forced_splits():
    step = DatasetStep(seed=0, validation_fraction=0.25, fixed_validation=False)
    got = splits(step, frames(9, {0: "valid", 1: "valid", 2: "train"}))
    assert got[:3] == ["valid", "valid", "train"]  # forced by a selection rule
    assert got[3:].count("valid") == 2 and got[3:].count("train") == 4  # 25 % of the 6 free frames
    fixed = DatasetStep(seed=0, validation_fraction=0.25, fixed_validation=True)
    assert splits(fixed, frames(4, {0: "valid"}), has_previous=True) == ["valid", "train", "train", "train"]


def test_first_dataset_asking_for_too_many_frames_fails():
    from ilcampaign.engine.step import StepFailed

    step = DatasetStep(seed=0, validation_fraction=0.5, fixed_validation=False, n_test=5, n_valid=2, n_train=4)
    with pytest.raises(StepFailed, match="asks for 11 frames"):
        splits(step, frames(10))


def test_readme_example_is_a_valid_spec(tmp_path):
    import re

    block = re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)[0]
    spec = load_spec(write(tmp_path, block))
    assert [sorted(it.samplers) for it in spec.sampling] == [["geometry_optimisation", "md"]] * 2
    assert spec.sampling[1].samplers["md"].n_steps == 300  # an iteration inherits what it does not change


# --------------------------------------------------------------------------- dispersion bookkeeping

CP2K = "reference:\n  kind: cp2k\n  basis_set: DZVP-MOLOPT-SR-GTH\n  basis_set_file: BASIS_MOLOPT\n"
HYBRID = """\
sampling:
  - samplers:
      md: {n_steps: 10, interval: 5, hybrid_d3: true}
"""


def hybrid_spec(tmp_path, reference: str, before: str = "") -> Path:
    base = BASE.replace("reference:\n  kind: xtb\n", reference)
    return write(tmp_path, base + "sampling:\n" + before + HYBRID.removeprefix("sampling:\n"))


@pytest.mark.parametrize("reference, contained", [
    (CP2K, "D3(BJ) in CP2K (B97-3c, R_cutoff 7.93766 A, C9 three-body)"),  # the default D3 block
    ("reference:\n  kind: xtb\n", "D4 (built into GFN2-xTB)"),
])
def test_a_hybrid_sampler_on_labels_with_dispersion_is_refused(tmp_path, reference, contained):
    path = hybrid_spec(tmp_path, reference)
    problem = only_problem(path)
    assert problem.field_path == "sampling[0].samplers.md.hybrid_d3"
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if "hybrid_d3" in text)
    assert (problem.line, problem.column) == (line, path.read_text().splitlines()[line - 1].index("hybrid_d3") + 1)
    assert problem.message.startswith("dispersion would be counted twice") and contained in problem.message
    assert "relabel" in problem.hint


def test_a_hybrid_sampler_after_a_d3_free_relabel_is_accepted(tmp_path):
    relabel = "  - name: d3_free\n    relabel: {reference: {d3: null}}\n"
    spec = load_spec(hybrid_spec(tmp_path, CP2K, before=relabel))
    stages = spec.stages()
    assert [s.dispersion for s in stages] == [(), ()]
    assert stages[0].reference.d3 is None and stages[1].reference.d3 is None  # later labels are D3-free too
    nodes = {n.name: n for n in build_graph(spec, base=tmp_path)}
    assert nodes["d3_free.label"].inputs == {"frames": "dataset.initial"}
    assert nodes["d3_free.label"].step.settings[0].d3 is None and nodes["iter02.label"].step.settings[0].d3 is None
    assert nodes["iter02.md"].inputs == {"model": "d3_free.train", "start": "initial_data", "molecules": "molecules"}
    assert nodes["iter02.md"].notes.startswith("model + D3(BJ) by torch-dftd")
    assert nodes["train.initial"].notes == "labels: D3(BJ) in CP2K (B97-3c, R_cutoff 7.93766 A, C9 three-body)"
    assert nodes["iter02.train"].notes == "labels: no dispersion"


@pytest.mark.parametrize("final, message", [
    ("{name: twice, d3: add}", "dispersion would be counted twice: the labels of final model 'twice' already contain"),
    ("{name: nothing, relabel: {d3: null}, d3: remove}", "there is no D3 to remove"),
])
def test_final_models_that_miscount_d3_are_refused(tmp_path, final, message):
    problem = only_problem(write(tmp_path, BASE.replace("reference:\n  kind: xtb\n", CP2K)
                                 + f"final_models:\n  - {final}\n"))
    assert problem.field_path == "final_models[0].d3" and problem.message.startswith(message)


def test_final_models_that_count_d3_once_are_accepted(tmp_path):
    spec = load_spec(write(tmp_path, BASE.replace("reference:\n  kind: xtb\n", CP2K) + """\
final_models:
  - {name: add, relabel: {d3: null}, d3: add, d3_cutoff: 20 A}
  - {name: swap, d3: remove}
"""))
    add, swap = spec.final_stages()
    assert add.dispersion == ("D3(BJ) by torch-dftd (b97-3c, cutoff 20 A, CN cutoff 20 A)",)
    assert swap.dispersion == ()


def test_show_spec_lists_each_models_dispersion(tmp_path):
    from tests.conftest import run_cli

    relabel = "  - name: d3_free\n    relabel: {reference: {d3: null}}\n"
    result = run_cli("show-spec", hybrid_spec(tmp_path, CP2K, before=relabel))
    assert result.returncode == 0, result.stderr
    assert "# train.initial: D3(BJ) in CP2K (B97-3c, R_cutoff 7.93766 A, C9 three-body)" in result.stdout
    assert "# iter02.train: no dispersion" in result.stdout


# --------------------------------------------------------------------------- starts, relabels, names


def test_a_start_must_name_an_earlier_step_that_makes_structures(tmp_path):
    problem = only_problem(spec_with(tmp_path, """\
sampling:
  - samplers:
      md: {n_steps: 10, interval: 5, start: iter02.md}
"""))
    assert problem.field_path == "sampling[0].samplers.md.start"
    assert "no earlier step 'iter02.md'" in problem.message and "initial_data" in problem.hint


def test_starts_are_not_inherited_and_chains_skip_conformers(tmp_path):
    spec = load_spec(spec_with(tmp_path, """\
sampling:
  - samplers:
      md: {n_steps: 10, interval: 5}
      geometry_optimisation: {}
  - samplers:
      md: {start: {step: iter01.md}}
      geometry_optimisation: null
  - samplers:
      md: {n_steps: 20}
  - inherit: false
    samplers:
      conformers: {n_conformers: 2, n_boxes: 2}
    selection: {kind: all}
  - inherit: false
    samplers:
      volume_scan: {start: {step: iter04.conformers, first: 2}}
      md: {n_steps: 10, interval: 5}
"""))
    nodes = {n.name: n for n in build_graph(spec, base=tmp_path)}
    assert nodes["iter01.md"].inputs["start"] == "initial_data"
    assert nodes["iter01.geometry_optimisation"].inputs["start"] == "iter01.md"
    assert nodes["iter02.md"].inputs["start"] == "iter01.md"
    assert nodes["iter03.md"].inputs["start"] == "iter02.md"  # the start of iter02 is not inherited
    assert nodes["iter05.volume_scan"].inputs["start"] == "iter04.conformers"
    assert nodes["iter05.md"].inputs["start"] == "iter05.volume_scan"  # the chain continues from the scan


def test_an_md_start_is_one_structure(tmp_path):
    problem = only_problem(spec_with(tmp_path, "sampling:\n  - samplers:\n      md: {start: {step: initial_data, last: 2}}\n"))
    assert problem.field_path.startswith("sampling[0].samplers.md") and "one structure" in problem.message


def test_relabel_iterations_sample_nothing_and_are_left_out_of_inheritance(tmp_path):
    problem = only_problem(spec_with(tmp_path, "sampling:\n  - relabel: {reference: {accuracy: 0.5}}\n"
                                               "    samplers: {md: {}}\n"))
    assert "a relabel iteration samples nothing: remove samplers" in problem.message
    spec = load_spec(spec_with(tmp_path, """\
sampling:
  - samplers:
      md: {n_steps: 10, interval: 5, temperature: 400 K}
  - relabel: {reference: {accuracy: 0.5}, splits: [train, valid]}
    model: {epochs: 7}
  - samplers:
      md: {n_steps: 20}
"""))
    first, relabel, third = spec.stages()
    assert third.planned.iteration.samplers["md"].temperature.start == 400  # inherited across the relabel
    assert relabel.model.epochs == 7 and third.model.epochs == spec.model.epochs
    assert relabel.reference.accuracy == third.reference.accuracy == 0.5 and first.reference.accuracy == 1.0
    nodes = {n.name: n for n in build_graph(spec, base=tmp_path)}
    assert nodes["iter02.label"].step.splits == ["train", "valid"]
    assert nodes["iter03.dataset"].inputs["previous"] == "iter02.label"


def test_repeated_iterations_count_up_from_a_trailing_number(tmp_path):
    spec = load_spec(spec_with(tmp_path, """\
sampling:
  - name: ml1
    repeat: 3
    samplers:
      md: {n_steps: 10, interval: 5}
  - name: warm
    repeat: 2
  - name: ml6
"""))
    assert [s.planned.name for s in spec.stages()] == ["ml1", "ml2", "ml3", "warm-1", "warm-2", "ml6"]
    problem = only_problem(spec_with(tmp_path, """\
sampling:
  - name: ml1
    repeat: 3
    samplers:
      md: {n_steps: 10, interval: 5}
  - name: ml3
"""))
    assert problem.field_path == "sampling[1].name" and "two iterations are named 'ml3'" in problem.message


def test_an_uncertainty_stop_needs_an_ensemble(tmp_path):
    problem = only_problem(write(tmp_path, BASE + "model: {ensemble: null}\nsampling:\n  - samplers:\n"
                                                  "      md: {n_steps: 10, interval: 5}\n"))
    assert problem.field_path == "sampling[0].samplers.md.uncertainty_threshold"
    assert "single model" in problem.message


def test_n_steps_is_a_multiple_of_interval(tmp_path):
    problem = only_problem(spec_with(tmp_path, "sampling:\n  - samplers:\n      md: {n_steps: 12, interval: 5}\n"))
    assert "must be a multiple of interval" in problem.message


def test_a_named_sampler_with_an_unknown_or_missing_kind_is_located(tmp_path):
    problem = only_problem(spec_with(tmp_path, "sampling:\n  - samplers:\n      nvt: {kind: mdd}\n"))
    assert (problem.field_path, problem.message) == ("sampling[0].samplers.nvt.kind", "unknown kind 'mdd'")
    assert "did you mean 'md'?" in problem.hint
    problem = only_problem(spec_with(tmp_path, "sampling:\n  - samplers:\n      nvt: {n_steps: 10}\n"))
    assert (problem.field_path, problem.message) == ("sampling[0].samplers.nvt", "`kind:` is missing")
    problem = only_problem(spec_with(tmp_path, "sampling:\n  - samplers:\n      md: {}\n  - samplers: null\n"))
    assert problem.field_path == "sampling[1].samplers" and problem.message.endswith("got null")
