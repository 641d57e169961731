"""``diffusion``: self-diffusion coefficients of the spec's sites from the FFT MSD of each
production run (fit window and uncertainty from independent time blocks), then across runs the
Yeh-Hummer finite-size extrapolation over system sizes (and the analytic correction with a given
viscosity), an Arrhenius fit over temperatures, and the comparison with reference data."""

from __future__ import annotations

from typing import Any, ClassVar

from ilcampaign.campaign.spec import DiffusionSettings
from ilcampaign.engine.analysis.reference_data import compare
from ilcampaign.engine.hashing import hashed_as_fields
from ilcampaign.engine.step import StepContext, register
from ilcampaign.engine.steps.analysis import RunAnalysisStep, RunFacts, resolve_sites

#: fits need this many points for a Student-t interval (n - 2 degrees of freedom)
MIN_POINTS = 3


@register
class DiffusionStep(RunAnalysisStep):
    kind: ClassVar[str] = "diffusion"
    version: ClassVar[int] = 2

    settings: DiffusionSettings = hashed_as_fields(omit=("kind", "runs", "reference"))
    ions: dict[str, str]  # name -> SMILES

    def analyse(self, ctx: StepContext, slot: str, facts: RunFacts) -> Any:
        import numpy as np
        import xarray as xr

        from ilcampaign.engine.analysis.msd import MSD
        from ilcampaign.engine.analysis.stats import diffusion_fit

        traj, start = self.trajectory(ctx, slot, facts)
        ctx.scratch.mkdir(parents=True, exist_ok=True)
        rows, curves, methods = [], [], []
        with traj:
            length = float(np.cbrt(np.abs(np.linalg.det(next(traj.blocks(start, start + 1))[2][0]))))
            for site in self.settings.sites:
                result = MSD(traj, resolve_sites(traj, self.ions, site), scratch_dir=ctx.scratch).run(
                    start=start, n_blocks=self.settings.blocks).results
                block_span = result.times[len(result.block_msd[0]) - 1]
                window = (self.settings.window[0] * block_span, self.settings.window[1] * block_span)
                fit = diffusion_fit(result.times, result.msd, window, result.block_msd)
                D, stderr, ci = fit.si
                rows.append([D, stderr, ci[0], ci[1]])
                curves.append(result.msd)
                methods.append(fit.method)
        rows = np.array(rows)
        m2s = {"units": "m^2/s"}
        return xr.Dataset({
            "msd": (("site", "lag"), np.array(curves), {"units": "Angstrom^2"}),
            "D": ("site", rows[:, 0], {**m2s, "method": methods[0]}),
            "D_stderr": ("site", rows[:, 1], m2s),
            "D_ci95_low": ("site", rows[:, 2], m2s),
            "D_ci95_high": ("site", rows[:, 3], m2s),
            "box_length": ((), length, {"units": "Angstrom", "comment": "cube root of the cell volume"}),
        }, coords={"site": ("site", [s.label() for s in self.settings.sites]),
                   "lag_time": ("lag", result.times, {"units": "fs"})})

    def combine(self, ctx: StepContext, per_run: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        import json

        import numpy as np
        import xarray as xr

        facts = {f.name: f for f in self.runs}
        names = list(per_run)
        table = xr.concat([ds.drop_vars("msd").drop_dims("lag") for ds in per_run.values()], dim="run")
        table = table.assign_coords(run=("run", names),
                                    temperature=("run", [facts[n].temperature_K for n in names], {"units": "K"}),
                                    ion_pairs=("run", [facts[n].ion_pairs for n in names], {"units": "1"}))
        if self.settings.viscosity is not None:
            from ilcampaign.engine.analysis.stats import yeh_hummer_correction

            corrected = [[yeh_hummer_correction(float(table["D"][i, j]), facts[n].temperature_K, self.settings.viscosity,
                                                float(table["box_length"][i])) for j in range(len(self.settings.sites))]
                         for i, n in enumerate(names)]
            table["D_corrected"] = (("run", "site"), np.array(corrected),
                                    {"units": "m^2/s", "method": f"Yeh-Hummer analytic, viscosity {self.settings.viscosity} Pa s"})
        extrapolated = self._yeh_hummer(table, facts)
        arrhenius = self._arrhenius(table, facts, extrapolated)
        comparisons = self._compare(table, facts, extrapolated)
        table.attrs.update(yeh_hummer=json.dumps(extrapolated), arrhenius=json.dumps(arrhenius),
                           comparisons=json.dumps(comparisons))
        longest = max(ds.sizes["lag"] for ds in per_run.values())
        msd = np.full((len(names), len(self.settings.sites), longest), np.nan)
        lag_time = np.full((len(names), longest), np.nan)
        for i, ds in enumerate(per_run.values()):
            msd[i, :, : ds.sizes["lag"]] = ds["msd"].values
            lag_time[i, : ds.sizes["lag"]] = ds["lag_time"].values
        table["msd"] = (("run", "site", "lag"), msd, {"units": "Angstrom^2", "comment": "NaN past a run's last lag"})
        table["lag_time"] = (("run", "lag"), lag_time, {"units": "fs"})
        summary = {"D_m2_s": [{"run": n, "temperature_K": facts[n].temperature_K, "ion_pairs": facts[n].ion_pairs,
                               **{s.label(): [float(table["D"][i, j]), float(table["D_ci95_low"][i, j]),
                                              float(table["D_ci95_high"][i, j])] for j, s in enumerate(self.settings.sites)}}
                              for i, n in enumerate(names)],
                   "yeh_hummer": extrapolated, "arrhenius": arrhenius, "comparisons": comparisons}
        return table, summary

    def _groups(self, facts: dict[str, RunFacts], key) -> dict[tuple, list[str]]:
        groups: dict[tuple, list[str]] = {}
        for name, fact in facts.items():
            groups.setdefault(key(fact), []).append(name)
        return groups

    def _yeh_hummer(self, table: Any, facts: dict[str, RunFacts]) -> list[dict[str, Any]]:
        """D extrapolated to infinite box size over the sizes run at each (model, T), per site."""
        from ilcampaign.engine.analysis.stats import yeh_hummer_extrapolation

        out = []
        names = list(table["run"].values)
        for (model, temperature), group in self._groups(facts, lambda f: (f.model, f.temperature_K)).items():
            rows = [names.index(n) for n in group]
            sizes = sorted({facts[n].ion_pairs for n in group})
            for j, site in enumerate(self.settings.sites):
                entry = {"model": model, "temperature_K": temperature, "site": site.label(), "ion_pairs": sizes}
                if not self.settings.finite_size_correction:
                    entry.update(available=False, reason="finite_size_correction: false in the spec")
                elif len(sizes) < MIN_POINTS:
                    entry.update(available=False, reason=f"{len(sizes)} system size(s); the extrapolation needs "
                                                         f"{MIN_POINTS} for a confidence interval")
                else:
                    fit = yeh_hummer_extrapolation(table["box_length"].values[rows], table["D"].values[rows, j],
                                                   table["D_stderr"].values[rows, j], T=temperature)
                    entry.update(available=True, D_inf_m2_s=fit.value, stderr=fit.stderr, ci95=list(fit.ci),
                                 method=fit.method, **{k: float(v) for k, v in fit.extra.items()})
                out.append(entry)
        return out

    def _arrhenius(self, table: Any, facts: dict[str, RunFacts], extrapolated: list[dict]) -> list[dict[str, Any]]:
        """Activation energy per (model, size, site) over temperatures, and over the extrapolated D."""
        from ilcampaign.engine.analysis.stats import arrhenius_fit

        out = []
        names = list(table["run"].values)
        series = []
        for (model, pairs), group in self._groups(facts, lambda f: (f.model, f.ion_pairs)).items():
            rows = [names.index(n) for n in group]
            for j, site in enumerate(self.settings.sites):
                series.append(({"model": model, "ion_pairs": pairs, "site": site.label()},
                               [facts[n].temperature_K for n in group], table["D"].values[rows, j],
                               table["D_stderr"].values[rows, j]))
        for model in sorted({e["model"] for e in extrapolated}):
            for site in self.settings.sites:
                points = [e for e in extrapolated if e["model"] == model and e["site"] == site.label() and e["available"]]
                if points:
                    series.append(({"model": model, "ion_pairs": "infinite (Yeh-Hummer)", "site": site.label()},
                                   [e["temperature_K"] for e in points], [e["D_inf_m2_s"] for e in points],
                                   [e["stderr"] for e in points]))
        for label, temperatures, D, stderr in series:
            entry = dict(label, temperatures_K=list(map(float, temperatures)))
            if len(set(temperatures)) < MIN_POINTS:
                entry.update(available=False, reason=f"{len(set(temperatures))} temperature(s); the fit needs {MIN_POINTS}")
            elif min(D) <= 0:
                entry.update(available=False, reason="a D is not positive (runs too short for the fit window)")
            else:
                fit = arrhenius_fit(temperatures, D, stderr)
                entry.update(available=True, Ea_kJ_mol=fit.value, stderr=fit.stderr, ci95=list(fit.ci),
                             D0_m2_s=float(fit.extra["D0"]), method=fit.method)
            out.append(entry)
        return out

    def _compare(self, table: Any, facts: dict[str, RunFacts], extrapolated: list[dict]) -> list[dict[str, Any]]:
        """Each run's D (finite-size corrected where available) against the reference at its T."""
        if self.reference is None:
            return [{"available": False, "reason": "no diffusion reference data in the spec (none ship with ilcampaign)"}]
        out = []
        names = list(table["run"].values)
        for j, site in enumerate(self.settings.sites):
            if self.reference.species not in (None, site.label()):
                continue
            for i, name in enumerate(names):
                fact = facts[name]
                inf = next((e for e in extrapolated if e["available"] and e["site"] == site.label()
                            and e["model"] == fact.model and e["temperature_K"] == fact.temperature_K), None)
                value, low, high = (float(table["D"][i, j]), float(table["D_ci95_low"][i, j]),
                                    float(table["D_ci95_high"][i, j]))
                if inf is not None:
                    value, (low, high) = inf["D_inf_m2_s"], inf["ci95"]
                out.append({"run": name, "site": site.label(), "finite_size_corrected": inf is not None,
                            **compare(self.reference, fact.temperature_K, value, low, high)})
        return out
