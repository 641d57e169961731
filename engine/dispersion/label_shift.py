"""The same labelled frames with and without D3 (torch-dftd): the paper's final models were trained
on DFT, DFT + D3(8 A) and DFT + D3(20 A) labels of one dataset."""

from __future__ import annotations

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import all_changes
from ase.calculators.singlepoint import SinglePointCalculator

from ilcampaign.engine.dispersion.torch_dftd import SkinD3Calculator

SUMMED = ("energy", "free_energy", "forces", "stress")  # additive properties of a model and D3


def d3_results(
    frames: list[Atoms],
    *,
    xc: str = "b97-3c",
    damping: str = "bj",
    cutoff: float,
    cn_cutoff: float,
    dtype: torch.dtype = torch.float32,
) -> list[dict]:
    """D3 energy (eV), forces (eV/A) and, for periodic frames, Voigt stress (eV/A^3) of each frame."""
    calc = SkinD3Calculator(xc=xc, damping=damping, cutoff=cutoff, cn_cutoff=cn_cutoff, skin=0.0, dtype=dtype)
    out = []
    for atoms in frames:
        calc.reset()
        calc.calculate(atoms, ["energy", "forces"], all_changes)
        result = {"energy": float(calc.results["energy"])}
        result |= {key: np.array(calc.results[key], dtype=float) for key in ("forces", "stress") if key in calc.results}
        out.append(result)
    return out


def shift_labels(frames: list[Atoms], d3: list[dict], sign: int) -> list[Atoms]:
    """Copies of ``frames`` whose energy/free energy/forces/stress labels are shifted by ``sign`` (+1: add,
    -1: remove) times the D3 contribution; other labels and ``info`` are kept."""
    if sign not in (1, -1):
        raise ValueError(f"sign must be +1 or -1, got {sign}")
    if len(frames) != len(d3):
        raise ValueError(f"{len(frames)} frames but {len(d3)} D3 results")
    shifted = []
    for atoms, correction in zip(frames, d3):
        labels = dict(atoms.calc.results)
        for key in SUMMED:
            if key in labels:
                labels[key] = labels[key] + sign * correction["energy" if key == "free_energy" else key]
        copy = atoms.copy()
        copy.calc = SinglePointCalculator(copy, **labels)
        shifted.append(copy)
    return shifted
