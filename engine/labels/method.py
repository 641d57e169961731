"""Reference methods behind the labels: one module per method in this folder (``xtb``, ``cp2k``),
each a ``LabelMethod`` registered for the spec's ``reference: {kind: ...}`` that builds its ASE
calculator and names the program it runs, so records and provenance say what computed a label.

``compute`` runs one single point and turns every failure (SCF not converged, crash, NaN) into
:class:`ReferenceFailure`, so callers can record it and go on.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

METHODS: dict[str, type[LabelMethod]] = {}


class LabelMethod:
    """How one reference method labels configurations: ``kind`` as in the spec, the program it
    runs (``program``, ``url``) and its version, and the ASE calculator for a spec section."""

    kind: ClassVar[str]
    program: ClassVar[str]
    url: ClassVar[str]

    @staticmethod
    def calculator(reference: Any, charge: int, workdir: Path) -> Any:
        """The ASE calculator for ``reference`` at net ``charge``; its files go to ``workdir``."""
        raise NotImplementedError

    @staticmethod
    def version(reference: Any) -> str | None:
        """The version of the program that ``reference`` runs, or None if it cannot say."""
        raise NotImplementedError

    @staticmethod
    def level(reference: Any) -> str:
        """The level of theory in a few words (e.g. GFN2-xTB, B97-3c)."""
        raise NotImplementedError


def register_method(cls: type[LabelMethod]) -> type[LabelMethod]:
    """Class decorator adding a reference method to ``METHODS``."""
    METHODS[cls.kind] = cls
    return cls


def make_calculator(reference: Any, *, charge: int = 0, workdir: Path) -> Any:
    """The ASE calculator for a spec's reference section at net ``charge``; files go to ``workdir``."""
    return METHODS[reference.kind].calculator(reference, charge, workdir)


def reference_programs(settings: Iterable[Any]) -> list[dict[str, Any]]:
    """The programs that computed labels with ``settings`` (a step's reference and its retry
    settings), one entry per program, version and level of theory, for the step's record."""
    found: dict[tuple, dict[str, Any]] = {}
    for setting in settings:
        method = METHODS[setting.kind]
        entry = {"kind": setting.kind, "program": method.program, "version": method.version(setting),
                 "level": method.level(setting), "url": method.url}
        found.setdefault(tuple(entry.values()), entry)
    return list(found.values())


class ReferenceFailure(RuntimeError):
    """A reference calculation did not give a usable result; the message says why."""


def compute(atoms: Any, calculator: Any) -> dict[str, np.ndarray | float]:
    """Energy (eV), forces (eV/A), stress (eV/A^3, Voigt; periodic cells only) and charges
    (where the calculator gives them) of ``atoms``; ReferenceFailure if there is no usable result."""
    from ase.calculators.calculator import CalculationFailed

    names = ["energy", "forces"]
    names += ["stress"] if atoms.pbc.all() else []
    names += ["charges"] if "charges" in calculator.implemented_properties else []
    try:
        results = {name: calculator.get_property(name, atoms) for name in names}
    except CalculationFailed as exc:  # tblite, e.g. "SCF not converged in 250 cycles"
        calculator.reset()
        raise ReferenceFailure(f"{type(calculator).__name__} failed: {exc}") from exc
    results = {name: np.array(value, dtype=float) for name, value in results.items()}
    results["energy"] = float(results["energy"])
    bad = [name for name, value in results.items() if not np.all(np.isfinite(value))]
    if bad:
        getattr(calculator, "discard", calculator.reset)()  # CP2K: also drop the shell's wavefunction
        raise ReferenceFailure(f"{type(calculator).__name__} returned non-finite {', '.join(bad)}")
    return results
