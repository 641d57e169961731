"""``conformers``: boxes of RDKit conformers packed with PACKMOL at a reduced density; conformers of
ions MMFF does not know are relaxed with xTB, and every conformer is checked against the contact guard."""

from __future__ import annotations

from typing import ClassVar

from ilcampaign.campaign.spec import CampaignSpec, ConformersSettings, Contacts, Ion, IonRelaxation
from ilcampaign.engine.step import SingleTaskStep, StepContext, TaskResult, register
from ilcampaign.engine.steps.sampling import SamplerStep, candidates


@register
class ConformersStep(SingleTaskStep, SamplerStep):
    """``n_boxes`` boxes of the system's composition, each from randomly drawn conformers."""

    kind: ClassVar[str] = "conformers"
    version: ClassVar[int] = 2
    task: ClassVar[str] = "pack"

    settings: ConformersSettings
    ions: list[Ion]
    seed: int
    relaxation: IonRelaxation | None = None
    contacts: Contacts | None = None

    @classmethod
    def from_sampler(cls, spec: CampaignSpec, settings: ConformersSettings, seed: int) -> ConformersStep:
        return cls(settings=settings, ions=spec.system.ions, seed=seed, relaxation=spec.system.relax_ions,
                   contacts=spec.guards.contacts)

    def sampler_inputs(self, model: str, chain: str) -> dict[str, str]:
        return {}  # packed from the ions' SMILES alone

    def run_task(self, ctx: StepContext, task_id: str) -> TaskResult:
        from ilcampaign.engine.structures.candidates import conformer_boxes

        s = self.settings
        boxes = conformer_boxes([(ion.smiles, ion.count) for ion in self.ions], s.n_conformers, s.n_boxes,
                                s.density, s.tolerance, self.seed, unit_density=s.unit_density, n_units=s.n_units,
                                relaxation=self.relaxation, contacts=self.contacts)
        return candidates(boxes, "conformers")
