"""specs/bmim_bf4.yaml against the paper's workflow, iteration by iteration: the resolved spec (and
the step graph it makes: which step each sampler starts from) is written in the fixture's row
format and compared with tests/data/paper_schedule.csv, written by hand from SCHEDULE.md. Fast:
nothing runs."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from ilcampaign.campaign.loader import load_spec
from ilcampaign.campaign.spec.schedule import table
from ilcampaign.campaign.spec import CampaignSpec, dispersion
from ilcampaign.campaign.units import from_internal
from ilcampaign.engine.graph import build_graph
from tests.conftest import ROOT, run_cli

SPEC = ROOT / "specs" / "bmim_bf4.yaml"
FIXTURE = Path(__file__).parent / "data" / "paper_schedule.csv"


def fixture_rows() -> list[dict[str, str]]:
    lines = [line for line in FIXTURE.read_text().splitlines() if not line.startswith("#")]
    return list(csv.DictReader(lines))


def _number(value: float) -> str:
    return f"{value:g}"


def _temperature(ramp) -> str:
    if ramp.end is None and not (ramp.amplitude and ramp.oscillations):
        return _number(ramp.start)
    return f"{_number(ramp.start)}-{_number(ramp.end or ramp.start)}~{_number(ramp.amplitude)}/{_number(ramp.oscillations)}"


def _box(box) -> str:
    if box is None:
        return ""
    text = f"{_number(box.end)}+-{_number(box.amplitude)}/{_number(box.oscillations)}"
    assert box.scaling == "affine"
    return text + (f",{_number(box.ramp_oscillations)}" if box.ramp_oscillations is not None else "")


def _model(model) -> str:
    members = 1 if model.ensemble is None else model.ensemble.n_members
    return f"{members}/{model.epochs}/{model.batch_size}/{_number(model.r_max)}/{'zbl' if model.zbl else '-'}"


def _labels(terms: tuple[str, ...]) -> str:
    if not terms:
        return "none"
    (term,) = terms
    return "cp2k_d3" if "in CP2K" in term else "torch_d3" if "torch-dftd" in term else term


def spec_rows(spec: CampaignSpec) -> list[dict[str, str]]:
    """The resolved spec in the fixture's format."""
    nodes = {node.name: node for node in build_graph(spec, base=SPEC.parent)}
    split, md = spec.initial_split, spec.initial_data
    rows = [{"iteration": "initial", "element": "iteration",
             "kind": f"{_number(md.temperature)} K at {from_internal(spec.system.density, 'density', 'g/cm^3'):.3f} g/cm3",
             "other": f"test {split.n_test}; valid {split.n_valid}; train {split.n_train}; "
                      f"{_number(split.energy_outlier_sigma)} sigma filter",
             "labels": _labels(dispersion(spec.reference)), "model": _model(spec.model)}]
    for stage in spec.stages():
        name, it = stage.planned.name, stage.planned.iteration
        kind = "sample" if it.relabel is None else "relabel " + "+".join(it.relabel.splits)
        rows.append({"iteration": name, "element": "iteration", "kind": kind, "labels": _labels(stage.dispersion),
                     "model": _model(stage.model)})
        for sampler_name, s in it.samplers.items():
            row = {"iteration": name, "element": "sampler", "name": sampler_name, "kind": s.kind}
            node = nodes[f"{name}.{sampler_name}"]
            if "start" in node.inputs:
                first = f"[:{s.start.first}]" if s.start.first is not None else ""
                row["start"] = node.inputs["start"] + first
            if s.kind == "md":
                method = (f"npt/{_number(s.thermostat_time)}/{_number(s.barostat_time)}" if s.ensemble == "npt"
                          else f"nvt/{s.thermostat}/{_number(s.friction)}")
                row.update(method=method, temperature_K=_temperature(s.temperature), box_A=_box(s.box),
                           pressure_bar=_number(from_internal(s.pressure, "pressure", "bar")) if s.ensemble == "npt"
                           else "", timestep_fs=_number(s.timestep), n_steps=str(s.n_steps), interval=str(s.interval),
                           stop_eV_A="none" if s.uncertainty_threshold is None else _number(s.uncertainty_threshold),
                           hybrid_d3="yes" if s.hybrid_d3 else "no")
            elif s.kind == "geometry_optimisation":
                row["method"] = f"{s.optimizer}/{_number(s.fmax)}"
            elif s.kind == "volume_scan":
                low, high = s.length_factors
                row.update(method=f"{s.optimise.optimizer}/{_number(s.optimise.fmax)}",
                           other=f"{_number(low)}-{high:.1f} x {s.n_frames}")
            elif s.kind == "conformers":
                rho = lambda d: f"{from_internal(d, 'density', 'g/cm^3'):.3f}"  # noqa: E731
                row["other"] = (f"{s.n_conformers} conformers; {s.n_units} units at {rho(s.unit_density)}; "
                                f"{s.n_boxes} boxes at {rho(s.density)}")
            rows.append(row)
        for index, rule in enumerate(it.selection if it.relabel is None else []):
            rows.append({"iteration": name, "element": "rule", "name": str(index), "kind": rule.kind, "n": str(rule.n),
                         "samplers": ",".join(rule.samplers or ["all"]), "split": rule.split})
    for final in spec.final_stages():
        kind = "keep" if final.d3 is None else f"{final.final.d3} {_number(final.d3.cutoff)}/{_number(final.d3.cn_cutoff)}"
        rows.append({"iteration": f"final.{final.final.name}", "element": "final", "kind": kind,
                     "labels": _labels(final.dispersion), "model": _model(final.model)})
    header = fixture_rows()[0].keys()
    return [{key: row.get(key, "") for key in header} for row in rows]


def differing_iterations(rows: list[dict[str, str]]) -> set[str]:
    expected = fixture_rows()
    assert len(rows) == len(expected), "rows added or missing"
    return {b["iteration"] for a, b in zip(rows, expected) if a != b}


def test_paper_spec_is_the_workflow_schedule():
    rows, expected = spec_rows(load_spec(SPEC)), fixture_rows()
    for ours, theirs in zip(rows, expected, strict=True):
        assert ours == theirs


MUTATIONS = {  # an edit of specs/bmim_bf4.yaml -> the iterations whose rows it changes
    "ml5 amplitude": ("temperature: {start: 230 K, end: 500 K, amplitude: 150 K, oscillations: 10}\n  - name: ml8",
                      "temperature: {start: 230 K, end: 500 K, amplitude: 140 K, oscillations: 10}\n  - name: ml8",
                      {"ml5", "ml6", "ml7"}),
    "ml9 ramp": ("box: {ramp_oscillations: 0.5}", "box: {ramp_oscillations: 1.0}", {"ml9", "ml10"}),
    "vs structures": ("start: {step: ml11.conformers, first: 5}", "start: {step: ml11.conformers, first: 4}", {"vs"}),
    "ml13 barostat": ("barostat_time: 75 fs        # pfactor", "barostat_time: 70 fs        # pfactor",
                      {"ml13", "ml14", "ml15"}),
    "ml14 start": ("        start: vs.volume_scan\n        temperature: {start: 300 K",
                   "        temperature: {start: 300 K", {"ml14"}),
    "relabel splits": ("splits: [train, valid]", "splits: [train, valid, test]", {"d3_free"}),
    "ml16 split": ("{kind: random, n: 100, samplers: [md], split: valid}",
                   "{kind: random, n: 100, samplers: [md], split: train}", {"ml16"}),
    "ml17 hybrid": ("hybrid_d3: true             #", "hybrid_d3: false             #", {"ml17"}),
    "final cutoff": ("    d3_cutoff: 20 A\n    model", "    d3_cutoff: 40 A\n    model", {"final.dft_d3_20A"}),
}


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_the_comparison_catches_one_changed_iteration(tmp_path, mutation):
    old, new, affected = MUTATIONS[mutation]
    text = SPEC.read_text()
    assert text.count(old) == 1, mutation
    mutated = tmp_path / "bmim_bf4.yaml"
    mutated.write_text(text.replace(old, new))
    assert differing_iterations(spec_rows(load_spec(mutated))) == affected


def test_table_1_adds_up_to_the_papers_1589_training_configurations():
    rows = table(load_spec(SPEC))
    per_iteration = {row.iteration: row for row in rows}
    assert (rows[-1].train, rows[-1].valid, rows[-1].test) == (1589, 280, 0)
    previous = {row.iteration: rows[i - 1].train for i, row in enumerate(rows) if i}
    added = {name: row.train - previous[name] for name, row in per_iteration.items() if name != "initial"}
    # Table 1's new training points per iteration (13: NPT 50 + VS 50; 16: 105, 17: 164)
    assert added["ml0"] == 400 and all(added[f"ml{i}"] == 50 for i in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 13, 14))
    assert (added["ml11"], added["vs"], added["ml15"], added["ml16"], added["ml17"]) == (20, 50, 100, 105, 164)
    assert per_iteration["ml8"].conditions.startswith("0.992-1.499 g/cm^3")  # Table 1's density range


def test_plan_table_prints_it():
    result = run_cli("plan", SPEC, "--table")
    assert result.returncode == 0, result.stderr
    assert "final dataset: 1,589 training, 280 validation, 0 test configurations" in " ".join(result.stdout.split())
