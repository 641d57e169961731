"""The LotF schedule in the spec: inheritance, selection rules, the initial pool and its split,
and the paper's Table 1 as written in specs/bmim_bf4.yaml (fast: no science runs here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase import Atoms

from campaign.loader import SpecError, load_spec
from engine.graph import build_graph
from engine.steps.dataset import Dataset
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
    assert set(nodes["iter01.select"].inputs) == {"model", "train", "pool.md", "pool.initial_pool"}
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


def splits(step: Dataset, batch: list[Atoms], has_previous: bool = False) -> list[str]:
    return step._splits(batch, has_previous, np.random.default_rng(0))


def test_first_dataset_counts():
    step = Dataset(seed=0, validation_fraction=0.5, fixed_validation=False, n_test=3, n_valid=2, n_train=4)
    got = splits(step, frames(12))
    assert {s: got.count(s) for s in set(got)} == {"test": 3, "valid": 2, "train": 4, "unused": 3}
    again = splits(step, frames(12))
    assert got == again  # seeded


def test_fraction_split_and_forced_splits():
    step = Dataset(seed=0, validation_fraction=0.25, fixed_validation=False)
    got = splits(step, frames(9, {0: "valid", 1: "valid", 2: "train"}))
    assert got[:3] == ["valid", "valid", "train"]  # forced by a selection rule
    assert got[3:].count("valid") == 2 and got[3:].count("train") == 4  # 25 % of the 6 free frames
    fixed = Dataset(seed=0, validation_fraction=0.25, fixed_validation=True)
    assert splits(fixed, frames(4, {0: "valid"}), has_previous=True) == ["valid", "train", "train", "train"]


def test_first_dataset_asking_for_too_many_frames_fails():
    from engine.step import StepFailed

    step = Dataset(seed=0, validation_fraction=0.5, fixed_validation=False, n_test=5, n_valid=2, n_train=4)
    with pytest.raises(StepFailed, match="asks for 11 frames"):
        splits(step, frames(10))


def test_paper_schedule_is_table_1():
    spec = load_spec(ROOT / "specs" / "bmim_bf4.yaml")
    nodes = {n.name: n for n in build_graph(spec, base=ROOT / "specs")}
    split = spec.initial_split
    assert (split.energy_outlier_sigma, split.n_test, split.n_valid, split.n_train) == (3, 500, 100, 100)
    iterations = [n.group for n in nodes.values() if n.name.endswith(".train") and n.group.startswith("ml")]
    assert iterations == ["ml0", *(f"ml1-{i}" for i in range(1, 5)), *(f"ml5-{i}" for i in range(1, 4)),
                          *(f"ml8-{i}" for i in range(1, 4)), "ml11", "ml12", "ml13", "ml14", "ml15", "ml16", "ml17"]
    assert nodes["ml0.select"].step.selection[0].n == 400
    ml13 = [(r.kind, r.n, r.samplers) for r in nodes["ml13.select"].step.selection]
    assert ml13 == [("bal", 50, ["md"]), ("random", 50, ["volume_scan"])]
    ml17 = [(r.kind, r.n, r.samplers, r.split) for r in nodes["ml17.select"].step.selection]
    assert ml17[:2] == [("random", 40, ["nvt"], "valid"), ("random", 80, ["nvt"], "train")] and ml17[-1][:2] == ("bal", 4)
    assert nodes["ml5-1.md"].step.sampler.temperature.amplitude == 150
    assert nodes["ml13.md"].step.sampler.ensemble == "npt" and nodes["ml17.npt"].step.sampler.hybrid_d3


def test_readme_example_is_a_valid_spec(tmp_path):
    import re

    block = re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)[0]
    spec = load_spec(write(tmp_path, block))
    assert [it.samplers["initial_pool" if i == 0 else "md"].kind for i, it in enumerate(spec.sampling)][:2] == [
        "initial_pool", "md"]
    problem = only_problem(write(tmp_path, block.replace("relabel: {accuracy: 0.1}", "relabel: {d3: null}")))
    assert problem.message == "final_models[0] (d3_20A): d3: unknown key"  # xTB has no d3 block
