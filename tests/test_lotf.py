"""The learning-on-the-fly loop end to end on a tiny system: real xTB labels, real apax training,
real MD with the ensemble, the initial pool (ML0), selection rules per sampler with a forced
split; editing one iteration reruns that iteration and the later ones only."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from ilcampaign.archive.frames import read_frames
from ilcampaign.archive.store import Archive
from ilcampaign.campaign.loader import load_spec
from ilcampaign.engine.graph import build_graph
from ilcampaign.engine.run.runner import run_graph
from tests.conftest import tiny_spec

pytestmark = pytest.mark.slow

LOTF = """
model:
  r_max: 3.5 A
  n_basis: 4
  n_radial: 2
  nn: [8, 8]
  epochs: 4
  batch_size: 2
  valid_batch_size: 4
  validation_fraction: 0.34
initial_split: {{n_test: 1, n_valid: 2, n_train: 3}}
sampling:
  - samplers:
      md: {{temperature: 300 K, n_steps: 30, interval: 5, uncertainty_threshold: {first} eV/A, engine: ase}}
      initial_pool: {{}}
    selection:
      - {{kind: all, samplers: [initial_pool]}}
      - {{kind: random, n: 2, samplers: [md]}}
  - samplers:
      md: {{temperature: {second_temperature}, uncertainty_threshold: 1000 eV/A}}
      geometry_optimisation: {{fmax: 0.5 eV/A, max_steps: 5}}
      initial_pool: null
    selection:
      - {{kind: random, n: 1, samplers: [md], split: valid}}
      - {{kind: bal, n: 2}}
final_models:
  - name: tight
    relabel: {{accuracy: 0.5}}
"""


def lotf_spec(path, second_temperature: str = "300 K"):
    spec = tiny_spec(path, initial_data="  kind: rattle\n  n_frames: 8\n  stdev: 0.05 A\n")
    spec.write_text(spec.read_text() + LOTF.format(first=1e-4, second_temperature=second_temperature))
    return spec


def run(spec, workdir):
    nodes = build_graph(load_spec(spec), base=spec.parent)
    return nodes, run_graph(nodes, workdir, workers=1, progress=lambda *a: None)


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    root = tmp_path_factory.mktemp("lotf")
    spec = lotf_spec(root / "spec.yaml")
    nodes, ran = run(spec, root / "wd")
    return spec, root / "wd", {n.name: n.key for n in nodes}, ran


def test_whole_loop_runs_and_records_each_iteration(campaign):
    _, workdir, keys, ran = campaign
    assert ran == list(keys)  # every step, in dependency order
    archive = Archive(workdir / "archive")
    first, second = archive.record(keys["iter01.md"])["summary"], archive.record(keys["iter02.md"])["summary"]
    assert first["stopped_at"] is not None and first["stopped_at"] < 30  # threshold 1e-4 eV/A fires
    assert first["n_candidates"] >= 1  # the configuration that triggered the stop is a candidate
    # 1000 eV/A never fires; this 4-epoch model's run may still end at a guard (never kept as a candidate)
    assert second["stopped_at"] is None or second["stop_reason"].startswith(("contact guard", "bond guard", "exploded"))
    assert second["n_candidates"] == (6 if second["stopped_at"] is None else (second["stopped_at"] - 1) // 5)
    assert first["engine"] == "ase"
    initial = archive.record(keys["dataset.initial"])["summary"]
    assert (initial["n_test"], initial["n_valid"], initial["n_train"], len(initial["unused"])) == (1, 2, 3, 2)
    rules = {name: archive.record(keys[f"{name}.select"])["summary"]["rules"] for name in ("iter01", "iter02")}
    n_md = first["n_candidates"]
    assert [(r["samplers"], r["n_selected"]) for r in rules["iter01"]] == [(["initial_pool"], 2), (["md"], min(2, n_md))]
    labels = {name: archive.record(keys[f"{name}.label"])["summary"] for name in ("iter01", "iter02")}
    assert labels["iter01"]["n_labelled"] + labels["iter01"]["n_refused"] == 2 + min(2, n_md)
    assert labels["iter01"]["n_labelled"] - labels["iter01"]["n_computed"] >= 2  # the pool's labels come from the cache
    n_pool02 = sum(archive.record(keys[f"iter02.{s}"])["summary"]["n_candidates"] for s in ("md", "geometry_optimisation"))
    n_valid = min(1, second["n_candidates"])
    assert [(r["method"], r["n_selected"], r["split"]) for r in rules["iter02"]] == [
        ("random", n_valid, "valid"), ("bal", min(2, n_pool02 - n_valid), "auto")]
    assert rules["iter02"][1]["n_pool"] == n_pool02 - n_valid  # every candidate but the one the first rule took
    assert not set(map(tuple, rules["iter02"][0]["picked"])) & set(map(tuple, rules["iter02"][1]["picked"]))
    assert labels["iter02"]["n_labelled"] + labels["iter02"]["n_refused"] == n_valid + min(2, n_pool02 - n_valid)
    data = read_frames(archive.output(keys["iter02.dataset"], "frames.h5"))
    assert len(data) == 6 + labels["iter01"]["n_labelled"] + labels["iter02"]["n_labelled"]
    if n_valid and labels["iter02"]["n_refused"] == 0:
        forced = data[6 + labels["iter01"]["n_labelled"]]  # the first rule's pick, with its split forced
        assert (forced.info["pool"], forced.info["split"]) == ("md", "valid")
    assert sum(f.info["split"] == "test" for f in data) == 1  # held out in every later dataset
    assert all(np.isfinite(f.get_potential_energy()) for f in data)
    for name in ("train.initial", "iter01.train", "iter02.train"):
        record = archive.record(keys[name])
        assert record["blobs"]["model"] and np.isfinite(record["summary"]["forces_mae"])
        assert set(record["outputs"]) == {"curves.nc", "metrics.nc"}
    assert archive.verify() == []


def test_editing_an_iteration_reruns_it_and_later_ones_only(campaign, tmp_path):
    _, workdir, keys, _ = campaign
    copy = tmp_path / "wd"
    shutil.copytree(workdir, copy)
    edited = lotf_spec(tmp_path / "edited.yaml", second_temperature="{start: 300 K, end: 400 K}")
    nodes, ran = run(edited, copy)
    assert ran == ["iter02.md", "iter02.geometry_optimisation", "iter02.select", "iter02.label",
                   "iter02.dataset", "iter02.train", "final.tight.label", "final.tight.train"]
    new_keys = {n.name: n.key for n in nodes}
    assert all(new_keys[name] == keys[name] for name in keys if not name.startswith(("iter02", "final")))


def test_final_model_is_trained_on_relabelled_data(campaign):
    _, workdir, keys, _ = campaign
    archive = Archive(workdir / "archive")
    relabelled = read_frames(archive.output(keys["final.tight.label"], "frames.h5"))
    dataset = read_frames(archive.output(keys["iter02.dataset"], "frames.h5"))
    assert [f.info["split"] for f in relabelled] == [f.info["split"] for f in dataset]
    assert archive.record(keys["final.tight.label"])["summary"]["settings"][0]["accuracy"] == 0.5
    assert any(a.get_potential_energy() != b.get_potential_energy() for a, b in zip(relabelled, dataset))
    assert archive.record(keys["final.tight.train"])["inputs"] == {"data": keys["final.tight.label"]}


def test_d3_step_adds_torch_dftd_d3_to_the_labels(campaign, tmp_path):
    """The ``d3`` step (final models' d3: add/remove) on real xTB labels; specs refuse adding D3 to
    xTB's labels (GFN2 has D4 built in), so the node is added to the graph by hand."""
    from ilcampaign.campaign.spec import DispersionCorrection
    from ilcampaign.engine.dispersion.label_shift import d3_results
    from ilcampaign.engine.graph import Node, resolve_keys
    from ilcampaign.engine.steps.d3 import D3Step

    spec, workdir, keys, _ = campaign
    copy = tmp_path / "wd"
    shutil.copytree(workdir, copy)
    nodes = build_graph(load_spec(spec), base=spec.parent)
    d3 = DispersionCorrection(cutoff=6.0, cn_cutoff=6.0)
    nodes = resolve_keys(nodes + [Node("shift", D3Step(d3=d3, sign=1), inputs={"frames": "final.tight.label"})])
    assert run_graph(nodes, copy, workers=1, progress=lambda *a: None) == ["shift"]
    archive = Archive(copy / "archive")
    relabelled = read_frames(archive.output(keys["final.tight.label"], "frames.h5"))
    shifted = read_frames(archive.output(nodes[-1].key, "frames.h5"))
    assert [f.info["split"] for f in shifted] == [f.info["split"] for f in relabelled]
    for before, after, correction in zip(relabelled, shifted, d3_results(relabelled[:2], cutoff=6.0, cn_cutoff=6.0)):
        assert correction["energy"] < 0  # dispersion binds
        assert after.get_potential_energy() == pytest.approx(before.get_potential_energy() + correction["energy"], abs=1e-5)
        np.testing.assert_allclose(after.get_forces(), before.get_forces() + correction["forces"], atol=1e-4)


COLLAPSE = """
sampling:
  - samplers:
      md: {temperature: 3000 K, n_steps: 400, interval: 2, uncertainty_threshold: null, engine: ase}
    selection:
      - {kind: random, n: 12}
guards:
  temperature: {blow_up_ratio: 1000, ratio: 999, steps: 100000}   # let the bad model run into a collapse
"""


def test_a_bad_model_collapse_is_stopped_and_never_reaches_the_dataset(campaign, tmp_path):
    """The first model (4 epochs on 3 frames) at 3000 K pulls atoms together or apart: the contact or
    bond guard stops the MD at that frame, which is not a candidate, and the dataset after the
    iteration holds no frame beyond the contact, bond or force bounds."""
    from ilcampaign.campaign.spec import BondGuard, Contacts
    from ilcampaign.engine.structures.guards import FrameCheck, max_force

    spec, workdir, keys, _ = campaign
    copy = tmp_path / "wd"
    shutil.copytree(workdir, copy)
    edited = tmp_path / "collapse.yaml"
    base = spec.read_text()
    edited.write_text(base[: base.index("sampling:")] + COLLAPSE)
    nodes = build_graph(load_spec(edited), base=edited.parent)
    nodes = nodes[: [n.name for n in nodes].index("iter01.dataset") + 1]
    assert run_graph(nodes, copy, workers=1, progress=lambda *a: None) == [
        "iter01.md", "iter01.select", "iter01.label", "iter01.dataset"]
    archive = Archive(copy / "archive")
    new = {n.name: n.key for n in nodes}
    assert new["train.initial"] == keys["train.initial"]  # the same bad model
    md = archive.record(new["iter01.md"])["summary"]
    assert md["stop_reason"].startswith(tuple(f"{guard} guard at step {md['stopped_at']}: " for guard in ("contact", "bond")))
    check = FrameCheck(Contacts(), BondGuard(), [ion.smiles for ion in load_spec(edited).system.ions],
                       read_frames(archive.output(new["molecules"], "frames.h5")))
    pool = read_frames(archive.output(new["iter01.md"], "frames.h5"))
    assert pool and all(f.info["step"] < md["stopped_at"] for f in pool)
    assert all(check(f) is None for f in pool)
    data = read_frames(archive.output(new["iter01.dataset"], "frames.h5"))
    label = archive.record(new["iter01.label"])["summary"]
    assert len(data) == 6 + label["n_labelled"] and label["n_labelled"] + label["n_refused"] == label["n_input"]
    assert all(check(f) is None and max_force(f) <= 50.0 for f in data)
