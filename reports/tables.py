"""The report's tables, from what ran: Table 1 per iteration, model errors, the cost ledger and
the stated comparisons. Each table is a header plus rows of strings and numbers, so the same
table renders as HTML, CSV and LaTeX."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from typing import Any

from ilcampaign.reports.view import CampaignView

Cell = str | int | float | None


@dataclass
class TableData:
    """A titled table with a note on where its numbers come from."""

    id: str
    title: str
    header: list[str]
    rows: list[list[Cell]] = field(default_factory=list)
    note: str = ""

    def csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(self.header)
        writer.writerows([["" if cell is None else cell for cell in row] for row in self.rows])
        return out.getvalue()

    def latex(self) -> str:
        lines = [r"\begin{tabular}{" + "l" * len(self.header) + "}", r"\hline",
                 " & ".join(_tex(h) for h in self.header) + r" \\", r"\hline"]
        lines += [" & ".join(_tex(cell_text(c)) for c in row) + r" \\" for row in self.rows]
        return "\n".join(lines + [r"\hline", r"\end{tabular}", ""])


def cell_text(value: Cell) -> str:
    """A cell as shown: numbers to 4 significant digits, missing values as an en dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _tex(text: str) -> str:
    for char, escaped in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                          ("–", "--"), ("±", r"$\pm$"), ("Å", r"\AA{}"), ("→", r"$\to$")):
        text = text.replace(char, escaped)
    return text


def _range(values: Any, unit: str, digits: int) -> str:
    finite = [float(v) for v in values if math.isfinite(float(v))]
    if not finite:
        return ""
    low, high = min(finite), max(finite)
    return f"{low:.{digits}f} {unit}" if round(low, digits) == round(high, digits) else \
        f"{low:.{digits}f}–{high:.{digits}f} {unit}"


def _conditions(view: CampaignView, name: str) -> tuple[str, str]:
    """Temperature and density ranges recorded in a sampler's series (not the spec's)."""
    series = view.dataset(name, "series.nc") if "series.nc" in view.outputs(name) else None
    if series is None or series.sizes.get("step", 0) == 0:
        return "", ""
    return _range(series["temperature"].values, "K", 0), _range(series["density"].values, "g/cm³", 3)


def _stop(record: dict[str, Any]) -> str:
    """Where an uncertainty-stopped (or guarded) run ended, in words."""
    summary = record.get("summary", {})
    if summary.get("stop_reason"):
        return f"step {summary.get('stopped_at')} of {summary.get('n_steps')}: {summary['stop_reason']}"
    if "converged" in summary:
        converged = summary["converged"]
        return f"{sum(bool(c) for c in converged)}/{len(converged)} converged"
    return "ran to the end" if summary.get("n_steps") else ""


def table1(view: CampaignView) -> TableData:
    """Table 1 from what ran: the initial data, then per iteration its samplers with the
    conditions their series recorded, where they stopped, and the counts each step reported."""
    table = TableData("table1", "Table 1 from what ran", [
        "iteration", "sampler", "T (recorded)", "density (recorded)", "stop", "candidates", "selected",
        "labelled", "failed", "train", "valid", "test"],
        note="Conditions are the ranges in each sampler's recorded series; counts are those the select, "
             "label and dataset steps reported; train / valid / test are cumulative.")
    for group in view.groups():
        steps = [s for s in view.steps if s.group == group]
        dataset = next((s.name for s in steps if s.kind == "dataset"), None)
        if dataset is None:
            continue
        label = next((s.name for s in steps if s.kind == "label"), None)
        select = next((s.name for s in steps if s.kind == "select"), None)
        if group == "initial model":
            label = "label.initial_data"
            samplers = ["initial_data"]
        else:
            samplers = [] if select is None else [  # the select step's candidate pools are the samplers
                name for slot, name in view.step(select).inputs.items() if slot.startswith("pool.")]
        counts = _counts(view, select, label, dataset)
        for i, sampler in enumerate(samplers or [None]):
            record = view.record(sampler) if sampler else None
            kind = view.step(sampler).kind if sampler else ""
            temperature, density = _conditions(view, sampler) if record else ("", "")
            first = [group if i == 0 else "", f"{kind}" + ("" if record else " (not run)"), temperature, density,
                     _stop(record) if record else ""]
            table.rows.append(first + (counts if i == 0 else [None] * len(counts)))
    return table


def _counts(view: CampaignView, select: str | None, label: str | None, dataset: str) -> list[Cell]:
    chosen = view.summary(select) if select else {}
    labelled = view.summary(label) if label else {}
    data = view.summary(dataset)
    failed = (labelled.get("n_failed", 0) + labelled.get("n_refused", 0)) if labelled else None
    return [chosen.get("n_pool"), chosen.get("n_selected") if select else labelled.get("n_input"),
            labelled.get("n_labelled"), failed, data.get("n_train"), data.get("n_valid"), data.get("n_test")]


# quantity, variable stem in errors.<model>.nc, train-summary stem, table unit, factor from the stored unit
ERROR_METRICS = (("energy", "energy_{}_per_atom", "energy_{}", "meV/atom", 1000.0),
                 ("force", "force_{}", "forces_{}", "eV/Å", 1.0),
                 ("stress", "stress_{}", "stress_{}", "meV/Å³", 1000.0))


def model_errors(view: CampaignView) -> TableData:
    """Energy, force and stress MAE / RMSE of every model on the split its model_errors analysis
    scored (the held-out test set by default), with per-element force MAE; where no model_errors
    analysis ran, the training validation errors."""
    elements: list[str] = []
    rows: list[tuple[str, str, dict[str, float], dict[str, float]]] = []
    for name in view.names(kind="model_errors"):
        for filename in view.outputs(name):
            if not filename.startswith("errors."):
                continue
            ds = view.dataset(name, filename)
            values = {f"{q}_{m}": float(ds[stem.format(m)]) * scale for q, stem, _, _, scale in ERROR_METRICS
                      for m in ("mae", "rmse") if stem.format(m) in ds}
            per_element = dict(zip(map(str, ds["element"].values), map(float, ds["force_mae_per_element"].values)))
            elements += [e for e in per_element if e not in elements]
            rows.append((ds.attrs.get("model", filename[7:-3]), f"{ds.attrs.get('split', 'test')} "
                         f"({int(ds['n_frames'])} frames)", values, per_element))
    source = "the model_errors analysis (the set column names the split it scored)"
    if not rows:
        source = "the validation set of each training (no model_errors analysis has finished)"
        for name in view.names(kind="train"):
            summary = view.summary(name)
            values = {f"{q}_{m}": summary[stem.format(m)] * scale for q, _, stem, _, scale in ERROR_METRICS
                      for m in ("mae", "rmse") if stem.format(m) in summary}
            rows.append((name.removesuffix(".train"), f"validation ({summary.get('n_valid')} frames)", values, {}))
    header = ["model", "set"] + [f"{q} {m.upper()} ({unit})" for q, _, _, unit, _ in ERROR_METRICS
                                 for m in ("mae", "rmse")]
    header += [f"F MAE {e} (eV/Å)" for e in elements]
    table = TableData("model_errors", "Model errors", header, note=f"From {source}.")
    for model, split, values, per_element in rows:
        table.rows.append([model, split] + [values.get(f"{q[0]}_{m}") for q in ERROR_METRICS for m in ("mae", "rmse")]
                          + [per_element.get(e) for e in elements])
    return table


def cost_ledger(view: CampaignView) -> TableData:
    """Wall time, task time, CPU and GPU hours per step kind over the finished steps (the campaign's cost)."""
    totals: dict[str, list[float]] = {}
    for step in view.steps:
        record = view.record(step.name)
        if record is None:
            continue
        entry = totals.setdefault(step.kind, [0, 0.0, 0.0, 0.0, 0.0])
        task_s = record.get("task_wall_s", record.get("wall_s", 0.0))
        for index, value in enumerate((1, record.get("wall_s", 0.0), task_s,
                                       record.get("cpu_hours", task_s / 3600), record.get("gpu_hours", 0.0))):
            entry[index] += value
    table = TableData("cost", "Cost ledger", ["step kind", "steps", "wall (s)", "task time (s)", "CPU h", "GPU h",
                                              "share of wall"],
                      note="Wall: from a step's start to its commit; task time: summed over its tasks (parallel "
                           "workers make it exceed wall); CPU hours: task time x cores x MPI ranks per task; GPU "
                           "hours: task time x GPUs, for tasks an executor placed on GPUs.")
    total = sum(entry[1] for entry in totals.values()) or 1.0
    for kind, (count, wall, tasks, cpu, gpu) in sorted(totals.items(), key=lambda kv: -kv[1][1]):
        table.rows.append([kind, count, round(wall, 1), round(tasks, 1), round(cpu, 3), round(gpu, 3),
                           f"{100 * wall / total:.1f} %"])
    if totals:
        sums = [sum(entry[i] for entry in totals.values()) for i in range(5)]
        table.rows.append(["all", int(sums[0]), round(total, 1), round(sums[2], 1), round(sums[3], 3),
                           round(sums[4], 3), "100 %"])
    return table


def states(view: CampaignView) -> TableData:
    """Per group of steps: how many are done, stale (finished under an older spec) or not run."""
    table = TableData("states", "Steps", ["group", "done", "stale", "not run", "not run yet"])
    for group in view.groups():
        steps = [s for s in view.steps if s.group == group]
        missing = [s.name for s in steps if s.state != "done"]
        shown = ", ".join(missing[:6]) + (f" (+{len(missing) - 6} more)" if len(missing) > 6 else "")
        table.rows.append([group] + [sum(s.state == st for s in steps) for st in ("done", "stale", "not run")]
                          + [shown])
    return table


def software(view: CampaignView) -> dict[str, str]:
    """Package versions recorded by the finished steps (several values where they differ)."""
    seen: dict[str, set[str]] = {}
    for step in view.steps:
        record = view.record(step.name)
        for package, version in (record or {}).get("software", {}).items():
            seen.setdefault(package, set()).add(str(version))
    return {package: ", ".join(sorted(versions)) for package, versions in sorted(seen.items())}


def comparisons(view: CampaignView) -> list[str]:
    """Every comparison with reference data as a sentence with numbers, and a line for each
    analysis whose comparison is not available (no reference data, or not finished)."""
    lines = []
    for kind, sentence in (("density", _density_sentence), ("diffusion", _diffusion_sentence)):
        for name in view.names(kind=kind, done=False):
            ds = view.dataset(name, "result.nc")
            if ds is None:
                lines.append(f"{name}: not available (the analysis is {view.step(name).state})")
                continue
            lines += [sentence(name, item) for item in json.loads(ds.attrs.get("comparisons", "[]"))]
    for name in view.names(kind="rdf", done=False):
        lines.append(f"{name}: comparison not available (the spec format has no RDF reference data)")
    return lines


def _diffusion_sentence(name: str, item: dict[str, Any]) -> str:
    if not item.get("available"):
        return f"{name}: comparison not available ({item.get('reason', 'no reference data')})"
    inside = [m["inside_ci95"] for m in item["measurements"]]
    corrected = "finite-size corrected " if item["finite_size_corrected"] else ""
    verdict = ("no 95 % CI, so inside or outside cannot be decided" if None in inside
               else f"{sum(inside)} of {len(inside)} reference values inside the 95 % CI")
    return (f"{name}: {corrected}D of {item['site']} in {item['run']} at {item['temperature_K']:g} K: "
            f"{item['deviation_percent']:+.1f} % from {item['reference']} ({verdict})")


def _density_sentence(name: str, item: dict[str, Any]) -> str:
    comparison = item.get("comparison", {})
    where = f"{item['run']} at {item['temperature_K']:g} K"
    if not comparison.get("available"):
        return f"{name}: {where}: comparison not available ({comparison.get('reason', 'no reference data')})"
    low, high = item.get("ci95_g_cm3", [math.nan, math.nan])
    inside = [m["inside_ci95"] for m in comparison.get("measurements", [])]
    if any(v is None or math.isnan(v) for v in (low, high)):
        ci = f"95 % CI not available ({item.get('interval_method', '')}), so inside or outside cannot be decided"
    else:
        ci = f"95 % CI {low:.4f}–{high:.4f} g/cm³; {sum(inside)} of {len(inside)} experimental values inside it"
    return (f"{name}: {where}: {item['density_g_cm3']:.4f} g/cm³ vs {comparison['reference_mean']:.4f} "
            f"({comparison['reference']}), {comparison['deviation_percent']:+.2f} %; {ci}")
