"""What integrates the initial MD when the reference does not (``initial_data.driver``): GFN-xTB
through tblite, or the GFN-FF force field through the ``gfnff`` package. Their energies and forces
only move the atoms: the reference labels the kept frames afterwards (``label.initial_data``).

GFN-FF sets itself up from the geometry at its first call; each ion is passed as its own fragment
with its formal charge, so no bond forms between ions and every ion keeps its charge. A fresh
calculator per chunk keeps a resumed run bit-identical to an uninterrupted one. As a classical MD
set-up minimises before its dynamics, the packed box is first relaxed with the driver (``relax``):
a packing's strain, released as heat, took a GFN-FF box from 500 K to 880 K in ten steps and
stretched a C-H bond past the bond guard."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ilcampaign.campaign.spec import GFNFF, XTB

if TYPE_CHECKING:
    from ase import Atoms

#: per driver kind: the program that runs it, its Python package and where it lives
PROGRAMS = {"gfnff": ("gfnff", "gfnff", "https://github.com/pprcht/gfnff"),
            "xtb": ("tblite", "tblite", "https://github.com/tblite/tblite")}


class DriverFailure(RuntimeError):
    """The driver gave no usable energy or forces; the message says why."""


def name(driver: GFNFF | XTB) -> str:
    """The driver in a word or two (GFN-FF, GFN1-xTB)."""
    return "GFN-FF" if driver.kind == "gfnff" else driver.method


def program(driver: GFNFF | XTB) -> dict[str, Any]:
    """The program behind the driver and its version, for the step's record."""
    label, package, url = PROGRAMS[driver.kind]
    try:
        found = version(package)
    except PackageNotFoundError:
        found = None
    return {"kind": driver.kind, "program": label, "version": found, "level": name(driver), "url": url}


def fragments(atoms: Atoms, smiles: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per atom: its ion's index (from 1) and a charge, the ion's formal charge spread evenly over its
    atoms (GFN-FF takes the sum per fragment as that fragment's charge)."""
    from ilcampaign.engine.structures.guards import molecules_of, template

    templates = sorted((template(s) for s in smiles), key=lambda t: -len(t.symbols))
    molecules = molecules_of(atoms, templates)
    if molecules is None:
        raise DriverFailure("the box cannot be read as consecutive ions of the spec's SMILES")
    index, charges = np.zeros(len(atoms), dtype=np.int32), np.zeros(len(atoms))
    for number, (start, match) in enumerate(molecules, start=1):
        index[start:start + len(match.symbols)] = number
        charges[start:start + len(match.symbols)] = match.charge / len(match.symbols)
    return index, charges


@contextmanager
def calculator(driver: GFNFF | XTB, atoms: Atoms, smiles: list[str], scratch: Path) -> Iterator[Any]:
    """A new calculator of ``driver`` for the box ``atoms`` (ions of ``smiles`` in order), used with
    ``driver.threads`` OpenMP threads."""
    from threadpoolctl import threadpool_limits

    if driver.kind == "xtb":
        from ilcampaign.engine.labels.cache import fresh_calculator

        with fresh_calculator(driver, int(atoms.info.get("charge", 0)), scratch) as calc:
            yield calc
        return
    index, charges = fragments(atoms, smiles)
    calc = _gfnff(charge=int(atoms.info.get("charge", 0)), fragments=index, ref_charges=charges)
    with threadpool_limits(limits=driver.threads, user_api="openmp"):
        yield calc


#: the relaxation before a driver's MD: FIRE to this largest force (eV/A), in at most this many steps
RELAX_FMAX, RELAX_STEPS = 0.5, 300


def relax(atoms: Atoms) -> None:
    """Relax the packed box in place with its calculator (the driver), cell fixed."""
    from ase.optimize import FIRE

    FIRE(atoms, logfile=None).run(fmax=RELAX_FMAX, steps=RELAX_STEPS)


def _gfnff(**parameters: Any) -> Any:
    """gfnff's ASE calculator, whose failures (a RuntimeError from the library) are DriverFailure."""
    from gfnff.ase_calculator import GFNFF as Calculator

    class Checked(Calculator):
        def calculate(self, *args: Any, **kwargs: Any) -> None:
            try:
                super().calculate(*args, **kwargs)
            except RuntimeError as exc:
                raise DriverFailure(f"GFN-FF: {exc}") from exc

    return Checked(**parameters)
