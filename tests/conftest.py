"""Shared helpers: tiny specs and running the CLI in a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TINY_SPEC = """\
campaign:
  name: tiny
  seed: 7
system:
  ions:
    - {{name: BMIM, smiles: "CCCCn1cc[n+](C)c1", count: 1}}
    - {{name: BF4, smiles: "F[B-](F)(F)F", count: 1}}
  density: 1.0 g/cm^3
  packmol_tolerance: 2.0 A
reference:
  kind: xtb
  accuracy: {accuracy}
initial_data:
{initial_data}
failures:
  on_failure: {on_failure}
  max_failed_fraction: {max_failed_fraction}
"""

RATTLE = "  kind: rattle\n  n_frames: {n_frames}\n  stdev: 0.05 A\n"
MD = "  kind: md\n  temperature: 500 K\n  n_steps: {n_steps}\n  interval: {interval}\ncheckpoints:\n  md_steps: {chunk}\n"


def tiny_spec(
    path: Path,
    *,
    accuracy: float = 1.0,
    initial_data: str | None = None,
    on_failure: str = "retry",
    max_failed_fraction: float = 0.1,
) -> Path:
    """Write a 1-ion-pair BMIM BF4 xTB spec (fast enough for end-to-end tests) to ``path``."""
    text = TINY_SPEC.format(
        accuracy=accuracy,
        initial_data=initial_data or RATTLE.format(n_frames=6),
        on_failure=on_failure,
        max_failed_fraction=max_failed_fraction,
    )
    path.write_text(text)
    return path


def campaign_cmd(*args: str | os.PathLike[str]) -> list[str]:
    return [sys.executable, "-m", "campaign", *map(str, args)]


def run_cli(*args: str | os.PathLike[str], cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``campaign ARGS`` in a subprocess; returns the completed process (text output)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="200")
    return subprocess.run(campaign_cmd(*args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
