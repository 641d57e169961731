"""``conformers``: boxes of RDKit conformers packed with PACKMOL at a reduced density."""

from __future__ import annotations

from typing import ClassVar

from campaign.spec import ConformerSampler, Ion
from engine.step import SingleTaskStep, StepContext, TaskResult, register
from engine.steps.sampling import candidates


@register
class Conformers(SingleTaskStep):
    """``n_boxes`` boxes of the system's composition, each from randomly drawn conformers."""

    kind: ClassVar[str] = "conformers"
    version: ClassVar[int] = 1
    task: ClassVar[str] = "pack"

    settings: ConformerSampler
    ions: list[Ion]
    seed: int

    def run_task(self, ctx: StepContext, task_id: str) -> TaskResult:
        from engine.structures import conformer_boxes

        s = self.settings
        boxes = conformer_boxes([(ion.smiles, ion.count) for ion in self.ions], s.n_conformers, s.n_boxes,
                                s.density, s.tolerance, self.seed, unit_density=s.unit_density, n_units=s.n_units)
        return candidates(boxes, "conformers")
