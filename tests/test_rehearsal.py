"""campaign rehearse: the miniature of a spec has the real graph's steps (every kind and name, sizes
renamed), the real labels' dispersion at every stage, and the same geometric ratios; a rehearsal of
the demo and of the paper spec runs every step to the end (slow, on this CPU)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ilcampaign.campaign.loader import load_spec
from ilcampaign.campaign.rehearsal.forecast import frames_per_step, plan
from ilcampaign.campaign.rehearsal.outcome import counterparts
from ilcampaign.campaign.rehearsal.scale import miniature
from ilcampaign.engine.graph import build_graph
from ilcampaign.engine.graph.checks import box_length, graph_problems
from tests.conftest import ROOT

SPECS = sorted((ROOT / "specs").glob("*.yaml"))


@pytest.fixture(scope="module", params=[path.name for path in SPECS])
def rehearsed(request):
    path = ROOT / "specs" / request.param
    spec = load_spec(path)
    small = miniature(spec)
    return path, spec, small, build_graph(spec, base=path.parent), build_graph(small.spec, base=path.parent)


def test_the_miniature_has_every_step_of_the_real_graph(rehearsed):
    _, _, small, real, mini = rehearsed
    mapping = counterparts(real, mini, small)
    assert len(mini) == len(real) and sorted(mapping.values()) == sorted(node.name for node in mini)
    kinds = {node.name: node.step.kind for node in mini}
    assert all(kinds[mapping[node.name]] == node.step.kind for node in real)


def terms(dispersion: tuple[str, ...]) -> list[str]:
    """Dispersion terms in words without their cutoffs (a miniature scales them with its box)."""
    return [re.sub(r"\d+(\.\d+)?", "#", term) for term in dispersion]


def test_every_model_is_trained_on_labels_with_the_real_dispersion(rehearsed):
    _, spec, small, _, _ = rehearsed
    assert [terms(stage.dispersion) for stage in small.spec.stages()] == [terms(s.dispersion) for s in spec.stages()]
    assert [terms(f.dispersion) for f in small.spec.final_stages()] == [terms(f.dispersion) for f in spec.final_stages()]
    assert terms(small.spec.reference.dispersion()) == terms(spec.reference.dispersion())


def test_geometric_ratios_stay_and_the_miniature_passes_the_full_scale_checks(rehearsed):
    path, spec, small, _, mini = rehearsed
    s = small.length_factor
    assert small.spec.model.r_max / spec.model.r_max == pytest.approx(s, rel=1e-5)
    assert small.spec.d3.cutoff / spec.d3.cutoff == pytest.approx(s, rel=1e-5)
    for name, analysis in spec.analyses.items():
        if analysis.kind == "rdf":
            assert small.spec.analyses[name].r_max / analysis.r_max == pytest.approx(s, rel=1e-5)
    for name, run in spec.production.runs.items():
        small_run = small.spec.production.runs[name]
        real_box = box_length(spec, name, run.ion_pairs[0], run.temperatures[0], path.parent)
        small_box = box_length(small.spec, name, small_run.ion_pairs[0], run.temperatures[0], path.parent)
        assert small_box / real_box == pytest.approx((small_run.ion_pairs[0] / run.ion_pairs[0]) ** (1 / 3))
        assert len(set(small_run.ion_pairs)) == len(run.ion_pairs)  # finite-size fits keep their points
    assert [p for p in graph_problems(small.spec, mini, path.parent) if not p.warning] == []


def test_the_paper_miniature_keeps_the_splits_and_selections_in_proportion():
    spec = load_spec(ROOT / "specs" / "bmim_bf4.yaml")
    small = miniature(spec)
    split = small.spec.initial_split
    assert (split.n_test, split.n_valid, split.n_train) == (7, 2, 2)  # 500, 100, 100 of 1,200 frames x 1/75
    assert small.spec.initial_data.n_steps // small.spec.initial_data.interval == 16
    frames = frames_per_step(small.spec)
    assert frames["d3_free.label"] == frames["ml15.train"] and frames["ml16.train"] > frames["d3_free.label"]
    changes = "\n".join(small.changes)
    assert "reference: cp2k -> stand_in" in changes and "production.runs.nvt.ion_pairs: [8, 16, 32] -> [2, 4, 7]" in changes


def test_the_forecast_counts_the_papers_reference_calls():
    spec = load_spec(ROOT / "specs" / "bmim_bf4.yaml")
    planned = {step.name: step for step in plan(spec, build_graph(spec, base=ROOT / "specs"))}
    # GFN-FF drives the initial MD: its 12,000 steps are no reference calls; CP2K labels the 1,200 kept frames
    assert (planned["initial_data"].unit, planned["initial_data"].work) == ("MD steps (GFN-FF)", 12_000)
    assert (planned["label.initial_data"].unit, planned["label.initial_data"].work) == ("reference calls", 1_200)
    reference_driven = spec.model_copy(update={"initial_data": spec.initial_data.model_copy(update={"driver": "reference"})})
    planned = {step.name: step for step in plan(reference_driven, build_graph(reference_driven, base=ROOT / "specs"))}
    assert (planned["initial_data"].unit, planned["initial_data"].work) == ("reference calls", 12_000)
    assert planned["label.initial_data"].work == 0  # read from the calculation cache
    assert planned["ml1.label"].work == 50 and planned["vs.label"].work == 50
    assert planned["production.nvt.final.dft_d3_8A.283K.32"].work == 40_000_000 * 32 * 30  # 20 ns at 0.5 fs
    # the RDF passes over every frame (one per 200 steps, and the first) of the 15 NVT runs: 8, 16 and 32 pairs of
    # 30 atoms at five temperatures
    assert (planned["analysis.rdf"].unit, planned["analysis.rdf"].work) == (
        "frames x atoms", 5 * (8 + 16 + 32) * 30 * (40_000_000 // 200 + 1))
    # Fig. 2's timings: one model through jax, ase and ase+d3 at 8 and 20 A (4 runs), 20 steps after 5 of
    # warm-up, at 10, 20, 80 and 270 pairs of 30 atoms
    assert (planned["analysis.inference_cost"].unit, planned["analysis.inference_cost"].work) == (
        "MD steps x atoms", 4 * (20 + 5) * (10 + 20 + 80 + 270) * 30)
    # Fig. 1's errors: Table 1's 280 validation frames of the 10-pair box, for each of the two final models
    assert (planned["analysis.model_errors"].unit, planned["analysis.model_errors"].work) == (
        "frames x atoms", 2 * 280 * 10 * 30)


def rehearse(spec: Path, workdir: Path) -> dict:
    """``campaign rehearse`` with one worker: its steps share one process's compiled code (the paper
    spec's steps then take 931 s of CPU, not 1,255 s as with two workers; docs/how-to/rehearse.md),
    and the suite's other worker keeps the second core."""
    result = subprocess.run([sys.executable, "-m", "ilcampaign.campaign", "rehearse", spec, "-w", workdir,
                             "--workers", "1"], capture_output=True, text=True, timeout=3600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads((workdir / "rehearsal.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["bmim_bf4.yaml", "demo.yaml"])
def test_a_rehearsal_runs_every_step_of_the_real_graph(tmp_path, name):
    """A shipped spec copied into an empty folder, as a new user starts, rehearses to the end."""
    spec = tmp_path / name
    shutil.copy(ROOT / "specs" / name, spec)
    real = build_graph(load_spec(spec), base=spec.parent)
    outcome = rehearse(spec, tmp_path / "rehearsal")
    ran = {step["name"]: step for step in outcome["outcomes"]}
    assert set(ran) == {node.name for node in real}
    assert all(step["state"] == "done" for step in ran.values()), [s for s in ran.values() if s["state"] != "done"]
    assert {ran[node.name]["kind"] for node in real} == {node.step.kind for node in real}
    assert (tmp_path / "rehearsal" / "report.html").exists()
    assert outcome["forecast"] and all(row["wall_s"] is not None for row in outcome["forecast"])


def test_the_forecast_gives_hours_from_the_estimates_and_flags_tasks_over_the_walltime():
    from ilcampaign.campaign.rehearsal.forecast import forecast

    path = ROOT / "specs" / "bmim_bf4.yaml"
    spec = load_spec(path)
    rows = {row.kind: row for row in forecast(spec, build_graph(spec, base=path.parent), {},
                                              parsl=ROOT / "specs" / "parsl" / "slurm_gpu_cluster.yaml")}
    estimates = spec.execution.estimates
    assert rows["label"].core_hours == pytest.approx(rows["label"].work * estimates.reference_call_core_hours)
    assert rows["production"].gpu_hours == pytest.approx(
        rows["production"].work / estimates.md_atom_steps_per_gpu_second / 3600)
    flags = [flag for row in rows.values() for flag in row.flags]
    assert any(flag.startswith("final.dft.train: a task takes") and "more than Parsl's retries (1) allow" in flag
               for flag in flags)
    assert not any(flag.startswith("ml1.train") for flag in flags)  # 500 epochs on 200 frames fit in 24 h
    bare = spec.model_copy(update={"execution": spec.execution.model_copy(update={"estimates": type(estimates)()})})
    assert all(row.core_hours is None and row.gpu_hours is None and not row.flags
               for row in forecast(bare, build_graph(bare, base=path.parent), {}))


class _Archive:
    """A finished run of some steps of a graph, as ``measured_steps`` reads it."""

    def __init__(self, nodes, records: dict[str, dict], tasks: dict[str, dict]):
        self.by_key = {node.key: node.name for node in nodes}
        self.records, self.tasks = records, tasks

    def is_done(self, key):
        return self.by_key[key] in self.records

    def record(self, key):
        return self.records[self.by_key[key]]

    def done_tasks(self, key):
        return self.tasks.get(self.by_key[key], {})


def test_the_time_model_fits_run_time_without_compilation_to_the_work_done():
    """Steps of one kind whose tasks took 2 s each plus 1 ms a unit of work, with compile times
    that have nothing to do with the work: the fit finds (2, 0.001); an MD run that stopped at
    its threshold and an optimisation that converged count the work they did, not their limits."""
    from ilcampaign.campaign.rehearsal.forecast import agreement, facts, fit, forecast, measured_steps
    from ilcampaign.engine.run.chunks import chunk_id

    path = ROOT / "specs" / "bmim_bf4.yaml"
    spec = load_spec(path)
    nodes = build_graph(spec, base=path.parent)
    known = facts(spec, nodes)
    md = [node for node in nodes if node.step.kind == "md"][:4]
    optimisation = next(node for node in nodes if node.step.kind == "geometry_optimisation")
    records, tasks = {}, {}
    for i, node in enumerate(md):
        steps_run = node.step.sampler.n_steps // (i + 1)
        work = steps_run * known[node.name].atoms
        records[node.name] = {"n_tasks": i + 1, "summary": {"steps_run": steps_run, "engine": "jax"},
                              "task_compile_s": 5.0 * i,
                              "task_wall_s": 2.0 * (i + 1) + 1e-3 * work + 5.0 * i}
    structures = optimisation.step.start().count
    tasks[optimisation.name] = {chunk_id(0, 2, optimisation.step.prefix(j)): {"n_frames": 2}
                               for j in range(structures)}
    records[optimisation.name] = {"n_tasks": structures, "summary": {}, "task_compile_s": 0.0, "task_wall_s": 1.0}
    measured = measured_steps(_Archive(nodes, records, tasks), spec, nodes)
    assert [measured[node.name].effort for node in md] == [
        node.step.sampler.n_steps // (i + 1) * known[node.name].atoms for i, node in enumerate(md)]
    assert measured[optimisation.name].effort == 2 * structures * known[optimisation.name].atoms
    assert measured[optimisation.name].effort < optimisation.step.work(known[optimisation.name]).amount
    a, b = fit(measured)["md (jax)"]
    assert a == pytest.approx(2.0) and b == pytest.approx(1e-3)
    rows = {row["kind"]: row for row in agreement(forecast(spec, nodes, {"md (jax)": (a, b)}, measured=measured))}
    assert rows["md"]["ratio"] == pytest.approx(1.0)
    assert rows["md"]["compile_s"] == pytest.approx(5.0 * (0 + 1 + 2 + 3))
    assert rows["md"]["planned_s"] > rows["md"]["done_s"]  # every md step of the graph, to its full length


def test_the_readme_forecast_of_the_paper_spec_is_what_the_forecast_gives():
    from ilcampaign.campaign.rehearsal.forecast import forecast

    path = ROOT / "specs" / "bmim_bf4.yaml"
    spec = load_spec(path)
    rows = {row.kind: row for row in forecast(spec, build_graph(spec, base=path.parent), {},
                                              parsl=ROOT / "specs" / "parsl" / "slurm_gpu_cluster.yaml")}
    readme = (ROOT / "README.md").read_text()
    label, production, train, md = rows["label"], rows["production"], rows["train"], rows["md"]
    assert f"| label | {label.steps} | {label.work:,.0f} reference calls | " \
           f"{label.core_hours:,.0f} core-hours |" in readme
    assert f"| production | {production.steps} | {production.work:.2e} MD steps x atoms | " \
           f"{production.gpu_hours:,.0f} GPU-hours |" in readme
    assert f"| train | {train.steps} | {train.work:.2e} epochs x frames | {train.gpu_hours:,.0f} GPU-hours " \
           f"({len(train.flags)} trainings outrun" in readme
    assert f"| md | {md.steps} | {md.work:.2e} MD steps x atoms | {md.gpu_hours:,.0f} GPU-hours |" in readme
    assert f"| initial_md | 1 | {rows['initial_md'].work:,.0f} MD steps of GFN-FF |" in readme


def test_units_whose_cost_grows_with_what_they_do_not_name_are_weighed_by_it():
    """A reference call by its box's atoms, a hybrid MD step and a D3 relabel by the D3 cutoff
    sphere's volume; MD steps get a line per engine, hybrids their own."""
    from ilcampaign.campaign.rehearsal.forecast import facts

    path = ROOT / "specs" / "bmim_bf4.yaml"
    spec = load_spec(path)
    nodes = build_graph(spec, base=path.parent)
    known = facts(spec, nodes)
    by_kind = {}
    for node in nodes:
        by_kind.setdefault((node.step.kind, getattr(node.step, "d3", None) is not None), node)
    label = by_kind[("label", False)]
    work = label.step.work(known[label.name])
    assert work.effort == work.amount * known[label.name].atoms
    hybrid, plain, d3 = by_kind[("production", True)], by_kind[("production", False)], by_kind[("d3", True)]
    volume = 4 / 3 * 3.141592653589793 * hybrid.step.d3.cutoff ** 3
    assert hybrid.step.work(known[hybrid.name]).effort == pytest.approx(
        hybrid.step.sampler.n_steps * known[hybrid.name].atoms * volume)
    assert hybrid.step.work(known[hybrid.name]).variant.endswith("hybrid")
    assert plain.step.work(known[plain.name]).variant in {"ase", "jax"}
    assert d3.step.work(known[d3.name]).weight == pytest.approx(4 / 3 * 3.141592653589793 * d3.step.d3.cutoff ** 3)
