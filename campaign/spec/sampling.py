"""``sampling``: the learning-on-the-fly schedule. Each iteration samples candidates with the last
model (named samplers), selects some, labels them and retrains; or relabels the whole dataset
with a changed reference and retrains on it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

from pydantic import Field, field_validator, model_validator

from ilcampaign.campaign.spec.base import Section, deep_merge
from ilcampaign.campaign.units import Density, Force, Length, Pressure, Temperature, Time


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


class MDSampler(Section):
    """MD with the current model, stopped when the force uncertainty (eqn 8), checked at every kept
    frame as IPSuite and apax do, passes a threshold."""

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

    @model_validator(mode="after")
    def _check(self) -> MDSampler:
        if self.ensemble == "npt" and self.box is not None:
            raise ValueError("box ramps need ensemble nvt (NPT sets the box itself)")
        if self.n_steps % self.interval:
            raise ValueError(f"n_steps ({self.n_steps}) must be a multiple of interval ({self.interval}): frames are "
                             "kept every interval steps, and the run ends on a frame")
        if self.start.count != 1:
            raise ValueError("start: an md sampler starts from one structure (first/last 1)")
        return self


class GeometryOptimisation(Optimiser):
    """Optimise the start structure(s); every step of every optimisation is a candidate."""

    kind: Literal["geometry_optimisation"] = "geometry_optimisation"
    start: Start = Field(default_factory=Start, description="never inherited by later iterations")


class ConformerSampler(Section):
    """RDKit conformers of every ion, packed with PACKMOL into periodic boxes of the system's
    composition at a reduced density. With ``unit_density``, formula units (the smallest neutral
    set of ions, e.g. 1 cation + 1 anion) are packed first without periodicity, and boxes are
    packed from those units (the workflow's ML11)."""

    kind: Literal["conformers"] = "conformers"
    n_conformers: int = Field(default=200, ge=1, description="per ion species")
    n_boxes: int = Field(default=20, ge=1)
    density: Density = Field(default=0.9, gt=0)
    tolerance: Length = Field(default=2.0, gt=0)
    unit_density: Density | None = Field(default=None, gt=0, description="pack formula units first, at this density")
    n_units: int | None = Field(default=None, ge=1, description="formula units to pack (default n_conformers)")


class VolumeScan(Section):
    """Rigid-molecule volume scans: each start structure (optimised first, unless ``optimise`` is
    null) scaled from ``length_factors[0]`` to ``length_factors[1]`` of its cell length in
    ``n_frames`` frames, molecules rigid (centres of mass scaled)."""

    kind: Literal["volume_scan"] = "volume_scan"
    start: Start = Field(default_factory=Start, description="never inherited by later iterations")
    optimise: Optimiser | None = Field(default_factory=Optimiser)
    length_factors: tuple[float, float] = Field(default=(0.9, 2.0), description="first and last cell length factor")
    n_frames: int = Field(default=100, ge=2, description="per start structure")

    @field_validator("length_factors")
    @classmethod
    def _positive(cls, value: tuple[float, float]) -> tuple[float, float]:
        if min(value) <= 0:
            raise ValueError("length factors must be positive")
        return value


class InitialPool(Section):
    """The labelled initial configurations the first model was not given (``initial_split``
    with ``n_train`` set): BAL from this pool is the paper's ML0. Their labels are reused."""

    kind: Literal["initial_pool"] = "initial_pool"


Sampler = Annotated[
    Union[MDSampler, GeometryOptimisation, ConformerSampler, VolumeScan, InitialPool], Field(discriminator="kind")
]
SAMPLER_KINDS = ("md", "geometry_optimisation", "conformers", "volume_scan", "initial_pool")
CHAINED_KINDS = ("md", "geometry_optimisation", "volume_scan")  # the next sampler continues from these
STARTING_KINDS = CHAINED_KINDS  # samplers that have a start


class Selection(Section):
    """One rule picking configurations to label from the candidates of some samplers. An
    iteration's rules are applied in order; a frame picked by one rule is not offered to the next."""

    kind: Literal["bal", "random", "all"] = Field(
        default="bal", description="bal: last-layer-gradient features + MaxDist (apax.bal)"
    )
    n: int = Field(default=50, ge=1)
    samplers: list[str] | None = Field(default=None, min_length=1, description="pick from these; null: all")
    split: Literal["auto", "train", "valid"] = Field(
        default="auto", description="auto: the dataset's seeded split; train/valid: force it"
    )
    max_pool: int | None = Field(default=None, ge=1, description="larger pools are picked at random")


class Relabel(Section):
    """Relabel the dataset with a changed reference method (a partial ``reference`` section, e.g.
    ``{d3: null}``: CP2K without its D3 block) and train a model on it (with the iteration's
    ``model`` overrides). Every later iteration labels with the changed reference. Frames of the
    splits not listed are dropped (their labels would no longer match)."""

    reference: dict[str, Any] = Field(min_length=1)
    splits: list[Literal["train", "valid", "test"]] = Field(default=["train", "valid", "test"], min_length=1)


class Iteration(Section):
    """One learning-on-the-fly iteration: sample with the last model, select, label, retrain; or,
    with ``relabel``, relabel the dataset and retrain.

    Fields not written are inherited from the previous sampling iteration (``inherit: false`` to
    start afresh); samplers are named, so one sampler's field can be overridden alone; a sampler
    set to null is dropped; ``start`` is never inherited. ``repeat`` runs the same iteration
    several times in a row (a name ending in a number counts up: ml1, ml2, ...). Relabel
    iterations neither inherit nor pass anything on.
    """

    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]+$")
    inherit: bool = True
    repeat: int = Field(default=1, ge=1)
    samplers: dict[str, Sampler] = Field(default_factory=dict)
    selection: list[Selection] = Field(
        default_factory=lambda: [Selection()], min_length=1, description="one rule, or a list applied in order"
    )
    energy_outlier_sigma: float | None = Field(
        default=None, gt=0, description="drop new labels whose energy per atom is further than this many sigma"
    )
    model: dict[str, Any] = Field(default_factory=dict, description="overrides of the model section")
    relabel: Relabel | None = Field(default=None, description="relabel the dataset instead of sampling")

    @field_validator("samplers", mode="before")
    @classmethod
    def _kind_from_name(cls, value: Any) -> Any:
        """A sampler named after its kind (``md:``) needs no ``kind:`` line."""
        if not isinstance(value, dict):
            return value
        return {
            name: dict(item, kind=name) if isinstance(item, dict) and "kind" not in item and name in SAMPLER_KINDS
            else item
            for name, item in value.items()
        }

    @field_validator("selection", mode="before")
    @classmethod
    def _one_rule(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _check(self) -> Iteration:
        if self.relabel is not None:
            given = {"samplers": bool(self.samplers), "selection": self.selection != [Selection()],
                     "energy_outlier_sigma": self.energy_outlier_sigma is not None, "repeat": self.repeat != 1}
            extra = [name for name, set_ in given.items() if set_]
            if extra:
                raise ValueError(f"a relabel iteration samples nothing: remove {', '.join(extra)}")
            return self
        if not self.samplers:
            raise ValueError("samplers: an iteration needs at least one sampler (or relabel)")
        for index, rule in enumerate(self.selection):
            unknown = sorted(set(rule.samplers or []) - set(self.samplers))
            if unknown:
                raise ValueError(
                    f"selection[{index}].samplers names {unknown}, which this iteration does not have "
                    f"(its samplers: {sorted(self.samplers)})"
                )
        return self


NOT_INHERITED = ("name", "repeat", "inherit")


def inherit_iterations(items: Any) -> Any:
    """Merge each raw sampling iteration onto the previous sampling iteration, unless it says
    ``inherit: false``; relabel iterations are left out of inheritance both ways. Sampler
    ``start`` fields are never inherited."""
    if not isinstance(items, list):
        return items
    merged: list[Any] = []
    base: dict[str, Any] | None = None
    for item in items:
        if not isinstance(item, dict) or "relabel" in item:
            merged.append(item)
            continue
        if base is not None and item.get("inherit", True):
            inherited = {k: v for k, v in base.items() if k not in NOT_INHERITED}
            samplers = inherited.get("samplers")
            if isinstance(samplers, dict):
                inherited["samplers"] = {name: {k: v for k, v in s.items() if k != "start"} if isinstance(s, dict) else s
                                         for name, s in samplers.items()}
            item = deep_merge(inherited, item)
            item["samplers"] = {k: v for k, v in (item.get("samplers") or {}).items() if v is not None}
        merged.append(item)
        base = item
    return merged


@dataclass(frozen=True)
class Planned:
    """One iteration as it runs: its name, its 1-based number, and its index in the spec's list."""

    name: str
    number: int
    index: int
    iteration: Iteration


def expand(sampling: list[Iteration]) -> list[Planned]:
    """Every iteration in order, ``repeat`` expanded and named: ``iterNN`` when unnamed; a name
    ending in a number counts up from it (ml1 x 4: ml1..ml4); other names get -1, -2, ..."""
    planned: list[Planned] = []
    for index, it in enumerate(sampling):
        match = re.fullmatch(r"(.*?)(\d+)", it.name or "")
        for r in range(it.repeat):
            number = len(planned) + 1
            if it.name is None:
                name = f"iter{number:02d}"
            elif it.repeat == 1:
                name = it.name
            elif match:
                name = f"{match.group(1)}{int(match.group(2)) + r}"
            else:
                name = f"{it.name}-{r + 1}"
            planned.append(Planned(name, number, index, it))
    return planned
