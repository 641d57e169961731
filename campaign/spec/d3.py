"""``d3``: torch-dftd D3(BJ) settings for hybrid models (MLP + D3) and D3 label shifts."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from ilcampaign.campaign.spec.base import Section, added_option
from ilcampaign.campaign.units import Length


class DispersionCorrection(Section):
    """D3 from torch-dftd, added on top of hybrid models and used to relabel datasets with or
    without D3. Defaults: the paper's D3(BJ) with B97-3c parameters, cutoffs of 7.94 A ("8 A")."""

    functional: str = Field(default="b97-3c", description="torch-dftd xc name")
    damping: Literal["bj", "zero"] = "bj"
    cutoff: Length = Field(default=7.93766, gt=0)
    cn_cutoff: Length = Field(default=7.93766, gt=0, description="coordination-number cutoff")
    skin: Length = Field(default=0.5, ge=0, description=(
        "neighbour-list skin; 0 rebuilds every step. With mts_interval > 1, 2.0 makes the rebuilds, which "
        "multiple time stepping does not thin out, 3.4 times rarer at 298 K (the MTS page's breakdown)"))
    dtype: Literal["float32", "float64"] = "float32"
    tail_correction: bool = Field(default=False, description=(
        "add the analytic pair tail beyond the cutoff (energy and pressure of a homogeneous liquid; "
        "BJ damping only): NPT densities then feel the dispersion the cutoff drops"))
    mts_interval: int = added_option(1, ge=1, description=(
        "hybrid MD in JAX: integrate D3 every k steps as an impulse of k timesteps (r-RESPA multiple time "
        "stepping; the MLP every step); 1: every step, exactly. Frame intervals must be multiples of it; "
        "ASE runs (Langevin, box ramps, zero damping, engine: ase or NPT with engine: auto) are refused, "
        "their preparation phases integrate D3 every step"))
    mts_split: bool = added_option(True, description=(
        "with mts_interval > 1: D3's short range (pairs within the model's r_max) every step with the MLP and "
        "the rest every k steps; false: the whole D3 term every k steps (faster; see the MTS page for the "
        "accuracy of each)"))

    @model_validator(mode="after")
    def _tail_needs_bj(self) -> DispersionCorrection:
        if self.tail_correction and self.damping != "bj":
            raise ValueError("tail_correction is implemented for BJ damping only; set damping: bj or drop it")
        return self

    @property
    def cutoff_volume(self) -> float:
        """A^3 of the cutoff sphere, which the D3 pairs each atom sums grow with (for cost estimates)."""
        return 4 / 3 * math.pi * self.cutoff**3

    def describe(self) -> str:
        """The term in words, as dispersion bookkeeping shows it."""
        return (f"D3({self.damping.upper()}) by torch-dftd ({self.functional}, cutoff {self.cutoff:g} A, "
                f"CN cutoff {self.cn_cutoff:g} A{', tail correction' if self.tail_correction else ''})")
