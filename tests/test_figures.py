"""The paper figures draw exactly the archived values: a small synthetic archive with known numbers,
read back from the figures' artists and from their exported data; deterministic saving; Missing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from ilcampaign.archive.store import Archive
from ilcampaign.reports.figures import FIGURES, Missing, Plot, all_plots
from ilcampaign.reports.style import save, svg_text
from ilcampaign.reports.view import CampaignView

DEMO = Path(__file__).resolve().parent.parent / "campaigns" / "demo" / "archive"
R_GAS = 8.314462618


# ---------------------------------------------------------------------- a synthetic campaign
class Campaign:
    """An archive in a temporary folder and the manifest of the steps committed to it."""

    def __init__(self, root: Path):
        self.archive = Archive(root)
        self.steps: list[dict] = []

    def key(self, name: str) -> str:
        return hashlib.sha256(name.encode()).hexdigest()

    def add(self, name: str, kind: str, files: dict[str, xr.Dataset] | None = None, *, group: str = "analyses",
            params: dict | None = None, summary: dict | None = None, inputs: list[str] = (),
            commit: bool = True) -> str:
        key = self.key(name)
        self.steps.append({"name": name, "key": key, "kind": kind, "group": group,
                           "inputs": {f"in{i}": n for i, n in enumerate(inputs)}})
        if commit:
            folder = self.archive.step_dir(key)
            folder.mkdir(parents=True, exist_ok=True)
            for filename, ds in (files or {}).items():
                ds.to_netcdf(folder / filename, engine="h5netcdf")
            record = {"kind": kind, "finished": "2026-01-01T00:00:00+00:00", "params": params or {},
                      "summary": summary or {}, "inputs": {f"in{i}": self.key(n) for i, n in enumerate(inputs)}}
            self.archive.commit(key, name, record, list(files or {}))
        return key

    def view(self) -> CampaignView:
        return CampaignView(self.archive, {"steps": self.steps})


def curves(offset: float) -> xr.Dataset:
    epoch = np.arange(5)
    values = {f"{split}_{q}": ("epoch", offset + np.linspace(1, 0.5, 5) * (2 if split == "train" else 1.5),
                               {"units": "eV/Angstrom" if q == "forces_mae" else "1"})
              for split in ("train", "val") for q in ("loss", "forces_mae", "energy_mae", "stress_mae")}
    return xr.Dataset(values, coords={"epoch": ("epoch", epoch, {"units": "1"})})


def series(uncertainty: list[float], temperature: list[float]) -> xr.Dataset:
    return xr.Dataset({
        "target_temperature": ("step", [300.0, 300.0, 300.0], {"units": "K"}),
        "temperature": ("step", temperature, {"units": "K"}),
        "density": ("step", [1.20, 1.21, 1.19], {"units": "g/cm^3"}),
        "potential_energy": ("step", [-10.0, -9.5, -9.7], {"units": "eV"}),
        "uncertainty": ("step", uncertainty, {"units": "eV/Angstrom"}),
    }, coords={"step": ("step", [0, 10, 20], {"units": "1"}), "time": ("step", [0.0, 5.0, 10.0], {"units": "fs"})})


def model_errors(shift: float) -> xr.Dataset:
    force_ref = np.array([1.0, -2.0, 0.5, 3.0, -1.0, 0.2])
    return xr.Dataset({
        "n_atoms": ("frame", [10, 20], {"units": "1"}),
        "energy_reference": ("frame", [-100.0, -210.0], {"units": "eV"}),
        "energy_predicted": ("frame", [-100.5 + shift, -209.0], {"units": "eV"}),
        "energy_error_per_atom": ("frame", [(-0.5 + shift) / 10, 0.05], {"units": "eV/atom"}),
        "force_reference": ("force_component", force_ref, {"units": "eV/Angstrom"}),
        "force_predicted": ("force_component", force_ref + shift + 0.1, {"units": "eV/Angstrom"}),
        "energy_mae_per_atom": ((), 0.0123, {"units": "eV/atom"}),
        "energy_rmse_per_atom": ((), 0.0234, {"units": "eV/atom"}),
        "force_mae": ((), 0.345 + shift, {"units": "eV/Angstrom"}),
        "force_rmse": ((), 0.456, {"units": "eV/Angstrom"}),
        "force_mae_per_element": ("element", [0.111, 0.222], {"units": "eV/Angstrom"}),
        "n_frames": ((), 2, {"units": "1"}),
    }, coords={"force_element": ("force_component", ["H", "C", "H", "C", "H", "H"]),
               "element": ("element", ["H", "C"])})


def cost() -> xr.Dataset:
    t = np.array([[0.01, 0.04], [0.02, np.nan]])
    return xr.Dataset({
        "time_per_step": (("run", "size"), t, {"units": "s"}),
        "time_per_step_min": (("run", "size"), t * 0.9, {"units": "s"}),
        "time_per_step_max": (("run", "size"), t * 1.2, {"units": "s"}),
        "not_run_reason": (("run", "size"), [["", ""], ["", "out of memory"]]),
    }, coords={"run": ("run", ["jax", "ase+d3 (cutoff 8 A)"]), "n_atoms": ("size", [120, 960], {"units": "1"})},
        attrs={"jax_platform": "gpu", "cpu_count": 16})


RUNS = ["production.npt.m2.300K.4", "production.npt.m2.325K.4", "production.npt.m2.350K.4"]
TEMPERATURES = [300.0, 325.0, 350.0]
#: element pairs and where each one's g(r) peaks (Å); one site pair
PAIRS = {"H-H": 1.8, "H-B": 3.5, "H-C": 1.1, "B-B": 4.5, "B-C": 4.0, "C-C": 1.5, "C-N": 1.3, "N-F": 3.0,
         "BMIM:com--BF4:B": 4.8}


def rdf() -> xr.Dataset:
    r = np.linspace(0.05, 5.95, 60)
    g = np.array([[np.exp(-((r - peak) ** 2) / 0.1) * (1 + 0.1 * i) for peak in PAIRS.values()] for i in range(2)])
    return xr.Dataset({"rdf": (("run", "pair", "r"), g, {"units": "1"}),
                       "coordination": (("run", "pair", "r"), np.cumsum(g, axis=-1), {"units": "1"}),
                       "n_frames": ("run", [10, 10], {"units": "1"})},
                      coords={"run": ("run", RUNS[:2]), "temperature": ("run", TEMPERATURES[:2], {"units": "K"}),
                              "pair": ("pair", list(PAIRS)), "r": ("r", r, {"units": "Angstrom"})})


def dihedrals() -> xr.Dataset:
    angle = np.array([-135.0, -45.0, 45.0, 135.0])
    density = np.array([[[0.1, 0.4, 0.4, 0.1], [0.2, 0.3, 0.3, 0.2]],
                        [[0.25, 0.25, 0.25, 0.25], [0.3, 0.2, 0.2, 0.3]]]) / 90
    return xr.Dataset({"density": (("run", "window", "angle"), density, {"units": "1/degree"}),
                       "n_dihedrals": ("run", [4, 4], {"units": "1"})},
                      coords={"run": ("run", RUNS[:2]), "temperature": ("run", TEMPERATURES[:2], {"units": "K"}),
                              "window": ("window", [0.5, 1.0], {"units": "1"}),
                              "window_time": (("run", "window"), [[20.0, 40.0], [25.0, 50.0]], {"units": "fs"}),
                              "angle": ("angle", angle, {"units": "degree"})})


D = np.array([[1e-11, 2e-10], [2e-11, 3e-10], [4e-11, 4e-10]])
ARRHENIUS = [{"model": "m2", "ion_pairs": 4, "site": "BMIM:all:com", "temperatures_K": TEMPERATURES, "available": True,
              "Ea_kJ_mol": 20.5, "stderr": 1.0, "ci95": [18.0, 23.0], "D0_m2_s": 3.5e-8, "method": "fit"},
             {"model": "m2", "ion_pairs": 4, "site": "BF4:B", "temperatures_K": TEMPERATURES, "available": False,
              "reason": "a D is not positive"}]
YEH_HUMMER = [{"model": "m2", "temperature_K": 300.0, "site": "BF4:B", "ion_pairs": [4, 8, 16], "available": True,
               "D_inf_m2_s": 2.5e-10, "stderr": 1e-11, "ci95": [2.2e-10, 2.8e-10]}]
DIFFUSION_COMPARISONS = [{"run": RUNS[0], "site": "BF4:B", "finite_size_corrected": True, "available": True,
                          "reference": "d_exp", "temperature_K": 300.0, "reference_mean": 3.0e-10, "unit": "m^2/s",
                          "deviation": -5e-11, "deviation_percent": -16.6667,
                          "measurements": [{"value": 3.0e-10, "uncertainty": 0.2e-10, "source": "NMR",
                                            "inside_ci95": False}]},
                         {"run": RUNS[1], "site": "BF4:B", "finite_size_corrected": False, "available": True,
                          "reference": "d_exp", "temperature_K": 325.0, "reference_mean": 3.5e-10, "unit": "m^2/s",
                          "deviation": -5e-11, "deviation_percent": -14.2857,
                          "measurements": [{"value": 3.5e-10, "uncertainty": None, "source": "NMR",
                                            "inside_ci95": True}]}]


def diffusion() -> xr.Dataset:
    return xr.Dataset({"D": (("run", "site"), D, {"units": "m^2/s"}),
                       "D_ci95_low": (("run", "site"), D * 0.8, {"units": "m^2/s"}),
                       "D_ci95_high": (("run", "site"), D * 1.3, {"units": "m^2/s"}),
                       "D_corrected": (("run", "site"), D + 1e-11, {"units": "m^2/s"})},
                      coords={"run": ("run", RUNS), "temperature": ("run", TEMPERATURES, {"units": "K"}),
                              "ion_pairs": ("run", [4, 4, 4], {"units": "1"}),
                              "site": ("site", ["BMIM:all:com", "BF4:B"])},
                      attrs={"arrhenius": json.dumps(ARRHENIUS), "yeh_hummer": json.dumps(YEH_HUMMER),
                             "comparisons": json.dumps(DIFFUSION_COMPARISONS)})


DENSITY_ROWS = [{"temperature_K": 300.0, "value": 1.20, "uncertainty": 0.002, "source": "Harris; JCED"},
                {"temperature_K": 325.0, "value": 1.18, "uncertainty": 0.002, "source": "Harris; JCED"},
                {"temperature_K": 300.0, "value": 1.21, "uncertainty": None, "source": "Tokuda; JPCB"}]


def density_comparison(run: str, T: float, mean: float, ci: list[float], inside: bool) -> dict:
    reference = float(np.mean([r["value"] for r in DENSITY_ROWS if r["temperature_K"] == T]))
    return {"run": run, "temperature_K": T, "density_g_cm3": mean, "ci95_g_cm3": ci, "sem_g_cm3": 0.001,
            "block_size": 5, "interval_method": "too short" if np.isnan(ci[0]) else "blocking",
            "comparison": {"available": True, "reference_mean": reference,
                           "deviation_percent": 100 * (mean - reference) / reference,
                           "measurements": [{"value": r["value"], "uncertainty": r["uncertainty"],
                                             "source": r["source"], "inside_ci95": inside}
                                            for r in DENSITY_ROWS if r["temperature_K"] == T]}}


def density() -> xr.Dataset:
    comparisons = [density_comparison(RUNS[0], 300.0, 1.19, [1.185, 1.195], False),
                   density_comparison(RUNS[1], 325.0, 1.17, [float("nan")] * 2, False)]
    return xr.Dataset({"mean": ("run", [1.19, 1.17], {"units": "g/cm^3"}),
                       "ci95_low": ("run", [1.185, np.nan], {"units": "g/cm^3"}),
                       "ci95_high": ("run", [1.195, np.nan], {"units": "g/cm^3"}),
                       "deviation_percent": ("run", [c["comparison"]["deviation_percent"] for c in comparisons],
                                             {"units": "%"})},
                      coords={"run": ("run", RUNS[:2]), "temperature": ("run", TEMPERATURES[:2], {"units": "K"}),
                              "ion_pairs": ("run", [4, 4], {"units": "1"})},
                      attrs={"comparisons": json.dumps(comparisons)})


RUN_FACTS = [{"name": n, "model": "m2", "ion_pairs": 4, "temperature_K": T} for n, T in zip(RUNS, TEMPERATURES)]


@pytest.fixture()
def campaign(tmp_path) -> Campaign:
    c = Campaign(tmp_path / "archive")
    c.add("train.initial", "train", {"curves.nc": curves(0.0), "metrics.nc": xr.Dataset()}, group="initial model")
    c.add("iter01.md", "md", {"series.nc": series([np.nan, 0.5, 1.5], [290.0, 310.0, 305.0])}, group="iter01",
          params={"sampler": {"uncertainty_threshold": 1.0, "timestep": 0.5}},
          summary={"stop_reason": "uncertainty 1.5 eV/A > 1", "stopped_at": 20}, inputs=["train.initial"])
    c.add("iter01.train", "train", {"curves.nc": curves(0.3), "metrics.nc": xr.Dataset()}, group="iter01")
    c.add("iter02.md", "md", {"series.nc": series([np.nan, 0.2, 0.3], [295.0, 300.0, 301.0])}, group="iter02",
          params={"sampler": {"uncertainty_threshold": None, "timestep": 0.5}}, summary={"n_steps": 20},
          inputs=["iter01.train"])
    for run in RUNS:
        c.add(run, "production", {"series.nc": series([np.nan] * 3, [300.0] * 3)}, group="production")
    c.add("analysis.model_errors", "model_errors",
          {"errors.m1.nc": model_errors(0.2), "errors.m2.nc": model_errors(0.0)}, params={"models": ["m1", "m2"]},
          inputs=["train.initial", "iter01.train"])
    c.add("analysis.cost", "inference_cost", {"cost.m2.nc": cost()}, params={"models": ["m2"]}, inputs=["iter01.train"])
    c.add("analysis.rdf", "rdf", {"result.nc": rdf()}, params={"runs": RUN_FACTS[:2]}, inputs=RUNS[:2])
    c.add("analysis.dihedrals", "dihedrals", {"result.nc": dihedrals()},
          params={"runs": RUN_FACTS[:2], "ion": "BMIM", "smarts": "[CH3:1][CH2:2][CH2:3][CH2:4]"}, inputs=RUNS[:2])
    c.add("analysis.diffusion", "diffusion", {"result.nc": diffusion()}, params={"runs": RUN_FACTS}, inputs=RUNS)
    c.add("analysis.density", "density", {"result.nc": density()},
          params={"runs": RUN_FACTS[:2], "reference": {"rows": DENSITY_ROWS, "citation": "Harris 2007; Tokuda 2006"}},
          inputs=RUNS[:2])
    return c


# ---------------------------------------------------------------------- reading figures back
def only(items: list, cls=Plot):
    assert len(items) == 1 and isinstance(items[0], cls), items
    return items[0]


def axes(plot: Plot, label: str):
    found = [ax for ax in plot.figure.axes if ax.get_label() == label]
    assert len(found) == 1, [ax.get_label() for ax in plot.figure.axes]
    return found[0]


def line(ax, label: str) -> np.ndarray:
    found = [ln for ln in ax.lines if ln.get_label() == label]
    assert len(found) == 1, [ln.get_label() for ln in ax.lines]
    return np.asarray(found[0].get_xydata(), dtype=float)


def errorbars(ax, label: str) -> tuple[np.ndarray, np.ndarray]:
    """The points of an errorbar series and its bars as (x, low, high) rows."""
    found = [c for c in ax.containers if c.get_label() == label]
    assert len(found) == 1, [c.get_label() for c in ax.containers]
    data_line, _, (bars,) = found[0].lines
    segments = [s for s in bars.get_segments() if len(s) and np.isfinite(s).all()]
    return np.asarray(data_line.get_xydata(), dtype=float), np.array([[s[0][0], s[0][1], s[1][1]] for s in segments])


def rows(plot: Plot, **where) -> dict[str, np.ndarray]:
    lengths = {len(v) for v in plot.data.values()}
    assert len(lengths) == 1 and lengths != {0}, {k: len(v) for k, v in plot.data.items()}
    keep = np.ones(lengths.pop(), dtype=bool)
    for key, value in where.items():
        keep &= np.array([v == value for v in plot.data[key]])
    return {key: np.asarray(values)[keep] for key, values in plot.data.items()}


def same(a, b) -> None:
    np.testing.assert_allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float), rtol=1e-12, atol=0)


def by_name(campaign: Campaign, build) -> Plot:
    return only(build(campaign.view()))


# ---------------------------------------------------------------------- each figure
def test_parity_draws_per_atom_energies_and_forces_per_element(campaign):
    from ilcampaign.reports.figures import fig1_parity

    plot = by_name(campaign, fig1_parity)
    assert plot.id == "fig1_parity"
    for model, shift in (("m1", 0.2), ("m2", 0.0)):
        ds = model_errors(shift)
        per_atom = np.column_stack([ds.energy_reference / ds.n_atoms, ds.energy_predicted / ds.n_atoms])
        same(line(axes(plot, f"energy {model}"), model), per_atom)
        energy = rows(plot, model=model, quantity="energy per atom")
        same(np.column_stack([energy["reference"], energy["predicted"]]), per_atom)
        for element in ("H", "C"):
            mask = ds.force_element.values == element
            drawn = line(axes(plot, f"force {model}"), element)
            same(drawn, np.column_stack([ds.force_reference.values[mask], ds.force_predicted.values[mask]]))
            exported = rows(plot, model=model, quantity="force", element=element)
            same(np.column_stack([exported["reference"], exported["predicted"]]), drawn)
    assert "force MAE 0.345, RMSE 0.456 eV/Å" in plot.caption and "H 0.111, C 0.222" in plot.caption
    assert set(plot.sources) == {"analysis.model_errors", "train.initial", "iter01.train"}
    assert plot.sources["analysis.model_errors"] == campaign.key("analysis.model_errors")
    assert plot.caption.endswith(f"iter01.train ({campaign.key('iter01.train')[:10]}).")


def test_inference_cost_draws_timed_points_and_names_those_not_run(campaign):
    from ilcampaign.reports.figures import fig2_inference_cost

    plot = by_name(campaign, fig2_inference_cost)
    ax, ds = axes(plot, "cost m2"), cost()
    points, bars = errorbars(ax, "jax")
    same(points, np.column_stack([[120, 960], ds.time_per_step.values[0]]))
    same(bars, np.column_stack([[120, 960], ds.time_per_step_min.values[0], ds.time_per_step_max.values[0]]))
    points, _ = errorbars(ax, "ase+d3 (cutoff 8 A)")
    same(points, [[120, 0.02]])
    exported = rows(plot, path="ase+d3 (cutoff 8 A)")
    same(exported["n_atoms"], [120])
    same(exported["time_per_step"], [0.02])
    same(rows(plot, path="jax")["time_per_step_max"], ds.time_per_step_max.values[0])
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert "ase+d3 (cutoff 8 A) at 960 atoms not run: out of memory" in plot.caption


def test_rdf_shows_site_pairs_then_intermolecular_pairs_and_exports_all(campaign):
    from ilcampaign.reports.figures import fig3_rdf

    plot, ds = by_name(campaign, fig3_rdf), rdf()
    shown = [ax.get_title() for ax in plot.figure.axes if ax.get_label().startswith("rdf ")]
    assert shown == ["BMIM:com--BF4:B", "H-B", "B-B", "B-C", "N-F", "H-H"]  # site pair, peaks > 2.5 Å, then the rest
    r, g = ds.r.values, ds.rdf.values
    for pair in shown:
        k = list(PAIRS).index(pair)
        for i, run in enumerate(RUNS[:2]):
            same(line(axes(plot, f"rdf {pair}"), run.removeprefix("production.")), np.column_stack([r, g[i, k]]))
        same(line(axes(plot, f"difference {pair}"), RUNS[1].removeprefix("production.")),
             np.column_stack([r, g[1, k] - g[0, k]]))
    assert len(plot.data["g_r"]) == 2 * len(PAIRS) * r.size
    for i, run in enumerate(RUNS[:2]):
        for k, pair in enumerate(PAIRS):
            exported = rows(plot, run=run, pair=pair)
            same(exported["r"], r)
            same(exported["g_r"], g[i, k])
            same(exported["g_r_minus_first_run"], g[i, k] - g[0, k])
    assert "No RDF reference data" in plot.caption
    assert "6 of 9 pairs shown" in plot.caption


def test_dihedrals_draw_each_growing_window(campaign):
    from ilcampaign.reports.figures import fig5_dihedrals

    plot, ds = by_name(campaign, fig5_dihedrals), dihedrals()
    for i, run in enumerate(RUNS[:2]):
        for w, time in enumerate(ds.window_time.values[i]):
            same(line(axes(plot, f"dihedrals {run}"), f"first {time:g} fs"),
                 np.column_stack([ds.angle.values, ds.density.values[i, w]]))
            same(rows(plot, run=run, window_time=time)["density"], ds.density.values[i, w])
    change = np.abs(ds.density.values[0, 1] - ds.density.values[0, 0]).max()
    assert f"{change:.3g} 1/degree" in plot.caption


def test_arrhenius_draws_D_with_ci_fits_corrections_and_references(campaign):
    from ilcampaign.reports.figures import fig6_arrhenius

    plot = by_name(campaign, fig6_arrhenius)
    ax = axes(plot, "arrhenius")
    assert ax.get_yscale() == "log"
    x = 1000 / np.array(TEMPERATURES)
    for j, site in enumerate(["BMIM:all:com", "BF4:B"]):
        points, bars = errorbars(ax, f"{site} (m2, 4 pairs)")
        same(points, np.column_stack([x, D[:, j]]))
        same(bars, np.column_stack([x, D[:, j] * 0.8, D[:, j] * 1.3]))
        exported = rows(plot, kind="simulation", site=site)
        same(exported["D"], D[:, j])
        same(exported["D_ci95_low"], D[:, j] * 0.8)
        same(exported["inverse_temperature"], x)
    points, bars = errorbars(ax, "BF4:B (m2, L → ∞)")
    same(points, [[1000 / 300, 2.5e-10]])
    same(bars, [[1000 / 300, 2.2e-10, 2.8e-10]])
    fit = line(ax, "_fit BMIM:all:com (m2, 4 pairs)")
    T = 1000 / fit[:, 0]
    same(sorted(T), [300.0, 350.0])
    same(fit[:, 1], 3.5e-8 * np.exp(-20.5e3 / (R_GAS * T)))
    same(rows(plot, kind="arrhenius fit")["D"], fit[:, 1])
    points, bars = errorbars(ax, "reference BF4:B")
    same(points, [[1000 / 300, 3.0e-10], [1000 / 325, 3.5e-10]])
    same(bars, [[1000 / 300, 2.8e-10, 3.2e-10]])  # the second measurement states no uncertainty
    same(rows(plot, kind="reference")["D"], [3.0e-10, 3.5e-10])
    for j, site in enumerate(["BMIM:all:com", "BF4:B"]):
        points, _ = errorbars(ax, f"{site} (analytic finite-size correction)")
        same(points, np.column_stack([x, D[:, j] + 1e-11]))
        same(rows(plot, kind="analytic Yeh-Hummer", site=site)["D"], D[:, j] + 1e-11)
    assert "Ea 20.5 kJ/mol (95 % CI 18 to 23)" in plot.caption
    assert "no Arrhenius fit for BF4:B (m2, 4 pairs): a D is not positive" in plot.caption
    assert "BF4:B npt.m2.300K.4: -16.67 % from the reference mean 3e-10; reference outside the 95 % CI" in plot.caption
    assert "BF4:B npt.m2.325K.4: -14.29 % from the reference mean 3.5e-10; reference inside the 95 % CI" in plot.caption


def test_density_draws_means_with_ci_and_experiment(campaign):
    from ilcampaign.reports.figures import fig7_density

    plot = by_name(campaign, fig7_density)
    ax = axes(plot, "density")
    points, bars = errorbars(ax, "m2, 4 ion pairs")
    same(points, [[300.0, 1.19], [325.0, 1.17]])
    same(bars, [[300.0, 1.185, 1.195]])  # no bar where the CI is NaN
    exported = rows(plot, kind="simulation")
    same(exported["density"], [1.19, 1.17])
    same(exported["low"], [1.185, np.nan])
    points, bars = errorbars(ax, "Harris")
    same(points, [[300.0, 1.20], [325.0, 1.18]])
    same(bars, [[300.0, 1.198, 1.202], [325.0, 1.178, 1.182]])
    same(errorbars(ax, "Tokuda")[0], [[300.0, 1.21]])
    same(rows(plot, kind="reference")["density"], [1.20, 1.18, 1.21])
    deviation = 100 * (1.19 - 1.205) / 1.205
    assert f"{deviation:+.2f} % from experiment" in plot.caption and "experiment outside the 95 % CI" in plot.caption
    assert "no 95 % CI (too short), so no inside/outside test" in plot.caption
    assert "Harris 2007; Tokuda 2006" in plot.caption


def test_lotf_conditions_draw_temperature_target_and_density_per_iteration(campaign):
    from ilcampaign.reports.figures import lotf_conditions

    plot = by_name(campaign, lotf_conditions)
    for name, temperature in (("iter01.md", [290.0, 310.0, 305.0]), ("iter02.md", [295.0, 300.0, 301.0])):
        t = [0.0, 5.0, 10.0]
        same(line(axes(plot, "temperature"), name), np.column_stack([t, temperature]))
        same(line(axes(plot, "temperature"), f"_target {name}"), np.column_stack([t, [300.0] * 3]))
        same(line(axes(plot, "density"), name), np.column_stack([t, [1.20, 1.21, 1.19]]))
        same(rows(plot, step=name)["temperature"], temperature)
    assert set(plot.sources) == {"iter01.md", "iter02.md", "train.initial", "iter01.train"}


def test_lotf_uncertainty_draws_evaluated_points_threshold_and_stop(campaign):
    from ilcampaign.reports.figures import lotf_uncertainty

    plot = by_name(campaign, lotf_uncertainty)
    ax = axes(plot, "uncertainty")
    same(line(ax, "iter01.md"), [[5.0, 0.5], [10.0, 1.5]])
    same(line(ax, "iter02.md"), [[5.0, 0.2], [10.0, 0.3]])
    assert line(ax, "_threshold iter01.md")[0, 1] == 1.0
    assert line(ax, "_stop iter01.md")[0, 0] == 10.0  # step 20 at 10 fs
    assert not [ln for ln in ax.lines if ln.get_label() in ("_threshold iter02.md", "_stop iter02.md")]
    same(rows(plot, step="iter01.md", kind="uncertainty")["value"], [0.5, 1.5])
    same(rows(plot, step="iter01.md", kind="stop")["time"], [10.0])
    assert "stopped at step 20 (10 fs): uncertainty 1.5 eV/A > 1" in plot.caption
    assert "iter02.md: threshold n/a" in plot.caption and "ran all 20 steps" in plot.caption


def test_learning_curves_draw_validation_force_mae_and_loss(campaign):
    from ilcampaign.reports.figures import learning_curves

    plot = by_name(campaign, learning_curves)
    for name, offset in (("train.initial", 0.0), ("iter01.train", 0.3)):
        ds = curves(offset)
        same(line(axes(plot, "val_forces_mae"), name), np.column_stack([ds.epoch, ds.val_forces_mae]))
        same(line(axes(plot, "val_loss"), name), np.column_stack([ds.epoch, ds.val_loss]))
        same(rows(plot, step=name)["val_forces_mae"], ds.val_forces_mae.values)


# ---------------------------------------------------------------------- missing and ids
def test_unfinished_or_absent_steps_give_missing_with_a_reason(tmp_path):
    c = Campaign(tmp_path / "archive")
    c.add("analysis.model_errors", "model_errors", commit=False)
    c.add("iter01.train", "train", {"curves.nc": curves(0.0)}, group="iter01")
    c.add("iter01.md", "md", commit=False, group="iter01")
    plots = {p.id: p for p in all_plots(c.view())}
    assert list(plots) == ["fig1_parity", "fig2_inference_cost", "fig3_rdf", "fig5_dihedrals", "fig6_arrhenius",
                           "fig7_density", "lotf_conditions", "lotf_uncertainty", "learning_curves"]
    assert plots["fig1_parity"].reason == "no finished model_errors analysis: analysis.model_errors is not run"
    assert plots["fig6_arrhenius"].reason == "no finished diffusion analysis: none in the spec"
    assert plots["lotf_uncertainty"].reason == "no finished md step: iter01.md is not run"
    assert all(isinstance(plots[k], Missing) for k in list(plots)[:-1])
    assert isinstance(plots["learning_curves"], Plot)
    assert [sorted(f.reads) for f in FIGURES] == [["model_errors"], ["inference_cost"], ["rdf"], ["dihedrals"],
                                                  ["diffusion"], ["density"], ["md"], ["md"], ["train"]]


def test_stale_analysis_is_missing_and_several_analyses_get_suffixed_ids(tmp_path):
    c = Campaign(tmp_path / "archive")
    for name in ("analysis.rdf_short", "analysis.rdf_long"):
        c.add(name, "rdf", {"result.nc": rdf()})
    c.steps[-1]["key"] = "0" * 64  # the spec changed since analysis.rdf_long ran: stale
    plots = FIGURES[2](c.view())
    assert [p.id for p in plots] == ["fig3_rdf_rdf_short", "fig3_rdf_rdf_long"]
    assert isinstance(plots[0], Plot) and plots[0].title.endswith("(rdf_short)")
    assert plots[1].reason == "no finished rdf analysis: analysis.rdf_long is stale"


# ---------------------------------------------------------------------- deterministic output
def test_svg_and_saved_files_are_byte_identical(campaign, tmp_path):
    from ilcampaign.reports.figures import fig7_density

    plot = by_name(campaign, fig7_density)
    text = svg_text(plot.figure)
    assert text == svg_text(plot.figure) == svg_text(by_name(campaign, fig7_density).figure)
    assert "<svg" in text and "Date" not in text
    first = save(plot.figure, tmp_path / "out" / "fig7_density")
    assert [p.name for p in first] == ["fig7_density.pdf", "fig7_density.png"]
    before = [p.read_bytes() for p in first]
    assert all(len(b) > 1000 for b in before) and before[0].startswith(b"%PDF") and before[1].startswith(b"\x89PNG")
    again = save(by_name(campaign, fig7_density).figure, tmp_path / "out" / "fig7_density")
    assert [p.read_bytes() for p in again] == before


# ---------------------------------------------------------------------- the real demo archive
@pytest.mark.skipif(not (DEMO / "index.json").exists(), reason="no demo archive")
def test_all_plots_on_the_demo_archive():
    index = json.loads((DEMO / "index.json").read_text())
    entries = sorted(index["steps"].items(), key=lambda item: (item[1]["finished"], item[1]["name"]))
    steps = [{"name": e["name"], "key": k, "kind": e["kind"], "group": e["name"].split(".")[0], "inputs": {}}
             for k, e in entries]
    plots = all_plots(CampaignView(Archive(DEMO), {"steps": steps}))
    assert len({p.id for p in plots}) == len(plots)
    for plot in plots:
        if isinstance(plot, Plot):
            assert plot.data and len({len(v) for v in plot.data.values()}) == 1, plot.id
            assert len(next(iter(plot.data.values()))) > 0, plot.id
            assert plot.caption.rstrip(".").endswith(tuple(f"({key[:10]})" for key in plot.sources.values()))
            assert svg_text(plot.figure) == svg_text(plot.figure), plot.id
        else:
            assert plot.reason, plot.id
