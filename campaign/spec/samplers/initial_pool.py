"""``initial_pool``: the labelled initial frames the first model was not given (the paper's ML0)."""

from __future__ import annotations

from typing import ClassVar, Literal

from ilcampaign.campaign.spec.registry import SAMPLERS
from ilcampaign.campaign.spec.samplers.common import SamplerSettings


@SAMPLERS.register
class InitialPoolSettings(SamplerSettings):
    """The labelled initial configurations the first model was not given (``initial_split``
    with ``n_train`` set): BAL from this pool is the paper's ML0. Their labels are reused."""

    provides_starts: ClassVar[bool] = False
    kind: Literal["initial_pool"] = "initial_pool"
