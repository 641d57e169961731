"""``sampling``: the learning-on-the-fly schedule. Each iteration samples candidates with the last
model (named samplers), selects some, labels them and retrains; or relabels the whole dataset
with a changed reference and retrains on it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ilcampaign.campaign.spec.base import Section, deep_merge
from ilcampaign.campaign.spec.registry import SAMPLERS
from ilcampaign.campaign.spec.samplers import Sampler


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
            name: dict(item, kind=name) if isinstance(item, dict) and "kind" not in item and name in SAMPLERS.classes
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
            if isinstance(item.get("samplers"), dict):  # anything else is reported by validation
                item["samplers"] = {k: v for k, v in item["samplers"].items() if v is not None}
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
