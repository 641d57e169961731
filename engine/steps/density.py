"""``density``: the mean density of NPT production runs with a 95 % CI from block averaging, and
its deviation from the reference data at the same temperature."""

from __future__ import annotations

from typing import Any, ClassVar

from ilcampaign.campaign.spec import DensitySettings
from ilcampaign.engine.analysis.reference_data import compare
from ilcampaign.engine.hashing import hashed_as_fields
from ilcampaign.engine.step import StepContext, register
from ilcampaign.engine.steps.analysis import RunAnalysisStep, RunFacts


@register
class DensityStep(RunAnalysisStep):
    kind: ClassVar[str] = "density"
    version: ClassVar[int] = 2

    settings: DensitySettings = hashed_as_fields(omit=("kind", "runs", "reference"))

    def analyse(self, ctx: StepContext, slot: str, facts: RunFacts) -> Any:
        import numpy as np
        import xarray as xr

        from ilcampaign.archive.arrays import read_dataset
        from ilcampaign.engine.analysis.stats import block_average

        series = read_dataset(ctx.archive.output(ctx.inputs[slot], "series.nc"))
        kept = series["time"].values > facts.equilibration_fs
        density = series["density"].values[kept]
        try:
            result = block_average(density)
            mean, sem, ci, method = result.mean, result.sem, result.ci, result.method
            size, blocks = result.block_size, result.n_blocks
        except ValueError as exc:  # too short for its correlation time: a mean, but no honest interval
            mean, sem, ci, method, size, blocks = float(np.mean(density)), np.nan, (np.nan, np.nan), str(exc), 0, 0
        return xr.Dataset({
            "density": ("time", density, {"units": "g/cm^3"}),
            "mean": ((), mean, {"units": "g/cm^3"}),
            "sem": ((), sem, {"units": "g/cm^3", "method": method}),
            "ci95_low": ((), ci[0], {"units": "g/cm^3"}),
            "ci95_high": ((), ci[1], {"units": "g/cm^3"}),
            "block_size": ((), size, {"units": "1", "comment": "frames per block; 0: no plateau"}),
            "n_blocks": ((), blocks, {"units": "1"}),
        }, coords={"time": ("time", series["time"].values[kept], {"units": "fs"})})

    def combine(self, ctx: StepContext, per_run: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        import json

        import xarray as xr

        facts = {f.name: f for f in self.runs}
        rows, comparisons = [], []
        for name, ds in per_run.items():
            low, high = float(ds["ci95_low"]), float(ds["ci95_high"])
            comparison = compare(self.reference, facts[name].temperature_K, float(ds["mean"]), low, high)
            comparisons.append({"run": name, "temperature_K": facts[name].temperature_K,
                                "density_g_cm3": float(ds["mean"]), "ci95_g_cm3": [low, high],
                                "sem_g_cm3": float(ds["sem"]), "block_size": int(ds["block_size"]),
                                "interval_method": ds["sem"].attrs["method"],
                                "comparison": comparison})
            rows.append(ds.drop_vars("density").drop_dims("time", errors="ignore"))
        result = xr.concat(rows, dim="run").assign_coords(
            run=("run", list(per_run), {"units": "1"}),
            temperature=("run", [facts[n].temperature_K for n in per_run], {"units": "K"}),
            ion_pairs=("run", [facts[n].ion_pairs for n in per_run], {"units": "1"}))
        deviation = [c["comparison"].get("deviation_percent", float("nan")) for c in comparisons]
        result["deviation_percent"] = ("run", deviation, {"units": "%", "comment": "from the reference mean at the same T"})
        result.attrs["comparisons"] = json.dumps(comparisons)
        if self.reference is not None:
            result.attrs["reference_citation"] = self.reference.citation
        headline = {f"{facts[c['run']].model}@{c['temperature_K']:g}K.deviation_percent":
                    c["comparison"]["deviation_percent"] for c in comparisons if c["comparison"]["available"]}
        return result, {**headline, "runs": comparisons}
