"""``checkpoints``: how often long steps save their state (never part of a step key)."""

from __future__ import annotations

from pydantic import Field

from ilcampaign.campaign.spec.base import Section


class Checkpoints(Section):
    """How often long steps save their state, so a killed run loses at most this much work.
    Not part of any step key: changing it never reruns a finished step. MD results are
    bit-identical for a given ``md_steps``; another value changes only the rounding at chunk
    boundaries, where calculators rebuild their neighbour lists."""

    md_steps: int = Field(default=1000, ge=1, description="MD steps between checkpoints (every engine)")
    optimisation_steps: int = Field(default=100, ge=1, description="optimiser steps between checkpoints")
    training_epochs: int = Field(default=10, ge=1, description="training epochs between checkpoints")
