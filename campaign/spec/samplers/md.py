"""``md``: MD with the current model, stopped on the force uncertainty (eqn 8)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field, model_validator

from ilcampaign.campaign.spec.registry import SAMPLERS
from ilcampaign.campaign.spec.samplers.common import BoxRamp, SamplerSettings, Start, TemperatureRamp
from ilcampaign.campaign.units import Force, Pressure, Time

if TYPE_CHECKING:
    from ilcampaign.campaign.spec.d3 import DispersionCorrection


def runs_in_jax_md(*, ensemble: str, thermostat: str, engine: str, ramped: bool,
                   d3: DispersionCorrection | None) -> bool:
    """Whether MD with these settings goes to our JAX MD where the box is large enough: Nose-Hoover
    NVT at a fixed cell (engine auto or jax) or NPT with engine: jax; a hybrid's D3 (``d3``, None for
    the MLP alone) with BJ damping, in NPT without the tail correction (JAX has no pressure for it)."""
    if engine == "ase" or d3 is not None and d3.damping != "bj":
        return False
    if ensemble == "npt":
        return engine == "jax" and not (d3 is not None and d3.tail_correction)
    return thermostat == "nose_hoover_chain" and not ramped


@SAMPLERS.register
class MDSettings(SamplerSettings):
    """MD with the current model, stopped when the force uncertainty (eqn 8), checked at every kept
    frame as IPSuite and apax do, passes a threshold."""

    chained: ClassVar[bool] = True
    kind: Literal["md"] = "md"
    start: Start = Field(default_factory=Start, description="never inherited by later iterations")
    ensemble: Literal["nvt", "npt"] = "nvt"
    thermostat: Literal["langevin", "nose_hoover_chain"] = "langevin"
    friction: float = Field(default=0.01, gt=0, description="Langevin friction, ASE units")
    temperature: TemperatureRamp = Field(default=298.15)
    box: BoxRamp | None = Field(default=None, description="NVT only; null keeps the cell")
    pressure: Pressure = Field(default="1.01325 bar", description="NPT")
    thermostat_time: Time = Field(default=25.0, gt=0, description="Nose-Hoover thermostat time (NPT, nose_hoover_chain)")
    barostat_time: Time = Field(default=75.0, gt=0, description="NPT barostat time")
    timestep: Time = Field(default=0.5, gt=0)
    n_steps: int = Field(default=50000, ge=1)
    interval: int = Field(default=10, ge=1, description="keep a frame (and check the uncertainty) every `interval` steps")
    uncertainty_threshold: Force | None = Field(default=0.5, gt=0, description="null: never stop early")
    engine: Literal["auto", "jax", "ase"] = Field(
        default="auto", description=("auto: JAX MD where valid (Nose-Hoover NVT, fixed cell; D3 with BJ damping), else ASE; "
                                     "jax: NPT too, with jax_md's isotropic MTK barostat instead of ASE's")
    )
    hybrid_d3: bool = Field(default=False, description="sample with the model plus D3 (the d3 section; in JAX MD or through torch-dftd in ASE)")

    def runs_in_jax_md(self, d3: DispersionCorrection | None) -> bool:
        """Whether this sampler goes to our JAX MD where the box allows (:func:`runs_in_jax_md`; a hybrid
        needs the D3 section ``d3``)."""
        if self.hybrid_d3 and d3 is None:
            return False
        return runs_in_jax_md(ensemble=self.ensemble, thermostat=self.thermostat, engine=self.engine,
                              ramped=self.box is not None, d3=d3 if self.hybrid_d3 else None)

    @model_validator(mode="after")
    def _check(self) -> MDSettings:
        if self.ensemble == "npt" and self.box is not None:
            raise ValueError("box ramps need ensemble nvt (NPT sets the box itself)")
        if self.n_steps % self.interval:
            raise ValueError(f"n_steps ({self.n_steps}) must be a multiple of interval ({self.interval}): frames are "
                             "kept every interval steps, and the run ends on a frame")
        if self.start.count != 1:
            raise ValueError("start: an md sampler starts from one structure (first/last 1)")
        return self
