"""``molecules``: each ion's 3D structure, made by ilcampaign.engine.structures.ions (RDKit, xTB relaxation in vacuum)
and checked against the contact guard, one task per ion; the boxes are packed from these."""

from __future__ import annotations

from typing import Any, ClassVar

from ilcampaign.campaign.spec import Contacts, Ion, IonRelaxation
from ilcampaign.engine.step import Step, StepContext, StepFailed, TaskResult, register, without_timings


@register
class MoleculesStep(Step):
    """One relaxed structure per ion of the system, in the system's order."""

    kind: ClassVar[str] = "molecules"
    version: ClassVar[int] = 1

    ions: list[Ion]
    relaxation: IonRelaxation | None
    contacts: Contacts | None
    seed: int

    def expected_tasks(self) -> int:
        return len(self.ions)

    def tasks(self, ctx: StepContext) -> list[str]:
        done = ctx.done_tasks()
        return [ion.name for ion in self.ions if ion.name not in done]

    def run_task(self, ctx: StepContext, task_id: str) -> TaskResult:
        from ilcampaign.engine.structures.ions import IonError, ion_structure

        index, ion = next((i, ion) for i, ion in enumerate(self.ions) if ion.name == task_id)
        try:
            atoms, made = ion_structure(ion.smiles, self.seed + index, self.relaxation, self.contacts)
        except IonError as exc:
            raise StepFailed(f"ion {ion.name}: {exc}") from exc
        atoms.info.update(name=ion.name, smiles=ion.smiles)
        return TaskResult([atoms], {"name": ion.name, "smiles": ion.smiles, "n_atoms": len(atoms),
                                    "charge": int(atoms.info["charge"]), **made})

    def finish(self, ctx: StepContext) -> tuple[list[str], dict[str, Any]]:
        done = ctx.done_tasks()
        frames = [ctx.task_frames(ion.name)[0] for ion in self.ions]
        ions = {ion.name: {k: v for k, v in without_timings(done[ion.name]).items() if k != "name"} for ion in self.ions}
        return [ctx.write_frames(frames)], {"ions": ions}
