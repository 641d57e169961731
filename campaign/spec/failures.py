"""``failures``: what happens when a reference calculation fails."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ilcampaign.campaign.spec.base import Section


class Failures(Section):
    """What to do when a reference calculation fails (SCF not converged, crash).

    ``retry``: try the overrides in ``retry_with`` in order (each a partial reference section),
    then skip the configuration. ``skip``: record and go on. ``stop``: record and stop the run.
    Every failure is recorded with its message; the step fails when more than
    ``max_failed_fraction`` of its configurations failed.
    """

    on_failure: Literal["retry", "skip", "stop"] = "retry"
    retry_with: list[dict[str, Any]] | None = Field(
        default=None, description="null: the reference method's defaults (xtb raises the electronic temperature, "
        "cp2k starts from an atomic guess with more SCF steps)")
    uniform_settings: bool = Field(
        default=False,
        description="true: once any configuration needed a retry setting, relabel every configuration with "
        "the strongest setting used, so the dataset has one setting; false: record the setting per frame",
    )
    max_failed_fraction: float = Field(default=0.05, ge=0, le=1)
