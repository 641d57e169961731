"""``pack``: the periodic starting box, packed with PACKMOL from the ``molecules`` step's ions and
checked: no contact beyond the guard, every bond as long as in its relaxed ion. PACKMOL keeps
molecules apart from each other's periodic images but not from their own, which a molecule longer
than the box can hit: such a box is repacked with the next seed, up to ``MAX_ATTEMPTS`` times."""

from __future__ import annotations

from typing import ClassVar

from ilcampaign.campaign.spec import Contacts, Ion, System
from ilcampaign.engine.step import SingleTaskStep, StepContext, StepFailed, TaskResult, register

#: packing moves molecules rigidly: a bond that changed by more than this was torn apart (A)
MAX_BOND_CHANGE = 0.01
#: PACKMOL seeds tried before the step gives up on a box that breaks the contact guard
MAX_ATTEMPTS = 20


@register
class PackStep(SingleTaskStep):
    """Pack the system's ions at ``packing_density``, then compress rigidly to ``density``."""

    kind: ClassVar[str] = "pack"
    version: ClassVar[int] = 2
    task: ClassVar[str] = "box"
    inputs: ClassVar[tuple[str, ...]] = ("molecules",)

    ions: list[Ion]
    density: float  # amu/Angstrom^3
    packing_density: float  # amu/Angstrom^3
    tolerance: float  # Angstrom
    seed: int
    contacts: Contacts | None = None

    @classmethod
    def from_system(cls, system: System, seed: int, contacts: Contacts | None) -> PackStep:
        return cls(
            ions=system.ions,
            density=system.density,
            packing_density=system.packing_density or system.density,
            tolerance=system.packmol_tolerance,
            seed=seed,
            contacts=contacts,
        )

    def run_task(self, ctx: StepContext, task_id: str) -> TaskResult:
        from ilcampaign.engine.structures.packing import pack_box, scale_rigid

        molecules = ctx.input_frames("molecules")
        for atoms in molecules:
            atoms.info = {"charge": atoms.info["charge"]}
        rejected = []
        for attempt in range(MAX_ATTEMPTS if self.contacts is not None else 1):
            box = pack_box([(atoms, ion.count) for atoms, ion in zip(molecules, self.ions)], self.packing_density,
                           seed=self.seed + attempt, tolerance=self.tolerance)
            if self.packing_density < self.density:
                box = scale_rigid(box, (self.packing_density / self.density) ** (1 / 3))
            box.info["source"] = "pack"
            summary = {"n_atoms": len(box), "cell_A": float(box.cell[0, 0]), "rejected": rejected}
            if self.contacts is None:
                return TaskResult([box], summary)
            try:
                return TaskResult([box], {**summary, **self._check(box, molecules)})
            except StepFailed as exc:
                rejected.append(str(exc))
        raise StepFailed(f"{MAX_ATTEMPTS} PACKMOL boxes broke the guards; the last: {rejected[-1]}. A box "
                         f"of {box.cell[0, 0]:.1f} A may be shorter than a molecule (which then meets its own "
                         "periodic image): use more ion pairs or a lower packing_density")

    def _check(self, box, molecules) -> dict:
        """StepFailed naming the atoms if a contact breaks the guard or a bond changed in packing;
        else how much the bonds changed, for the record."""
        import numpy as np

        from ilcampaign.engine.structures.guards import bond_lengths, bonds_of, template, worst_contact

        templates = [template(ion.smiles) for ion in self.ions]
        bonds = bonds_of(box, templates)
        worst = worst_contact(box, bonds, self.contacts)
        if worst is not None:
            raise StepFailed(f"the packed box is not sane: {worst}")
        relaxed = np.concatenate([bond_lengths(atoms, np.array(t.bonds, dtype=int).reshape(-1, 2))
                                  for atoms, t, ion in zip(molecules, templates, self.ions) for _ in range(ion.count)])
        change = np.abs(bond_lengths(box, bonds) - relaxed) if len(bonds) else np.zeros(0)
        if change.size and change.max() > MAX_BOND_CHANGE:
            i, j = bonds[int(change.argmax())]
            raise StepFailed(f"packing changed the bond {i}-{j} by {change.max():.3f} A (rigid molecules must "
                             "keep their bonds)")
        return {"max_bond_change_A": float(change.max()) if change.size else 0.0}
