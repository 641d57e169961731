"""``production``: named MD runs with trained models over a grid of models x temperatures x system
sizes, each from a freshly packed, optimised (and, if asked, compressed and NVT-equilibrated) box,
as the workflow's production and density runs."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ilcampaign.campaign.spec.base import Section
from ilcampaign.campaign.spec.samplers.common import Optimiser
from ilcampaign.campaign.units import Density, Length, Pressure, Temperature, Time


class BoxPreparation(Section):
    """How a run's box is made: packed by PACKMOL at ``pack_density`` (null: at the target),
    optimised with the run's model, compressed to the target density over ``compress_steps`` MD
    steps (NVT, the cell ramped linearly, atoms scaled with it; 0: molecules moved rigidly at
    once), then ``nvt`` of NVT before the run (null: none). The target is ``density``, or with
    ``density_reference`` the measured density at each run temperature (mean over the sources)."""

    density: Density | None = Field(default=None, gt=0, description="null: system.density")
    density_reference: str | None = Field(default=None, description="a references entry of densities")
    pack_density: Density | None = Field(default=None, gt=0, description="null: pack at the target density")
    optimise: Optimiser | None = Field(default_factory=lambda: Optimiser(optimizer="BFGS", fmax=0.5, max_steps=500),
                                       description="null: no optimisation")
    compress_steps: int = Field(default=0, ge=0, description="MD steps to compress over")
    nvt: Time | None = Field(default=None, gt=0, description="NVT before the run (e.g. before NPT); null: none")

    @model_validator(mode="after")
    def _check(self) -> BoxPreparation:
        if self.compress_steps and self.pack_density is None:
            raise ValueError("compress_steps needs a pack_density below the target (there is nothing to compress)")
        if self.density_reference is not None and not self.compress_steps:
            raise ValueError("density_reference needs pack_density and compress_steps: one box is packed per "
                             "size and compressed to each temperature's density")
        return self


class ProductionRun(Section):
    """One named run over the grid ``models`` x ``temperatures`` x ``ion_pairs``; each point is a
    step ``production.<run>.<model>.<T>K.<n>``. ``ion_pairs`` counts formula units (the smallest
    neutral set of the system's ions: one cation + one anion for a 1:1 liquid)."""

    models: list[str] = Field(default_factory=lambda: ["last"], min_length=1, description=(
        "trained models: `initial`, an iteration name, `final.<name>`, or `last` (the last model trained)"))
    temperatures: list[Temperature] = Field(min_length=1)
    ion_pairs: list[int] = Field(min_length=1, description="system sizes in formula units")
    ensemble: Literal["nvt", "npt"] = "nvt"
    thermostat: Literal["nose_hoover_chain", "langevin"] = "nose_hoover_chain"
    thermostat_time: Time = Field(default=25.0, gt=0)
    friction: float = Field(default=0.01, gt=0, description="Langevin friction, ASE units")
    pressure: Pressure = Field(default="1.01325 bar", description="NPT")
    barostat_time: Time = Field(default=75.0, gt=0, description="NPT")
    timestep: Time = Field(default=0.5, gt=0)
    length: Time = Field(gt=0, description="simulated time of the run (after box preparation)")
    interval: int = Field(default=200, ge=1, description="a frame every `interval` steps")
    equilibration: Time = Field(default=0.0, ge=0, description="start of the run that analyses leave out")
    box: BoxPreparation = Field(default_factory=BoxPreparation)
    engine: Literal["auto", "jax", "ase"] = Field(
        default="auto", description=("auto: JAX MD where valid (Nose-Hoover NVT; D3 with BJ damping), else ASE; "
                                      "jax: NPT too, with jax_md's isotropic MTK barostat instead of ASE's"))
    hybrid_d3: bool = Field(default=False, description="run the model plus D3 (the d3 section; in JAX MD or through torch-dftd in ASE)")
    d3_cutoff: Length | None = Field(default=None, gt=0, description="hybrid: D3 and CN cutoff; null: the d3 section's")
    replicas: int = Field(default=1, ge=1, description="independent runs per grid point (other seeds)")

    @model_validator(mode="after")
    def _check(self) -> ProductionRun:
        if self.n_steps % self.interval:
            raise ValueError(f"length / timestep = {self.n_steps} steps must be a multiple of interval "
                             f"({self.interval})")
        if self.d3_cutoff is not None and not self.hybrid_d3:
            raise ValueError("d3_cutoff is for hybrid runs (hybrid_d3: true)")
        if self.equilibration >= self.length:
            raise ValueError("equilibration must be shorter than the run")
        if len(set(self.ion_pairs)) != len(self.ion_pairs) or any(n < 1 for n in self.ion_pairs):
            raise ValueError(f"ion_pairs must be distinct positive counts, got {self.ion_pairs}")
        return self

    @property
    def n_steps(self) -> int:
        return round(self.length / self.timestep)


class Production(Section):
    """Named production runs (``runs``), e.g. ``nvt`` for structure and dynamics, ``density`` (NPT)."""

    runs: dict[str, ProductionRun] = Field(default_factory=dict)
    seed_offset: int = Field(default=1000, description="production seeds start here above campaign.seed")

    @model_validator(mode="after")
    def _names(self) -> Production:
        for name in self.runs:
            if not name.replace("_", "").isalnum():
                raise ValueError(f"run name {name!r}: letters, digits and _ only")
        return self
