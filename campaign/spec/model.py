"""``model``: the apax GMNN potential and how it is trained; defaults are the paper's."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from ilcampaign.campaign.spec.base import Section
from ilcampaign.campaign.units import Length


class Ensemble(Section):
    """apax ensemble: ``full`` trains independent members, ``shallow`` shares all but the last layer."""

    kind: Literal["full", "shallow"] = "full"
    n_members: int = Field(default=2, ge=2, description="at least 2: the spread is the uncertainty")


class LossWeights(Section):
    energy: float = Field(default=1.0, ge=0)
    forces: float = Field(default=4.0, ge=0)
    stress: float = Field(default=0.2, ge=0)


class LearningRates(Section):
    embedding: float = Field(default=0.01, gt=0)
    network: float = Field(default=0.005, gt=0)
    scale: float = Field(default=0.001, gt=0)
    shift: float = Field(default=0.05, gt=0)


class ApaxModel(Section):
    """A GMNN potential trained with apax; defaults are the paper's LotF settings (Methods)."""

    kind: Literal["apax"] = "apax"
    n_basis: int = Field(default=7, ge=1)
    n_radial: int = Field(default=5, ge=1)
    r_min: Length = Field(default=0.7, gt=0)
    r_max: Length = Field(default=5.5, gt=0)
    nn: list[int] = Field(default_factory=lambda: [512, 512], min_length=1)
    ensemble: Ensemble | None = Field(
        default_factory=Ensemble, description="null: a single model, which has no force uncertainty"
    )
    loss: LossWeights = Field(default_factory=LossWeights)
    learning_rates: LearningRates = Field(default_factory=LearningRates)
    batch_size: int = Field(default=4, ge=1)
    valid_batch_size: int = Field(default=100, ge=1)
    epochs: int = Field(default=500, ge=1)
    patience: int | None = Field(default=None, ge=1)
    zbl: bool = Field(default=True, description="ZBL repulsion (apax empirical_corrections)")
    seed: int = Field(default=1, ge=0)
    validation_fraction: float = Field(default=0.5, gt=0, lt=1, description="of each new batch of labels")
    fixed_validation: bool = Field(
        default=False, description="true: new labels all go to training (unless a selection rule forces valid)"
    )
    apax_extra: dict[str, Any] = Field(default_factory=dict, description="raw apax config merged in")

    @model_validator(mode="after")
    def _check(self) -> ApaxModel:
        if self.r_min >= self.r_max:
            raise ValueError("r_min must be smaller than r_max")
        return self
