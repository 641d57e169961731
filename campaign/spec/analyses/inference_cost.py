"""``inference_cost``: time per MD step against system size for each model path (Fig. 2)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from ilcampaign.campaign.spec.analyses.common import ModelAnalysisSettings
from ilcampaign.campaign.spec.base import Problem
from ilcampaign.campaign.spec.registry import ANALYSES
from ilcampaign.campaign.units import Length

if TYPE_CHECKING:
    from ilcampaign.campaign.spec.campaign_spec import CampaignSpec


@ANALYSES.register
class InferenceCostSettings(ModelAnalysisSettings):
    """Time per MD step against system size for each model path (JAX MD, JAX MD + D3 and ASE + D3 per
    cutoff, ASE)."""

    kind: Literal["inference_cost"] = "inference_cost"
    models: list[str] = Field(default_factory=lambda: ["last"])
    ion_pairs: list[int] = Field(default_factory=lambda: [8, 16, 32], min_length=1)
    paths: list[Literal["jax", "jax+d3", "ase", "ase+d3"]] = Field(default_factory=lambda: ["jax", "ase", "ase+d3"])
    d3_cutoffs: list[Length] = Field(default_factory=lambda: [8.0, 20.0])
    n_steps: int = Field(default=20, ge=1)
    warmup: int = Field(default=5, ge=0)

    def problems(self, spec: CampaignSpec, where: tuple[Any, ...]) -> list[Problem]:
        problems = []
        if "jax+d3" in self.paths and spec.d3.damping != "bj":
            problems.append(Problem((*where, "paths", self.paths.index("jax+d3")), "JAX MD runs D3 with BJ damping only",
                                    "time D3 through ase+d3, or set d3.damping: bj"))
        divisor = spec.system.ions[0].count // spec.formula_unit()[0]  # formula units in the box
        for index, pairs in enumerate(self.ion_pairs):
            if pairs % divisor:
                problems.append(Problem((*where, "ion_pairs", index), f"{pairs} ion pairs is not a whole number of "
                                        f"copies of the system's box ({divisor} formula units)",
                                        f"use multiples of {divisor}"))
        return problems
