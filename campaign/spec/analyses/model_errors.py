"""``model_errors``: trained models scored on one split of their datasets (the test frames by default)."""

from __future__ import annotations

from typing import Literal

from ilcampaign.campaign.spec.analyses.common import ModelAnalysisSettings
from ilcampaign.campaign.spec.base import added_option
from ilcampaign.campaign.spec.registry import ANALYSES


@ANALYSES.register
class ModelErrorsSettings(ModelAnalysisSettings):
    """Energy, force and stress errors of trained models on one split of the dataset each was trained
    on (the held-out test frames by default), per element and as parity data."""

    kind: Literal["model_errors"] = "model_errors"
    split: Literal["test", "valid", "train"] = added_option(
        "test", description="the frames scored: test (never trained on), valid (validated on, as the paper's Fig. 1) "
                            "or train")
