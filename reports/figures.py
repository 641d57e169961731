"""The paper's figures, rebuilt from a campaign archive through `CampaignView` alone.

Every figure function takes the view and returns a list of `Plot` (the figure, a caption that
states its comparisons as numbers, the steps it came from and the exact values drawn) or
`Missing` (why it cannot be drawn yet). `all_plots` runs them all in a fixed order.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from ilcampaign.reports.style import DOUBLE, OKABE_ITO, SINGLE, figure, styled

#: molar gas constant, J/(mol K) (Arrhenius lines)
R_GAS = 8.314462618
#: at most this many models in the parity figure (the last ones), pairs in the RDF figure
MAX_PARITY_MODELS = 4
MAX_RDF_PAIRS = 6
#: an element pair whose highest g(r) peak lies beyond this (Å) shows structure between molecules
INTERMOLECULAR_A = 2.5
MARKERS = ["o", "s", "D", "v", "^", "<", ">", "p"]


@dataclass
class Plot:
    id: str
    title: str
    caption: str
    figure: Figure
    sources: dict[str, str]
    data: dict[str, list]


@dataclass
class Missing:
    id: str
    title: str
    reason: str


#: what a builder returns: (figure, caption text, data), or the reason it cannot draw
Built = tuple[Figure, str, dict[str, list]] | str


# ---------------------------------------------------------------------- helpers
def _unit(da: Any) -> str:
    """A variable's ``units`` attr, typeset."""
    text = str(da.attrs.get("units", ""))
    for plain, pretty in (("Angstrom", "Å"), ("^-1", "⁻¹"), ("^2", "²"), ("^3", "³")):
        text = text.replace(plain, pretty)
    return text


def _label(text: str, da: Any) -> str:
    """An axis label with the variable's unit (none for dimensionless ones)."""
    unit = _unit(da)
    return f"{text} ({unit})" if unit and unit != "1" else text


def _count_range(counts) -> str:
    """``4`` or ``4-32``: a count that may differ between runs."""
    low, high = int(min(counts)), int(max(counts))
    return f"{low}" if low == high else f"{low}-{high}"


def _g(value: float, digits: int = 3) -> str:
    """A number for a caption; n/a for None or NaN."""
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.{digits}g}"


def _pct(value: float) -> str:
    """A signed percentage for a caption."""
    return f"{value:+.2f} %"


def _extend(data: dict[str, list], **columns: Any) -> None:
    """Append rows to a figure's data: array columns as given, scalars repeated to their length."""
    n = max((np.size(v) for v in columns.values() if np.ndim(v)), default=1)
    for key, value in columns.items():
        data.setdefault(key, []).extend(np.asarray(value).tolist() if np.ndim(value) else [value] * n)


def _sources(view: Any, names: list[str]) -> dict[str, str]:
    """Each step read and the steps its record lists as inputs: name -> full key."""
    sources = view.keys(names)
    for name in names:
        for slot, key in view.record(name).get("inputs", {}).items():
            sources.setdefault(view.index["steps"].get(key, {}).get("name", slot), key)
    return sources


def _plot(view: Any, pid: str, title: str, names: list[str], built: Built) -> Plot | Missing:
    """A Plot whose caption ends with its sources (name and short key), or Missing with the builder's reason."""
    if isinstance(built, str):
        return Missing(pid, title, built)
    fig, text, data = built
    sources = _sources(view, names)
    listed = ", ".join(f"{name} ({key[:10]})" for name, key in sources.items())
    return Plot(pid, title, f"{text} Sources: {listed}.", fig, sources, data)


def _unfinished(view: Any, kind: str) -> str:
    """Why there is nothing of ``kind`` to draw: the declared steps' states, or none declared."""
    steps = [view.step(n) for n in view.names(kind=kind, done=False)]
    return ", ".join(f"{s.name} is {s.state}" for s in steps) or "none in the spec"


def _per_analysis(view: Any, kind: str, fig_id: str, title: str,
                  build: Callable[[Any, str], Built]) -> list[Plot | Missing]:
    """One figure per declared analysis step of ``kind`` (ids suffixed with its name when several)."""
    names = view.names(kind=kind, done=False)
    if not names:
        return [Missing(fig_id, title, f"no finished {kind} analysis: none in the spec")]
    out = []
    for name in names:
        short = name.removeprefix("analysis.")
        pid, label = (fig_id, title) if len(names) == 1 else (f"{fig_id}_{short}", f"{title} ({short})")
        state = view.step(name).state
        out.append(_plot(view, pid, label, [name], build(view, name)) if state == "done"
                   else Missing(pid, label, f"no finished {kind} analysis: {name} is {state}"))
    return out


def _model_files(view: Any, name: str, prefix: str) -> list[str]:
    """A per-model analysis' models with an output file, in the order its params list them."""
    models = view.record(name)["params"].get("models", [])
    return [m for m in models if f"{prefix}.{m}.nc" in view.outputs(name)]


def _run_label(run: str) -> str:
    """A production run's name without the common prefix, for legends."""
    return str(run).removeprefix("production.")


def _square(ax: Any, *values: np.ndarray) -> None:
    """Equal x and y limits over all ``values`` (a parity plot), with a y = x guide."""
    finite = np.concatenate([np.ravel(v) for v in values])
    finite = finite[np.isfinite(finite)]
    if finite.size:
        low, high = finite.min(), finite.max()
        pad = 0.05 * (high - low) or 0.05 * abs(high) or 1.0
        ax.set_xlim(low - pad, high + pad)
        ax.set_ylim(low - pad, high + pad)
    ax.axline((0, 0), slope=1, color="0.6", lw=0.6, label="_y=x")


#: the figures in report order (the order they are defined in): register_figure adds them
FIGURES: list[Callable[[Any], list[Plot | Missing]]] = []


def register_figure(*kinds: str) -> Callable[[Callable], Callable]:
    """Add a figure function to FIGURES, in the publication style, marked with the step kinds it
    reads (``reads``: the report caches its plots under the keys of those steps)."""

    def mark(build: Callable) -> Callable:
        wrapped = styled(build)
        wrapped.reads = frozenset(kinds)
        FIGURES.append(wrapped)
        return wrapped

    return mark


# ---------------------------------------------------------------------- Fig. 1
@register_figure("model_errors")
def fig1_parity(view: Any) -> list[Plot | Missing]:
    """Fig. 1: energy per atom and force parity of the last models on the frames model_errors scored."""
    return _per_analysis(view, "model_errors", "fig1_parity", "Fig. 1: energy and force parity", _parity)


def _parity(view: Any, name: str) -> Built:
    """Energy (top) and force (bottom) parity panels, one column per model (the last MAX_PARITY_MODELS)."""
    every = _model_files(view, name, "errors")
    if not every:
        return f"{name} has no errors.<model>.nc output"
    models, omitted = every[-MAX_PARITY_MODELS:], every[:-MAX_PARITY_MODELS]
    fig, axes = figure(2, len(models), width=DOUBLE if len(models) > 1 else SINGLE, height=4.6)
    data: dict[str, list] = {}
    notes = []
    for col, model in enumerate(models):
        ds = view.dataset(name, f"errors.{model}.nc")
        top, bottom = axes[0, col], axes[1, col]
        ref, pred = ds["energy_reference"] / ds["n_atoms"], ds["energy_predicted"] / ds["n_atoms"]
        top.plot(ref.values, pred.values, ls="none", marker="o", label=model)
        _square(top, ref.values, pred.values)
        _extend(data, model=model, quantity="energy per atom", element="all", reference=ref.values,
                predicted=pred.values, unit=_unit(ds["energy_error_per_atom"]))
        top.set(title=model, xlabel=_label("reference E / N", ds["energy_error_per_atom"]),
                ylabel=_label("predicted E / N", ds["energy_error_per_atom"]), label=f"energy {model}")
        elements = [str(e) for e in ds["element"].values]
        for k, element in enumerate(elements):
            mask = ds["force_element"].values == element
            f_ref, f_pred = ds["force_reference"].values[mask], ds["force_predicted"].values[mask]
            bottom.plot(f_ref, f_pred, ls="none", marker=".", ms=2, color=OKABE_ITO[k % len(OKABE_ITO)],
                        label=element, rasterized=f_ref.size > 2000)
            _extend(data, model=model, quantity="force", element=element, reference=f_ref, predicted=f_pred,
                    unit=_unit(ds["force_reference"]))
        _square(bottom, ds["force_reference"].values, ds["force_predicted"].values)
        bottom.set(xlabel=_label("reference F", ds["force_reference"]),
                   ylabel=_label("predicted F", ds["force_reference"]), label=f"force {model}")
        bottom.legend(markerscale=2, handletextpad=0.1, loc="upper left")
        per_element = ", ".join(f"{e} {_g(float(v))}" for e, v in zip(elements, ds["force_mae_per_element"].values))
        notes.append(f"{model} ({int(ds['n_frames'])} {ds.attrs.get('split', 'test')} frames): energy MAE {_g(float(ds['energy_mae_per_atom']))}, "
                     f"RMSE {_g(float(ds['energy_rmse_per_atom']))} {_unit(ds['energy_mae_per_atom'])}; "
                     f"force MAE {_g(float(ds['force_mae']))}, RMSE {_g(float(ds['force_rmse']))} "
                     f"{_unit(ds['force_mae'])}; force MAE per element {per_element} {_unit(ds['force_mae'])}")
    shown = f" Earlier models not shown: {', '.join(omitted)}." if omitted else ""
    text = ("Predicted (ensemble mean) against reference energy per atom (top) and force components "
            f"(bottom) on labelled frames of each model's dataset. {'. '.join(notes)}.{shown}")
    return fig, text, data


# ---------------------------------------------------------------------- Fig. 2
@register_figure("inference_cost")
def fig2_inference_cost(view: Any) -> list[Plot | Missing]:
    """Fig. 2: wall time per MD step against system size, one line per engine path."""
    return _per_analysis(view, "inference_cost", "fig2_inference_cost", "Fig. 2: inference cost", _cost)


def _cost(view: Any, name: str) -> Built:
    """Time per step against atoms (log-log), one panel per model file, one line per engine path."""
    models = _model_files(view, name, "cost")
    if not models:
        return f"{name} has no cost.<model>.nc output"
    fig, axes = figure(1, len(models), width=DOUBLE if len(models) > 1 else SINGLE, height=2.8)
    data: dict[str, list] = {}
    notes = []
    for ax, model in zip(axes[0], models):
        ds = view.dataset(name, f"cost.{model}.nc")
        atoms = ds["n_atoms"].values
        unit = _unit(ds["time_per_step"])
        for i, run in enumerate(str(r) for r in ds["run"].values):
            t, low, high = (ds[v].values[i] for v in ("time_per_step", "time_per_step_min", "time_per_step_max"))
            ok = np.isfinite(t)
            notes += [f"{model} {run} at {atoms[j]} atoms not run: {ds['not_run_reason'].values[i, j] or 'no reason'}"
                      for j in np.flatnonzero(~ok)]
            if ok.any():
                ax.errorbar(atoms[ok], t[ok], yerr=[t[ok] - low[ok], high[ok] - t[ok]],
                            marker=MARKERS[i % len(MARKERS)], label=run)
                _extend(data, model=model, path=run, n_atoms=atoms[ok], time_per_step=t[ok],
                        time_per_step_min=low[ok], time_per_step_max=high[ok], unit=unit)
                notes.append(f"{model} {run}: {_g(t[ok][-1])} {unit} per step at {atoms[ok][-1]} atoms")
        ax.set(xscale="log", yscale="log", title=model, xlabel="atoms", label=f"cost {model}",
               ylabel=_label("time per MD step", ds["time_per_step"]))
        ax.set_xticks(atoms, [str(a) for a in atoms])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.legend()
        device = f"JAX platform {ds.attrs.get('jax_platform', '?')}, {ds.attrs.get('cpu_count', '?')} CPU cores"
    text = (f"Wall time per MD step (median over timed chunks; bars: fastest and slowest chunk) against the number "
            f"of atoms, per engine path ({device}). {'; '.join(notes)}.")
    return fig, text, data


# ---------------------------------------------------------------------- Figs. 3-4
@register_figure("rdf")
def fig3_rdf(view: Any) -> list[Plot | Missing]:
    """Figs. 3-4: g(r) of site pairs and a subset of element pairs per run, and each run minus the first."""
    return _per_analysis(view, "rdf", "fig3_rdf", "Figs. 3-4: radial distribution functions", _rdf)


def _rdf_pairs(ds: Any) -> list[str]:
    """Site pairs first, then element pairs whose highest peak (first run) lies beyond
    INTERMOLECULAR_A (structure between molecules, not bonds), then the rest; at most MAX_RDF_PAIRS."""
    pairs = [str(p) for p in ds["pair"].values]
    peak = {p: float(ds["r"].values[np.argmax(ds["rdf"].values[0, i])]) for i, p in enumerate(pairs)}
    return sorted(pairs, key=lambda p: ("--" not in p, peak[p] <= INTERMOLECULAR_A, pairs.index(p)))[:MAX_RDF_PAIRS]


def _rdf(view: Any, name: str) -> Built:
    """g(r) panels of the chosen pairs, each over a panel of differences from the first run."""
    ds = view.dataset(name, "result.nc")
    if ds is None:
        return f"{name} has no result.nc"
    runs, pairs, shown = [str(r) for r in ds["run"].values], [str(p) for p in ds["pair"].values], _rdf_pairs(ds)
    r, g = ds["r"].values, ds["rdf"].values
    ncols = min(3, len(shown))
    blocks = -(-len(shown) // ncols)
    per_block = 2 if len(runs) > 1 else 1
    fig, axes = figure(blocks * per_block, ncols, width=DOUBLE, height=2.0 * blocks * per_block,
                       gridspec_kw={"height_ratios": [2, 1][:per_block] * blocks})
    data: dict[str, list] = {}
    for i, run in enumerate(runs):
        for k, pair in enumerate(pairs):
            _extend(data, run=run, temperature_K=float(ds["temperature"].values[i]), pair=pair, r=r, g_r=g[i, k],
                    g_r_minus_first_run=g[i, k] - g[0, k])
    notes = []
    for n, pair in enumerate(shown):
        k, row, col = pairs.index(pair), (n // ncols) * per_block, n % ncols
        top = axes[row, col]
        for i, run in enumerate(runs):
            top.plot(r, g[i, k], label=_run_label(run))
        top.set(title=pair, ylabel="g(r)", xlabel="" if per_block == 2 else _label("r", ds["r"]), label=f"rdf {pair}")
        if per_block == 2:
            diff = axes[row + 1, col]
            for i, run in enumerate(runs[1:], start=1):
                diff.plot(r, g[i, k] - g[0, k], color=OKABE_ITO[i % len(OKABE_ITO)], label=_run_label(run))
            diff.axhline(0, color="0.6", lw=0.5, label="_zero")
            diff.set(ylabel="Δg(r)", xlabel=_label("r", ds["r"]), label=f"difference {pair}")
        peaks = ", ".join(f"{_g(float(r[np.argmax(g[i, k])]))} Å (g {_g(float(g[i, k].max()))}) at "
                          f"{_g(float(ds['temperature'].values[i]), 5)} K" for i in range(len(runs)))
        notes.append(f"{pair} highest peak {peaks}")
    for ax in axes.ravel():
        if not ax.get_label():  # grid cells past the last pair
            fig.delaxes(ax)
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside upper center", ncols=min(3, len(runs)))
    diff_text = f" Lower panels: each run minus {_run_label(runs[0])}." if per_block == 2 else ""
    text = (f"Radial distribution functions per production run ({len(shown)} of {len(pairs)} pairs shown: site pairs, "
            f"then element pairs peaking beyond {INTERMOLECULAR_A} Å; all pairs in the data).{diff_text} "
            f"{'; '.join(notes)}. No RDF reference data (the spec format holds none), so no comparison with "
            "experiment.")
    return fig, text, data


# ---------------------------------------------------------------------- Fig. 5
@register_figure("dihedrals")
def fig5_dihedrals(view: Any) -> list[Plot | Missing]:
    """Fig. 5: dihedral angle distributions over growing time windows, one panel per run."""
    return _per_analysis(view, "dihedrals", "fig5_dihedrals", "Fig. 5: dihedral distributions", _dihedrals)


def _dihedrals(view: Any, name: str) -> Built:
    """One panel per run, one line per growing window: convergence of the distribution shows by eye."""
    ds = view.dataset(name, "result.nc")
    if ds is None:
        return f"{name} has no result.nc"
    params = view.record(name)["params"]
    runs = [str(r) for r in ds["run"].values]
    ncols = min(3, len(runs))
    fig, axes = figure(-(-len(runs) // ncols), ncols, width=DOUBLE if ncols > 1 else SINGLE)
    data: dict[str, list] = {}
    notes = []
    for i, (ax, run) in enumerate(zip(axes.ravel(), runs)):
        angle, density, times = ds["angle"].values, ds["density"].values[i], ds["window_time"].values[i]
        for w, fraction in enumerate(ds["window"].values):
            ax.plot(angle, density[w], label=f"first {_g(float(times[w]))} fs")
            _extend(data, run=run, temperature_K=float(ds["temperature"].values[i]), window=float(fraction),
                    window_time=float(times[w]), angle=angle, density=density[w])
        ax.set(title=_run_label(run), xlabel=_label("dihedral", ds["angle"]), ylabel=_label("density", ds["density"]),
               label=f"dihedrals {run}")
        ax.legend()
        change = float(np.abs(density[-1] - density[-2]).max()) if len(density) > 1 else float("nan")
        notes.append(f"{_run_label(run)}: largest change between the two longest windows {_g(change)} "
                     f"{_unit(ds['density'])}")
    for ax in axes.ravel()[len(runs):]:
        fig.delaxes(ax)
    text = (f"Distribution of the {params.get('ion', '')} dihedral {params.get('smarts', '')} "
            f"({_count_range(ds['n_dihedrals'].values)} per frame) over growing windows from the start of each run after "
            f"equilibration (fractions {', '.join(_g(float(w)) for w in ds['window'].values)} of the run). "
            f"{'; '.join(notes)}.")
    return fig, text, data


# ---------------------------------------------------------------------- Fig. 6
@register_figure("diffusion")
def fig6_arrhenius(view: Any) -> list[Plot | Missing]:
    """Fig. 6: self-diffusion coefficients against 1000/T with 95 % CIs, corrections, fits and references."""
    return _per_analysis(view, "diffusion", "fig6_arrhenius", "Fig. 6: diffusion (Arrhenius)", _arrhenius)


def _points(ax: Any, data: dict[str, list], kind: str, series: str, site: str, T: Any, D: Any, low: Any, high: Any,
            **style: Any) -> None:
    """Draw D against 1000/T with its interval as error bars and add the rows to ``data``."""
    T, D, low, high = (np.asarray(v, dtype=float) for v in (T, D, low, high))
    ax.errorbar(1000 / T, D, yerr=[D - low, high - D], ls="none", label=series, **style)
    _extend(data, kind=kind, series=series, site=site, temperature_K=T, inverse_temperature=1000 / T, D=D,
            D_ci95_low=low, D_ci95_high=high)


def _series(site: str, model: str, ion_pairs: Any) -> str:
    """A diffusion series' name: site, model and size (or L → ∞ for Yeh-Hummer extrapolations)."""
    return f"{site} ({model}, {ion_pairs} pairs)" if isinstance(ion_pairs, int) else f"{site} ({model}, L → ∞)"


def _inside(measurements: list[dict[str, Any]]) -> str:
    """Whether the reference measurements lie inside our 95 % CI, in a word (None: no interval)."""
    if any(m["inside_ci95"] is None for m in measurements):
        return "not tested against (no interval)"
    inside = sum(m["inside_ci95"] for m in measurements)
    return "inside" if inside == len(measurements) else "partly inside" if inside else "outside"


def _arrhenius(view: Any, name: str) -> Built:
    """D on a log axis against 1000/T per site and (model, size), with corrections, fits and references."""
    ds = view.dataset(name, "result.nc")
    if ds is None:
        return f"{name} has no result.nc"
    model = {r["name"]: r["model"] for r in view.record(name)["params"].get("runs", [])}
    T, D, low, high = (ds[v].values for v in ("temperature", "D", "D_ci95_low", "D_ci95_high"))
    groups: dict[tuple[str, int], list[int]] = {}
    for i, run in enumerate(str(r) for r in ds["run"].values):
        groups.setdefault((model.get(run, "?"), int(ds["ion_pairs"].values[i])), []).append(i)
    sites = [str(s) for s in ds["site"].values]
    fig, axes = figure(1, 1, height=3.0)
    ax, data, notes = axes[0, 0], {}, []
    for j, site in enumerate(sites):
        colour = OKABE_ITO[j % len(OKABE_ITO)]
        for g, ((m, pairs), rows) in enumerate(groups.items()):
            label, shown = _series(site, m, pairs), [i for i in rows if D[i, j] > 0]
            notes += [f"non-positive D of {label} not shown (log axis)"] if len(shown) < len(rows) else []
            if shown:
                _points(ax, data, "simulation", label, site, T[shown], D[shown, j], low[shown, j], high[shown, j],
                        color=colour, marker=MARKERS[g % len(MARKERS)])
            notes += [f"{label} at {_g(T[i], 5)} K: {_g(D[i, j])} [{_g(low[i, j])}, {_g(high[i, j])}]" for i in shown]
        if "D_corrected" in ds:
            corrected = ds["D_corrected"].values[:, j]
            _points(ax, data, "analytic Yeh-Hummer", f"{site} (analytic finite-size correction)", site, T, corrected,
                    corrected, corrected, color=colour, marker="^", mfc="none")
        extrapolated = [e for e in json.loads(ds.attrs.get("yeh_hummer", "[]")) if e["available"] and e["site"] == site]
        for m in sorted({e["model"] for e in extrapolated}):
            points = [e for e in extrapolated if e["model"] == m]
            _points(ax, data, "Yeh-Hummer", _series(site, m, None), site, [e["temperature_K"] for e in points],
                    [e["D_inf_m2_s"] for e in points], [e["ci95"][0] for e in points], [e["ci95"][1] for e in points],
                    color=colour, marker="o", mfc="none")
    notes += _arrhenius_lines(ax, data, ds, sites) + _diffusion_references(ax, data, ds)
    ax.set(yscale="log", xlabel="1000 / T (K⁻¹)", ylabel=_label("D", ds["D"]), label="arrhenius")
    ax.legend()
    text = (f"Self-diffusion coefficients ({_unit(ds['D'])}) against 1000/T with 95 % confidence intervals; open "
            f"markers: finite-size corrected; lines: Arrhenius fits. {'; '.join(notes)}.")
    return fig, text, data


def _arrhenius_lines(ax: Any, data: dict[str, list], ds: Any, sites: list[str]) -> list[str]:
    """Draw each available Arrhenius fit over its temperature range; caption notes for every fit."""
    notes = []
    for e in json.loads(ds.attrs.get("arrhenius", "[]")):
        series = _series(e["site"], e["model"], e["ion_pairs"])
        if not e["available"]:
            notes.append(f"no Arrhenius fit for {series}: {e['reason']}")
            continue
        T = np.array([max(e["temperatures_K"]), min(e["temperatures_K"])], dtype=float)
        D = e["D0_m2_s"] * np.exp(-e["Ea_kJ_mol"] * 1000 / (R_GAS * T))
        ax.plot(1000 / T, D, color=OKABE_ITO[sites.index(e["site"]) % len(OKABE_ITO)], lw=0.8,
                ls="-" if isinstance(e["ion_pairs"], int) else "--", label=f"_fit {series}")
        _extend(data, kind="arrhenius fit", series=series, site=e["site"], temperature_K=T,
                inverse_temperature=1000 / T, D=D, D_ci95_low=np.nan, D_ci95_high=np.nan)
        notes.append(f"{series}: Ea {_g(e['Ea_kJ_mol'])} kJ/mol (95 % CI {_g(e['ci95'][0])} to {_g(e['ci95'][1])})")
    return notes


def _diffusion_references(ax: Any, data: dict[str, list], ds: Any) -> list[str]:
    """Draw the reference measurements the comparisons hold, one series per site; a note per comparison."""
    notes, measured = [], {}
    for c in json.loads(ds.attrs.get("comparisons", "[]")):
        if not c["available"]:
            notes.append(f"no comparison with experiment: {c['reason']}")
            continue
        for m in c["measurements"]:
            u = np.nan if m["uncertainty"] is None else m["uncertainty"]
            measured.setdefault(c["site"], {})[(c["temperature_K"], m["value"], m["source"])] = u
        notes.append(f"{c['site']} {_run_label(c['run'])}: {_pct(c['deviation_percent'])} from the reference mean "
                     f"{_g(c['reference_mean'])}; reference {_inside(c['measurements'])} the 95 % CI")
    for site, rows in measured.items():
        T, value, u = (np.array(v, dtype=float) for v in zip(*[(t, v, u) for (t, v, _), u in rows.items()]))
        _points(ax, data, "reference", f"reference {site}", site, T, value, value - u, value + u, color="black",
                marker="x")
    return notes


# ---------------------------------------------------------------------- Fig. 7
@register_figure("density")
def fig7_density(view: Any) -> list[Plot | Missing]:
    """Fig. 7: simulated density against temperature with 95 % CIs, and the reference measurements."""
    return _per_analysis(view, "density", "fig7_density", "Fig. 7: density", _density)


def _density(view: Any, name: str) -> Built:
    """Simulated mean density per (model, size) against T, with every reference row by source."""
    ds = view.dataset(name, "result.nc")
    if ds is None:
        return f"{name} has no result.nc"
    params = view.record(name)["params"]
    model = {r["name"]: r["model"] for r in params.get("runs", [])}
    fig, axes = figure(1, 1, height=2.8)
    ax, data = axes[0, 0], {}
    runs = [str(r) for r in ds["run"].values]
    groups: dict[tuple[str, int], list[int]] = {}
    for i, run in enumerate(runs):
        groups.setdefault((model.get(run, "?"), int(ds["ion_pairs"].values[i])), []).append(i)
    for g, ((m, pairs), rows) in enumerate(groups.items()):
        T, mean, low, high = (ds[v].values[rows] for v in ("temperature", "mean", "ci95_low", "ci95_high"))
        ax.errorbar(T, mean, yerr=[mean - low, high - mean], ls="none", marker=MARKERS[g % len(MARKERS)],
                    label=f"{m}, {pairs} ion pairs")
        _extend(data, kind="simulation", series=f"{m}, {pairs} ion pairs", temperature_K=T, density=mean,
                low=low, high=high)
    reference = params.get("reference") or {}
    for n, source in enumerate(dict.fromkeys(row["source"] for row in reference.get("rows", []))):
        rows = [row for row in reference["rows"] if row["source"] == source]
        T, value = np.array([r["temperature_K"] for r in rows]), np.array([r["value"] for r in rows])
        u = np.array([np.nan if r["uncertainty"] is None else r["uncertainty"] for r in rows])
        ax.errorbar(T, value, yerr=u, ls="none", marker="x+12"[n % 4], color=("black", "0.45")[n % 2],
                    label=source.split(";")[0])
        _extend(data, kind="reference", series=source, temperature_K=T, density=value, low=value - u, high=value + u)
    ax.set(xlabel=_label("T", ds["temperature"]), ylabel=_label("density", ds["mean"]), label="density")
    ax.legend()
    notes = [_density_note(c) for c in json.loads(ds.attrs.get("comparisons", "[]"))]
    cited = f" Experiment: {reference['citation']}." if reference.get("citation") else " No reference data in the spec."
    text = (f"Mean density of the NPT production runs ({_unit(ds['mean'])}) against temperature, bars: 95 % CI from "
            f"block averaging; crosses: experiment (bars: stated uncertainty). {'; '.join(notes)}.{cited}")
    return fig, text, data


def _density_note(c: dict[str, Any]) -> str:
    """One run's density against experiment, in words: deviation and whether experiment lies in the CI."""
    head, comparison = f"{_run_label(c['run'])}: {_g(c['density_g_cm3'], 5)} g/cm³", c["comparison"]
    if not comparison["available"]:
        return f"{head}, no comparison ({comparison['reason']})"
    measurements = comparison["measurements"]
    head += (f" at {_g(c['temperature_K'], 5)} K, {_pct(comparison['deviation_percent'])} from experiment (mean "
             f"{_g(comparison['reference_mean'], 5)} g/cm³ of {len(measurements)} measurement{'s' if len(measurements) != 1 else ''})")
    if not all(np.isfinite(c["ci95_g_cm3"])):
        return f"{head}; no 95 % CI ({c['interval_method']}), so no inside/outside test"
    return f"{head}; experiment {_inside(measurements)} the 95 % CI"


# ---------------------------------------------------------------------- LotF and training
def _over_steps(view: Any, kind: str, fig_id: str, title: str,
                build: Callable[[Any, list[str]], Built]) -> list[Plot | Missing]:
    """One figure over every finished step of ``kind`` outside production (box preparation runs md
    steps too); unfinished ones are named in the caption."""
    every = [n for n in view.names(kind=kind, done=False) if not view.step(n).group.startswith("production")]
    names = [n for n in every if view.done(n)]
    if not names:
        return [Missing(fig_id, title, f"no finished {kind} step: {_unfinished(view, kind)}")]
    built = build(view, names)
    late = [n for n in every if not view.done(n)]
    if late and not isinstance(built, str):
        built = (built[0], f"{built[1]} Not finished: {', '.join(late)}.", built[2])
    return [_plot(view, fig_id, title, names, built)]


@register_figure("md")
def lotf_conditions(view: Any) -> list[Plot | Missing]:
    """Temperature (with its target) and density of each LotF iteration's sampling MD over time."""
    return _over_steps(view, "md", "lotf_conditions", "LotF sampling conditions", _conditions)


def _conditions(view: Any, names: list[str]) -> Built:
    """Temperature and target (top) and density (bottom) against time, one colour per MD step."""
    fig, axes = figure(2, 1, height=4.0, sharex=True)
    data: dict[str, list] = {}
    notes = []
    for n, name in enumerate(names):
        ds, colour = view.dataset(name, "series.nc"), OKABE_ITO[n % len(OKABE_ITO)]
        t, T, target, density = (ds[v].values for v in ("time", "temperature", "target_temperature", "density"))
        axes[0, 0].plot(t, T, color=colour, label=name)
        axes[0, 0].plot(t, target, color=colour, ls="--", lw=0.7, label=f"_target {name}")
        axes[1, 0].plot(t, density, color=colour, label=name)
        _extend(data, step=name, time=t, temperature=T, target_temperature=target, density=density)
        notes.append(f"{name}: T {T.min():.0f} to {T.max():.0f} K (target {target.min():.0f} to {target.max():.0f} K), "
                     f"mean density {_g(float(density.mean()), 4)} {_unit(ds['density'])} over {_g(float(t[-1]))} fs")
    axes[0, 0].set(ylabel=_label("T", ds["temperature"]), label="temperature")
    axes[1, 0].set(ylabel=_label("density", ds["density"]), xlabel=_label("time", ds["time"]), label="density")
    axes[0, 0].legend()
    text = (f"Temperature (solid; dashed: thermostat target) and density of each iteration's sampling MD. "
            f"{'; '.join(notes)}.")
    return fig, text, data


@register_figure("md")
def lotf_uncertainty(view: Any) -> list[Plot | Missing]:
    """Force uncertainty of each LotF iteration's sampling MD, its threshold and where the run stopped."""
    return _over_steps(view, "md", "lotf_uncertainty", "LotF force uncertainty", _uncertainty)


def _uncertainty(view: Any, names: list[str]) -> Built:
    """Evaluated uncertainties against time with each step's threshold (dashed) and stop (dotted)."""
    fig, axes = figure(1, 1, height=2.8)
    ax, data, notes = axes[0, 0], {}, []
    for n, name in enumerate(names):
        ds, record, colour = view.dataset(name, "series.nc"), view.record(name), OKABE_ITO[n % len(OKABE_ITO)]
        sampler, summary = record["params"].get("sampler", {}), record.get("summary", {})
        t, u = ds["time"].values, ds["uncertainty"].values
        ok = np.isfinite(u)
        ax.plot(t[ok], u[ok], color=colour, marker="o", label=name)
        _extend(data, step=name, kind="uncertainty", time=t[ok], value=u[ok])
        threshold, stop = sampler.get("uncertainty_threshold"), summary.get("stopped_at")
        if threshold is not None:
            ax.axhline(threshold, color=colour, ls="--", lw=0.7, label=f"_threshold {name}")
            _extend(data, step=name, kind="threshold", time=np.nan, value=float(threshold))
        note = f"{name}: threshold {_g(threshold)} {_unit(ds['uncertainty'])}, {int(ok.sum())} evaluations"
        note += f" (max {_g(float(u[ok].max()))})" if ok.any() else ""
        if stop is not None:
            steps = list(ds["step"].values)
            t_stop = float(t[steps.index(stop)]) if stop in steps else stop * sampler.get("timestep", np.nan)
            ax.axvline(t_stop, color=colour, ls=":", lw=0.8, label=f"_stop {name}")
            _extend(data, step=name, kind="stop", time=t_stop, value=np.nan)
            note += f", stopped at step {stop} ({_g(t_stop)} fs): {summary.get('stop_reason', 'no reason recorded')}"
        notes.append(note if stop is not None else f"{note}, ran all {summary.get('n_steps', '?')} steps")
    ax.set(xlabel=_label("time", ds["time"]), ylabel=_label("force uncertainty", ds["uncertainty"]),
           label="uncertainty")
    ax.legend()
    text = (f"Ensemble force uncertainty along each iteration's sampling MD (dashed: threshold; dotted: where the "
            f"run stopped). {'; '.join(notes)}.")
    return fig, text, data


@register_figure("train")
def learning_curves(view: Any) -> list[Plot | Missing]:
    """Validation force MAE and loss against epoch for every trained model."""
    return _over_steps(view, "train", "learning_curves", "Learning curves", _curves)


def _curves(view: Any, names: list[str]) -> Built:
    """Validation force MAE (top) and loss (bottom, log) against epoch, one colour per train step."""
    fig, axes = figure(2, 1, height=4.0, sharex=True)
    data: dict[str, list] = {}
    notes = []
    for n, name in enumerate(names):
        ds, colour = view.dataset(name, "curves.nc"), OKABE_ITO[n % len(OKABE_ITO)]
        epoch, mae, loss = ds["epoch"].values, ds["val_forces_mae"].values, ds["val_loss"].values
        axes[0, 0].plot(epoch, mae, color=colour, label=name)
        axes[1, 0].plot(epoch, loss, color=colour, label=name)
        _extend(data, step=name, epoch=epoch, val_forces_mae=mae, val_loss=loss)
        notes.append(f"{name}: {_g(float(mae[-1]))} {_unit(ds['val_forces_mae'])} at epoch {int(epoch[-1])} "
                     f"(best {_g(float(np.nanmin(mae)))})")
    axes[0, 0].set(ylabel=_label("validation force MAE", ds["val_forces_mae"]), label="val_forces_mae")
    axes[1, 0].set(yscale="log", ylabel="validation loss", xlabel="epoch", label="val_loss")
    axes[0, 0].legend()
    text = f"Validation force MAE (top) and loss (bottom) per epoch of each training. {'; '.join(notes)}."
    return fig, text, data


def all_plots(view: Any) -> list[Plot | Missing]:
    """Every figure of the campaign in a fixed order (Missing where its steps are not finished)."""
    return [item for build in FIGURES for item in build(view)]
