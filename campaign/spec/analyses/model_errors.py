"""``model_errors``: trained models on the held-out test split of their datasets."""

from __future__ import annotations

from typing import Literal

from ilcampaign.campaign.spec.analyses.common import ModelAnalysisSettings
from ilcampaign.campaign.spec.registry import ANALYSES


@ANALYSES.register
class ModelErrorsSettings(ModelAnalysisSettings):
    """Energy, force and stress errors of trained models on the held-out test set, per element and as parity data."""

    kind: Literal["model_errors"] = "model_errors"
