"""``initial_pool``: the labelled initial configurations the first model was not given.

BAL from this pool is the paper's ML0. The frames go through ``select`` and ``label`` like any
candidates; their reference results are found in the calculation cache, not recomputed.
"""

from __future__ import annotations

from typing import ClassVar

from ilcampaign.campaign.spec import CampaignSpec, InitialPoolSettings
from ilcampaign.engine.step import SingleTaskStep, StepContext, TaskResult, register
from ilcampaign.engine.steps.sampling import SamplerStep, candidates


@register
class InitialPoolStep(SingleTaskStep, SamplerStep):
    """The ``labelled`` initial frames listed as unused by the first ``dataset``."""

    kind: ClassVar[str] = "initial_pool"
    version: ClassVar[int] = 1
    task: ClassVar[str] = "collect"
    inputs: ClassVar[tuple[str, ...]] = ("labelled", "dataset")

    settings: InitialPoolSettings

    @classmethod
    def from_sampler(cls, spec: CampaignSpec, settings: InitialPoolSettings, seed: int) -> InitialPoolStep:
        return cls(settings=settings)

    def sampler_inputs(self, model: str, chain: str) -> dict[str, str]:
        return {"labelled": "label.initial_data", "dataset": "dataset.initial"}

    def run_task(self, ctx: StepContext, task_id: str) -> TaskResult:
        unused = ctx.input_record("dataset")["summary"]["unused"]
        labelled = ctx.input_frames("labelled")
        return candidates([labelled[i] for i in unused], "initial_pool", initial_index=unused)
