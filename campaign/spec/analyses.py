"""``analyses``: what is computed from the production runs and the trained models, each a named
entry picked by ``kind:`` (one step per entry), compared with ``references`` where given."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from ilcampaign.campaign.spec.base import Section
from ilcampaign.campaign.units import Length


class Site(Section):
    """Points of one species: its atoms of ``element`` (null: all its atoms), or with ``centre``
    the centre of mass of each molecule (of those atoms, if ``element`` is given)."""

    ion: str = Field(description="an ion name from system.ions")
    element: str | None = None
    centre: bool = Field(default=False, description="one point per molecule: its centre of mass")

    def label(self) -> str:
        what = self.element or "all"
        return f"{self.ion}:{what}{':com' if self.centre else ''}"


class AnalysisBase(Section):
    runs: list[str] | None = Field(default=None, description="production runs analysed; null: every run")


class RDF(AnalysisBase):
    """Radial distribution functions (MDAnalysis InterRDF's normalisation) with running coordination numbers."""

    kind: Literal["rdf"] = "rdf"
    elements: bool = Field(default=True, description="every pair of elements (all atoms of an element together)")
    pairs: list[tuple[Site, Site]] = Field(default_factory=list, description="site pairs besides the element pairs")
    r_max: Length = Field(default=6.0, gt=0)
    bins: int = Field(default=1000, ge=10, description="the paper's 1000")


class Diffusion(AnalysisBase):
    """Self-diffusion coefficients from the FFT MSD: a linear fit over ``window`` with an error from
    ``blocks`` independent time blocks (Student-t 95 % CI), the Yeh-Hummer finite-size correction
    over the run's system sizes (and analytically with ``viscosity``), and an Arrhenius fit over T."""

    kind: Literal["diffusion"] = "diffusion"
    sites: list[Site] = Field(min_length=1)
    window: tuple[float, float] = Field(default=(0.2, 0.8), description="fit window as fractions of a time block's length")
    blocks: int = Field(default=5, ge=2, description="independent time blocks for the uncertainty")
    viscosity: float | None = Field(default=None, gt=0, description="Pa s, for the analytic Yeh-Hummer correction")
    reference: str | None = Field(default=None, description="a references entry of D(T) data")

    @model_validator(mode="after")
    def _check(self) -> Diffusion:
        if not 0 <= self.window[0] < self.window[1] <= 1:
            raise ValueError("window: two fractions 0 <= start < end <= 1 of a time block's length")
        return self


class DensityAnalysis(AnalysisBase):
    """Mean density of NPT runs with a 95 % CI from block averaging (block size at the plateau of
    the blocked standard error; Student-t)."""

    kind: Literal["density"] = "density"
    reference: str | None = Field(default=None, description="a references entry of rho(T) data")


class Dihedrals(AnalysisBase):
    """Distributions of a dihedral (four atoms matched by ``smarts`` in ``ion``) over growing time
    windows (fractions of the run after equilibration), as the paper's Fig. 5."""

    kind: Literal["dihedrals"] = "dihedrals"
    ion: str
    smarts: str = Field(description="four atoms; with atom maps :1-:4, those")
    windows: list[float] = Field(default_factory=lambda: [0.1, 0.5, 1.0])
    bins: int = Field(default=72, ge=4)

    @model_validator(mode="after")
    def _check(self) -> Dihedrals:
        if sorted(self.windows) != self.windows or not all(0 < w <= 1 for w in self.windows):
            raise ValueError("windows: increasing fractions in (0, 1]")
        return self


class ModelErrors(Section):
    """Energy, force and stress errors of trained models on the held-out test set, per element and as parity data."""

    kind: Literal["model_errors"] = "model_errors"
    models: list[str] = Field(default_factory=lambda: ["all"], description="model names as in production; all: every one")


class InferenceCost(Section):
    """Time per MD step against system size for each model path (JAX MD, JAX MD + D3 and ASE + D3 per
    cutoff, ASE)."""

    kind: Literal["inference_cost"] = "inference_cost"
    models: list[str] = Field(default_factory=lambda: ["last"])
    ion_pairs: list[int] = Field(default_factory=lambda: [8, 16, 32], min_length=1)
    paths: list[Literal["jax", "jax+d3", "ase", "ase+d3"]] = Field(default_factory=lambda: ["jax", "ase", "ase+d3"])
    d3_cutoffs: list[Length] = Field(default_factory=lambda: [8.0, 20.0])
    n_steps: int = Field(default=20, ge=1)
    warmup: int = Field(default=5, ge=0)


Analysis = Annotated[RDF | Diffusion | DensityAnalysis | Dihedrals | ModelErrors | InferenceCost, Field(discriminator="kind")]
