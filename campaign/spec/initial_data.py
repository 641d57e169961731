"""``initial_data`` and ``initial_split``: the first configurations and how the first model uses them."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, model_validator

from ilcampaign.campaign.spec.base import Section, added_option, not_hashed
from ilcampaign.campaign.spec.reference.xtb import XTB
from ilcampaign.campaign.units import Length, Temperature, Time


class GFNFF(Section):
    """GFN-FF (Spicher and Grimme 2020) through the ``gfnff`` package: a generic force field that
    parametrises itself from the atoms, each ion as its own fragment with its formal charge, so
    every ion given by SMILES has one. Periodic; about a hundred times cheaper than GFN2-xTB here."""

    kind: Literal["gfnff"] = "gfnff"
    threads: int = not_hashed(default=1, ge=1, description="OpenMP threads")


#: what integrates the initial MD: the reference itself, GFN-xTB through tblite, or GFN-FF
Driver = Union[Literal["reference"], Annotated[Union[XTB, GFNFF], Field(discriminator="kind")]]


class InitialMD(Section):
    """Configurations from a Langevin MD run. With ``driver: reference`` the reference method
    integrates it and its energies, forces and stress of the kept frames are their labels (no
    second calculation); with a cheaper driver (GFN-FF, GFN-xTB) the reference labels only the
    frames kept every ``interval`` steps, as the paper labelled its classical trajectory."""

    kind: Literal["md"] = "md"
    driver: Driver = added_option("reference", description="what integrates the MD: `reference`, "
                                  "`{kind: gfnff}` or `{kind: xtb, method: GFN1-xTB}`; the labels are the reference's")
    temperature: Temperature = Field(default=500.0, gt=0)
    timestep: Time = Field(default=0.5, gt=0)
    n_steps: int = Field(default=200, ge=1)
    interval: int = Field(default=10, ge=1, description="keep a frame every `interval` steps")
    friction: float = Field(default=0.01, gt=0, description="Langevin friction in ASE units (1/ASE time)")

    @model_validator(mode="after")
    def _check(self) -> InitialMD:
        if self.n_steps % self.interval:
            raise ValueError(f"n_steps ({self.n_steps}) must be a multiple of interval ({self.interval}): frames are "
                             "kept every interval steps, and the run ends on a frame")
        return self


class InitialRattle(Section):
    """Configurations made by rattling the packed box with Gaussian displacements."""

    kind: Literal["rattle"] = "rattle"
    n_frames: int = Field(default=20, ge=1)
    stdev: Length = Field(default=0.05, gt=0)


class InitialFile(Section):
    """Configurations read from a trajectory file (any format ASE reads), e.g. a classical MD run.

    Frames carry their total charge in ``info["charge"]`` where the format has it (extxyz).
    """

    kind: Literal["file"] = "file"
    path: str = not_hashed(description="trajectory file, relative to the spec; its content is hashed")
    format: str | None = Field(default=None, description="ASE format name; guessed from the suffix if null")
    every: int = Field(default=1, ge=1, description="keep every n-th frame")
    max_frames: int | None = Field(default=None, ge=1)


InitialData = Annotated[Union[InitialMD, InitialRattle, InitialFile], Field(discriminator="kind")]


class InitialSplit(Section):
    """How the labelled initial data is divided before the first model (the paper: a 3 sigma energy
    filter, then 100 training, 100 validation and 500 test frames; the rest is the pool an
    ``initial_pool`` sampler picks from later). Frames are drawn by a seeded permutation."""

    energy_outlier_sigma: float | None = Field(
        default=None, gt=0, description="drop frames whose energy per atom is further than this many sigma"
    )
    n_test: int = Field(default=0, ge=0, description="held out: never trained or validated on")
    n_valid: int | None = Field(default=None, ge=1, description="null: model.validation_fraction of the rest")
    n_train: int | None = Field(default=None, ge=1, description="null: every frame not held out or validating")

    @model_validator(mode="after")
    def _check(self) -> InitialSplit:
        if self.n_train is not None and self.n_valid is None:
            raise ValueError("n_train needs n_valid: with both set, the frames left over form the initial pool")
        return self
