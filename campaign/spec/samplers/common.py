"""What the samplers share: where they start, the optimiser, and the ramps of MD."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from ilcampaign.campaign.spec.base import Section
from ilcampaign.campaign.units import Force, Length, Temperature


class SamplerSettings(Section):
    """Base of the samplers. ``provides_starts``: its end structures can start a later sampler
    (``start:``); ``chained``: the next sampler of the schedule continues from them unless it names
    its own ``start`` (md, optimisations, volume scans)."""

    provides_starts: ClassVar[bool] = True
    chained: ClassVar[bool] = False


class TemperatureRamp(Section):
    """T(t) = start + t/t_end (end - start) + amplitude sin(2 pi t / t_per) (paper eqn 9);
    ``oscillations`` over the run sets t_per. A plain number means a constant temperature."""

    start: Temperature = Field(gt=0)
    end: Temperature | None = Field(default=None, gt=0)
    amplitude: Temperature = Field(default=0.0, ge=0)
    oscillations: float = Field(default=0.0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _constant(cls, value: Any) -> Any:
        return value if isinstance(value, dict) else {"start": value}


class BoxRamp(Section):
    """The cell ramped and oscillated during NVT, as IPSuite's BoxOscillatingRampModifier (the
    workflow's ML8-ML10, ML12): with f = step / (n_steps - 1), cell(f) = C0 + r(f) (C_end - C0)
    + amplitude sin(2 pi f oscillations) I, where C0 is the start cell, C_end = end I (cubic) and
    r(f) = min(f oscillations / ramp_oscillations, 1), or f without ``ramp_oscillations``."""

    end: Length | None = Field(default=None, gt=0, description="cubic cell length to ramp to; null: the start cell")
    amplitude: Length = Field(default=0.0, ge=0, description="added to every diagonal cell element")
    oscillations: float = Field(default=0.0, ge=0, description="over the whole run")
    ramp_oscillations: float | None = Field(
        default=None, gt=0, description="reach `end` after this many oscillations (0.5 avoids ever-shrinking boxes)"
    )
    scaling: Literal["affine", "rigid"] = Field(
        default="affine", description="affine: atoms scaled with the cell; rigid: molecules moved as wholes"
    )

    @model_validator(mode="after")
    def _check(self) -> BoxRamp:
        if self.ramp_oscillations is not None and self.ramp_oscillations > self.oscillations:
            raise ValueError("ramp_oscillations must not exceed oscillations")
        return self


class Start(Section):
    """Which structures a sampler starts from: the end structures of an earlier step (``step``:
    its name as ``campaign plan`` shows it, e.g. ``ml11.conformers``), by default the last
    structure of the chain (the previous md / geometry_optimisation / volume_scan, or the initial
    data). A plain string is the step. MD end structures: its last frame (its start if it blew up
    before its first frame); optimisations: each optimised structure; volume scans: each
    optimised box; conformers: every box."""

    step: str | None = Field(default=None, description="null: continue the chain")
    first: int | None = Field(default=None, ge=1, description="the first n end structures")
    last: int | None = Field(default=None, ge=1, description="the last n (default 1)")

    @model_validator(mode="before")
    @classmethod
    def _step_only(cls, value: Any) -> Any:
        return {"step": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self) -> Start:
        if self.first is not None and self.last is not None:
            raise ValueError("give first or last, not both")
        return self

    @property
    def count(self) -> int:
        return self.first or self.last or 1


class Optimiser(Section):
    """An ASE optimiser run with the current model, fixed cell."""

    optimizer: Literal["FIRE", "BFGS"] = "FIRE"
    fmax: Force = Field(default=0.5, gt=0)
    max_steps: int = Field(default=200, ge=1)
