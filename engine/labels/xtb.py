"""``reference: {kind: xtb}``: GFN-xTB through tblite's ASE calculator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ilcampaign.campaign.spec import XTB
from ilcampaign.engine.labels.method import LabelMethod, register_method


@register_method
class XTBMethod(LabelMethod):
    kind = "xtb"
    program = "tblite"
    url = "https://github.com/tblite/tblite"

    @staticmethod
    def calculator(reference: XTB, charge: int, workdir: Path) -> Any:
        from tblite.ase import TBLite

        return TBLite(method=reference.method, electronic_temperature=reference.electronic_temperature,
                      accuracy=reference.accuracy, max_iterations=reference.max_iterations, charge=charge,
                      verbosity=0)

    @staticmethod
    def version(reference: XTB) -> str | None:
        from importlib.metadata import version

        return version("tblite")

    @staticmethod
    def level(reference: XTB) -> str:
        return reference.method
