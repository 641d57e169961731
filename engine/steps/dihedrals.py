"""``dihedrals``: distributions of a dihedral matched by SMARTS in every molecule of one ion, over
growing time windows of each production run (how long the angles take to be sampled, Fig. 5).
Runs of different sizes combine: the matches are stored per ion, their count per run."""

from __future__ import annotations

from typing import Any, ClassVar

from ilcampaign.campaign.spec import DihedralsSettings
from ilcampaign.engine.hashing import hashed_as_fields
from ilcampaign.engine.step import StepContext, StepFailed, register
from ilcampaign.engine.steps.analysis import RunAnalysisStep, RunFacts


@register
class DihedralsStep(RunAnalysisStep):
    kind: ClassVar[str] = "dihedrals"
    version: ClassVar[int] = 2

    settings: DihedralsSettings = hashed_as_fields(omit=("kind", "runs", "reference"))
    ions: dict[str, str]  # name -> SMILES

    def analyse(self, ctx: StepContext, slot: str, facts: RunFacts) -> Any:
        import numpy as np
        import xarray as xr

        from ilcampaign.engine.analysis.dihedrals import dihedral_distributions, dihedral_quads, template_quads

        traj, start = self.trajectory(ctx, slot, facts)
        with traj:
            try:
                quads = dihedral_quads(self.settings.smarts, self.ions[self.settings.ion], traj.mol_ids, traj.numbers)
            except ValueError as exc:
                raise StepFailed(f"dihedral {self.settings.smarts!r} in {self.settings.ion}: {exc}") from None
            result = dihedral_distributions(traj, quads, self.settings.windows, self.settings.bins, start=start)
            span = (traj.n_frames - start) * traj.timestep
        centres = 0.5 * (result.edges[1:] + result.edges[:-1])
        return xr.Dataset({
            "density": (("window", "angle"), result.density, {"units": "1/degree"}),
            "count": (("window", "angle"), result.count, {"units": "1"}),
            "n_frames": ("window", np.asarray(result.n_frames), {"units": "1"}),
            "n_dihedrals": ((), len(quads), {"units": "1", "comment": "matches over all molecules"}),
            "atoms": (("match", "member"), template_quads(self.settings.smarts, self.ions[self.settings.ion]),
                      {"units": "1", "comment": "atom indices within the ion (RDKit's order, explicit H) of each "
                       "match; runs of any size share them"}),
        }, coords={"angle": ("angle", centres, {"units": "degree"}),
                   "window": ("window", np.asarray(self.settings.windows), {"units": "1", "comment": "fraction of the run"}),
                   "window_time": ("window", np.asarray(self.settings.windows) * span, {"units": "fs"})})

    def combine(self, ctx: StepContext, per_run: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        import xarray as xr

        facts = {f.name: f for f in self.runs}
        result = xr.concat([ds.drop_vars("window_time") for ds in per_run.values()], dim="run").assign_coords(
            run=("run", list(per_run)), temperature=("run", [facts[n].temperature_K for n in per_run], {"units": "K"}))
        result["window_time"] = (("run", "window"), [ds["window_time"].values for ds in per_run.values()],
                                 {"units": "fs"})
        return result, {"n_dihedrals": [int(n) for n in result["n_dihedrals"].values], "runs": list(per_run),
                        "windows_fs": result["window_time"].values.tolist()}
