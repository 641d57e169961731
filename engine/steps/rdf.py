"""``rdf``: radial distribution functions and running coordination numbers of every element pair
and of the spec's site pairs, per production run (normalised as MDAnalysis' InterRDF)."""

from __future__ import annotations

from typing import Any, ClassVar

from ilcampaign.campaign.spec import RDFSettings
from ilcampaign.engine.hashing import hashed_as_fields
from ilcampaign.engine.step import StepContext, register
from ilcampaign.engine.steps.analysis import RunAnalysisStep, RunFacts, resolve_sites


@register
class RDFStep(RunAnalysisStep):
    kind: ClassVar[str] = "rdf"
    version: ClassVar[int] = 1

    settings: RDFSettings = hashed_as_fields(omit=("kind", "runs", "reference"))
    ions: dict[str, str]  # name -> SMILES

    def analyse(self, ctx: StepContext, slot: str, facts: RunFacts) -> Any:
        import numpy as np
        import xarray as xr
        from ase.data import atomic_numbers

        from ilcampaign.engine.analysis.rdf import RDF as Histogram
        from ilcampaign.engine.analysis.sites import Sites

        traj, start = self.trajectory(ctx, slot, facts)
        with traj:
            selections = []
            if self.settings.elements:
                symbols = np.array(traj.symbols)
                present = sorted(set(traj.symbols), key=lambda s: atomic_numbers[s])
                for i, a in enumerate(present):
                    for b in present[i:]:
                        if a == b and np.count_nonzero(symbols == a) < 2:
                            continue  # one atom of the element: no pair
                        sites_a = Sites.atoms(np.flatnonzero(symbols == a))
                        sites_b = Sites.atoms(np.flatnonzero(symbols == b))
                        selections.append((f"{a}-{b}", sites_a, sites_b))
            for a, b in self.settings.pairs:
                selections.append((f"{a.label()}--{b.label()}", resolve_sites(traj, self.ions, a),
                                   resolve_sites(traj, self.ions, b)))
            rdf, cn = [], []
            for _, sites_a, sites_b in selections:
                result = Histogram(traj, sites_a, sites_b, r_max=self.settings.r_max, bins=self.settings.bins).run(start=start).results
                rdf.append(result.rdf)
                cn.append(result.cn)
            n_frames = result.n_frames
        return xr.Dataset({
            "rdf": (("pair", "r"), np.array(rdf), {"units": "1", "long_name": "g(r)"}),
            "coordination": (("pair", "r"), np.array(cn), {"units": "1", "comment": "mean number of B sites within r of an A site"}),
            "n_frames": ((), n_frames, {"units": "1"}),
        }, coords={"pair": ("pair", [name for name, _, _ in selections]), "r": ("r", result.bins, {"units": "Angstrom"})})

    def combine(self, ctx: StepContext, per_run: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        import numpy as np
        import xarray as xr

        facts = {f.name: f for f in self.runs}
        result = xr.concat(list(per_run.values()), dim="run").assign_coords(
            run=("run", list(per_run)), temperature=("run", [facts[n].temperature_K for n in per_run], {"units": "K"}))
        peaks = []
        for name in per_run:
            for pair in result["pair"].values:
                g = result["rdf"].sel(run=name, pair=pair).values
                index = int(np.argmax(g))
                peaks.append({"run": name, "pair": str(pair), "highest_peak_A": float(result["r"][index]),
                              "height": float(g[index])})
        return result, {"peaks": peaks, "reference": "not available: no RDF reference data in the spec"}
