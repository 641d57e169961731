"""Production runs and analyses in the spec: the grid of steps they resolve to, and located errors
for names that point nowhere (models, runs, ions, references)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ilcampaign.campaign.loader import SpecError, load_spec
from ilcampaign.engine.graph import build_graph
from ilcampaign.engine.analysis.reference_data import compare, load_reference
from ilcampaign.engine.steps.inference_cost import replication
from tests.conftest import ROOT, tiny_spec

SCHEDULE = """
sampling:
  - samplers:
      md: {temperature: 300 K, n_steps: 10, interval: 5, uncertainty_threshold: null}
    selection: {kind: random, n: 1}
final_models:
  - name: big
"""

REFERENCES = f"""
references:
  rho:
    file: {ROOT}/references/bmim_bf4_density_experimental.csv
    quantity: density
    unit: g/cm^3
    value_column: density_g_cm3
    uncertainty_column: uncertainty_g_cm3
    citation: Harris et al. 2007; Tokuda et al. 2006; Song and Chen 2014
"""

PRODUCTION = """
production:
  runs:
    nvt:
      models: [initial, last]
      temperatures: [298.15 K, 353.15 K]
      ion_pairs: [2, 4]
      length: 1 ps
      interval: 10
      box: {pack_density: 0.9 g/cm^3, density_reference: rho, compress_steps: 100, nvt: 10 fs}
    npt: {ensemble: npt, temperatures: [298.15 K], ion_pairs: [2], length: 1 ps, interval: 10}
"""


def spec_with(tmp_path: Path, extra: str) -> Path:
    spec = tiny_spec(tmp_path / "spec.yaml")
    spec.write_text(spec.read_text() + SCHEDULE + REFERENCES + PRODUCTION + extra)
    return spec


def test_grid_resolves_to_steps(tmp_path):
    spec = spec_with(tmp_path, "analyses:\n  rho: {kind: density, runs: [npt], reference: rho}\n"
                               "  errors: {kind: model_errors}\n")
    nodes = {node.name: node for node in build_graph(load_spec(spec), base=spec.parent)}
    runs = [name for name, node in nodes.items() if node.step.kind == "production"]
    assert len(runs) == 2 * 2 * 2 + 1  # models x temperatures x sizes, plus the NPT run
    assert "production.nvt.final.big.353.15K.4" in runs
    point = nodes["production.nvt.initial.298.15K.2"]
    assert point.inputs == {"model": "train.initial", "start": "production.nvt.initial.298.15K.2.nvt"}
    assert nodes["production.nvt.initial.298.15K.2.nvt"].inputs["start"] == "production.nvt.initial.298.15K.2.compress"
    assert nodes["production.nvt.initial.298.15K.2.compress"].inputs["start"] == "production.nvt.initial.2.optimise"
    assert nodes["production.nvt.initial.2.optimise"].inputs["start"] == "production.nvt.2.pack"
    # the box is compressed to the measured density at each temperature (mean over the sources)
    compress = {t: nodes[f"production.nvt.initial.{t}.2.compress"].step.sampler.box.end for t in ("298.15K", "353.15K")}
    assert compress["298.15K"] < compress["353.15K"]
    pack = nodes["production.nvt.4.pack"].step
    assert [ion.count for ion in pack.ions] == [4, 4]
    assert nodes["analysis.rho"].inputs == {"run000": "production.npt.final.big.298.15K.2"}
    assert nodes["analysis.rho"].step.reference.at(298.15)
    assert set(nodes["analysis.errors"].inputs) == {"model000", "data000", "model001", "data001", "model002", "data002"}
    assert nodes["analysis.errors"].inputs["data002"] == "iter01.dataset"  # final.big trains on the last dataset


def test_adding_a_run_changes_no_other_key(tmp_path):
    one = {n.name: n.key for n in build_graph(load_spec(spec_with(tmp_path, "")), base=tmp_path)}
    spec = spec_with(tmp_path, "")
    spec.write_text(spec.read_text().replace("    npt: {", "    hot: {temperatures: [500 K], ion_pairs: [2], length: 1 ps, "
                                             "interval: 10}\n    npt: {"))
    two = {n.name: n.key for n in build_graph(load_spec(spec), base=tmp_path)}
    assert {name: key for name, key in two.items() if name in one} == one


@pytest.mark.parametrize("extra, where, message", [
    ("analyses:\n  rho: {kind: density, runs: [nvt]}\n", "analyses.rho.runs", "NPT runs only"),
    ("analyses:\n  rho: {kind: density, runs: [gone]}\n", "analyses.rho.runs[0]", "no production run 'gone'"),
    ("analyses:\n  rho: {kind: density, runs: [npt], reference: nope}\n", "analyses.rho.reference", "no references entry"),
    ("analyses:\n  d: {kind: diffusion, sites: [{ion: EMIM}]}\n", "analyses.d", "no ion 'EMIM'"),
    ("analyses:\n  e: {kind: model_errors, models: [ml99]}\n", "analyses.e.models[0]", "no trained model 'ml99'"),
])
def test_analysis_errors_are_located(tmp_path, extra, where, message):
    with pytest.raises(SpecError) as error:
        load_spec(spec_with(tmp_path, extra))
    text = str(error.value)
    assert where in text and message in text, text


def test_unknown_production_model_is_located(tmp_path):
    spec = spec_with(tmp_path, "")
    spec.write_text(spec.read_text().replace("models: [initial, last]", "models: [initial, ml7]"))
    with pytest.raises(SpecError) as error:
        load_spec(spec)
    assert "production.runs.nvt.models[1]" in str(error.value) and "initial, iter01, final.big" in str(error.value)


def test_reference_table_and_comparison():
    from ilcampaign.campaign.spec import ReferenceData

    entry = ReferenceData(file="references/bmim_bf4_density_experimental.csv", quantity="density", unit="g/cm^3",
                          value_column="density_g_cm3", uncertainty_column="uncertainty_g_cm3", citation="x")
    table = load_reference("rho", entry, ROOT)
    at_298 = table.at(298.15)
    assert sorted(m.value for m in at_298) == [1.2005, 1.2013, 1.202]
    result = compare(table, 298.15, 1.18, 1.17, 1.19)
    assert result["available"] and result["deviation_percent"] == pytest.approx(100 * (1.18 / 1.2012667 - 1), abs=1e-4)
    assert not any(m["inside_ci95"] for m in result["measurements"])
    assert all(m["inside_ci95"] for m in compare(table, 298.15, 1.2, 1.19, 1.21)["measurements"])
    no_interval = compare(table, 298.15, 1.2, float("nan"), float("nan"))  # no plateau: neither inside nor outside
    assert no_interval["available"] and all(m["inside_ci95"] is None for m in no_interval["measurements"])
    assert compare(table, 450.0, 1.0, 0.9, 1.1) == {"available": False, "reason": "rho has no measurement at 450 K"}
    assert compare(None, 298.15, 1.0, 0.9, 1.1)["available"] is False


def test_bad_reference_file_names_line_and_column(tmp_path):
    from ilcampaign.campaign.spec import ReferenceData

    (tmp_path / "d.csv").write_text("T_K,value,uncertainty,source\n300,1.2,,a\n310,oops,,b\n")
    entry = ReferenceData(file="d.csv", quantity="density", unit="g/cm^3", citation="x")
    with pytest.raises(ValueError, match="line 3"):
        load_reference("d", entry, tmp_path)
    entry = ReferenceData(file="d.csv", quantity="density", unit="g/cm^3", citation="x", value_column="rho")
    with pytest.raises(ValueError, match=r"no column\(s\) \['rho'\]"):
        load_reference("d", entry, tmp_path)


@pytest.mark.parametrize("factor, triple", [(1, (1, 1, 1)), (2, (1, 1, 2)), (8, (2, 2, 2)), (12, (2, 2, 3)), (7, (1, 1, 7))])
def test_replication_is_most_cubic(factor, triple):
    assert replication(factor) == triple


HYBRID_RUN = "    hybrid: {hybrid_d3: true, engine: jax, temperatures: [298.15 K], ion_pairs: [2], length: 1 ps, interval: 10}\n"


@pytest.mark.parametrize("bad, good, run, field, message", [
    ("damping: zero", "damping: bj", HYBRID_RUN, "hybrid", "BJ damping only"),
    ("tail_correction: true", "tail_correction: false", HYBRID_RUN.replace("hybrid_d3", "ensemble: npt, hybrid_d3"),
     "hybrid", "tail correction"),
])
def test_a_jax_hybrid_run_needs_what_jax_md_implements(tmp_path, bad, good, run, field, message):
    """engine: jax on a hybrid run needs BJ damping, and for NPT no tail correction."""
    spec = spec_with(tmp_path, f"d3: {{{bad}}}\n")
    spec.write_text(spec.read_text().replace("    npt: {ensemble: npt,", run + "    npt: {ensemble: npt,"))
    with pytest.raises(SpecError) as error:
        load_spec(spec)
    assert f"production.runs.{field}.engine" in str(error.value) and message in str(error.value)
    spec.write_text(spec.read_text().replace(bad, good))
    load_spec(spec)


def test_a_jax_d3_inference_cost_needs_bj_damping(tmp_path):
    cost = "analyses:\n  cost: {kind: inference_cost, paths: [jax, jax+d3], d3_cutoffs: [8 A]}\n"
    with pytest.raises(SpecError) as error:
        load_spec(spec_with(tmp_path, "d3: {damping: zero}\n" + cost))
    assert "analyses.cost.paths[1]" in str(error.value) and "BJ damping only" in str(error.value)
    load_spec(spec_with(tmp_path, "d3: {damping: bj}\n" + cost))


MTS_RUNS = """\
    hybrid_nvt:
      hybrid_d3: true
      temperatures: [298.15 K]
      ion_pairs: [2]
      length: 1 ps
      interval: 10
      box: {pack_density: 0.9 g/cm^3, compress_steps: 100, nvt: 10 fs}
    hybrid_npt: {hybrid_d3: true, ensemble: npt, temperatures: [298.15 K], ion_pairs: [2], length: 1 ps, interval: 20}
    hybrid_langevin: {hybrid_d3: true, thermostat: langevin, temperatures: [298.15 K], ion_pairs: [2], length: 1 ps,
                      interval: 20}
"""


def mts_spec(tmp_path: Path, d3: str, runs: str) -> Path:
    spec = spec_with(tmp_path, f"d3: {{{d3}}}\n")
    spec.write_text(spec.read_text().replace("    npt: {ensemble: npt,", runs + "    npt: {ensemble: npt,"))
    return spec


def mts_nvt_run() -> str:
    """MTS_RUNS' hybrid NVT run alone, its frames at cycle ends of k = 4."""
    return MTS_RUNS.replace("interval: 10", "interval: 20").split("    hybrid_npt")[0]


def test_mts_is_refused_where_jax_md_does_not_run_the_hybrid(tmp_path):
    """d3.mts_interval 4: a hybrid run that goes through ASE (NPT with engine auto, Langevin) is refused
    at its engine, one whose frames fall within D3 cycles at its interval; runs that JAX MD takes
    with frames at cycle ends pass."""
    with pytest.raises(SpecError) as error:
        load_spec(mts_spec(tmp_path, "mts_interval: 4", MTS_RUNS))
    message = str(error.value)
    for where in ("production.runs.hybrid_npt.engine", "production.runs.hybrid_langevin.engine",
                  "production.runs.hybrid_nvt.interval"):
        assert where in message, message
    assert "multiple time stepping runs in JAX MD only" in message and "not a multiple of d3.mts_interval 4" in message
    assert "hybrid_nvt.engine" not in message and "hybrid_npt.interval" not in message
    good = MTS_RUNS.replace("interval: 10", "interval: 20").replace("ensemble: npt,", "ensemble: npt, engine: jax,")
    load_spec(mts_spec(tmp_path, "mts_interval: 4", good.split("    hybrid_langevin")[0]))


def test_mts_interval_enters_the_keys_of_the_steps_it_changes_only(tmp_path):
    """Setting d3.mts_interval changes the keys of hybrid JAX MD steps (the run and its NVT preparation),
    not those of the ASE compression before them (D3 every step there), nor of steps without D3;
    mts_interval 1 written out keeps every key. mts_split false (the whole term every k steps) changes
    the same steps' keys again; mts_split true written out keeps them. Steps that hold the d3 section
    without integrating it (the D3 label shift, the inference cost) hash it without either."""
    from ilcampaign.campaign.spec import DispersionCorrection
    from ilcampaign.engine.hashing import canonical
    from ilcampaign.engine.steps.d3 import D3Step

    runs = mts_nvt_run()
    keys = {}
    for name, d3 in (("absent", "functional: b97-3c"), ("one", "mts_interval: 1"), ("four", "mts_interval: 4"),
                     ("split", "mts_interval: 4, mts_split: true"), ("whole", "mts_interval: 4, mts_split: false")):
        (tmp_path / name).mkdir()
        keys[name] = {node.name: node.key for node in build_graph(load_spec(mts_spec(tmp_path / name, d3, runs)),
                                                                    base=tmp_path / name)}
    assert keys["one"] == keys["absent"]
    changed = {name for name in keys["four"] if keys["four"][name] != keys["one"][name]}
    point = "production.hybrid_nvt.final.big.298.15K.2"
    assert changed == {point, f"{point}.nvt"}
    assert f"{point}.compress" in keys["four"]
    assert keys["split"] == keys["four"]
    assert {name for name in keys["whole"] if keys["whole"][name] != keys["four"][name]} == {point, f"{point}.nvt"}
    shifts = [D3Step(d3=DispersionCorrection(mts_interval=k, mts_split=k == 1), sign=1) for k in (1, 4)]
    assert canonical(shifts[0]) == canonical(shifts[1]) and not {"mts_interval", "mts_split"} & set(canonical(shifts[1])["d3"])


def test_mts_split_reaches_the_jax_md_settings(monkeypatch, tmp_path):
    """A hybrid MD step runs JAX MD with the spec's d3.mts_interval and mts_split."""
    from ase import Atoms

    from ilcampaign.campaign.spec import DispersionCorrection
    from ilcampaign.engine.md import jax as jax_md
    from ilcampaign.engine.steps import md

    seen = []

    class Seen(Exception):
        """Raised by the stand-in chunk once it has the settings: nothing needs to run."""

    def chunk(model_dir, atoms, temperatures, settings, **kwargs):
        seen.append((settings.mts_interval, settings.mts_split))
        raise Seen

    monkeypatch.setattr(jax_md, "run_chunk", chunk)
    step = next(node.step for node in build_graph(load_spec(mts_spec(tmp_path, "mts_interval: 4", mts_nvt_run())), base=tmp_path)
        if node.name == "production.hybrid_nvt.final.big.298.15K.2")
    for split in (True, False):
        hybrid = step.model_copy(update={"d3": DispersionCorrection(mts_interval=4, mts_split=split)})
        with pytest.raises(Seen):
            md._run_jax(hybrid, type("Context", (), {"jax_cache": tmp_path})(), tmp_path, Atoms("H"), 0, 20, None)
    assert seen == [(4, True), (4, False)]
