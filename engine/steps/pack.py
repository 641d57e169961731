"""``pack``: the periodic starting box, built from RDKit conformers with PACKMOL."""

from __future__ import annotations

from typing import ClassVar

from campaign.spec import Ion, System
from engine.step import SingleTaskStep, StepContext, TaskResult, register


@register
class Pack(SingleTaskStep):
    """Pack the system's ions at ``packing_density``, then compress rigidly to ``density``."""

    kind: ClassVar[str] = "pack"
    version: ClassVar[int] = 1
    task: ClassVar[str] = "box"

    ions: list[Ion]
    density: float  # amu/Angstrom^3
    packing_density: float  # amu/Angstrom^3
    tolerance: float  # Angstrom
    seed: int

    @classmethod
    def from_system(cls, system: System, seed: int) -> Pack:
        return cls(
            ions=system.ions,
            density=system.density,
            packing_density=system.packing_density or system.density,
            tolerance=system.packmol_tolerance,
            seed=seed,
        )

    def run_task(self, ctx: StepContext, task_id: str) -> TaskResult:
        from engine.packing import conformer, pack_box, scale_rigid

        molecules = [(conformer(ion.smiles, seed=self.seed + i), ion.count) for i, ion in enumerate(self.ions)]
        box = pack_box(molecules, self.packing_density, seed=self.seed, tolerance=self.tolerance)
        if self.packing_density < self.density:
            box = scale_rigid(box, (self.packing_density / self.density) ** (1 / 3))
        box.info["source"] = "pack"
        return TaskResult([box], {"n_atoms": len(box), "cell_A": float(box.cell[0, 0])})
