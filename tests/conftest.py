"""Shared helpers: tiny specs and running the CLI in a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: test files collected first, in this order; ``make test`` keeps that order for xdist
#: (``--no-loadscope-reorder``), so the two longest files (the whole rehearsals, the JAX MD tests)
#: start at once, one per worker, while the rest is shared out behind them
FIRST = ("test_rehearsal.py", "test_jax_md.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    order = {name: i for i, name in enumerate(FIRST)}
    items.sort(key=lambda item: order.get(item.path.name, len(FIRST)))  # stable: order within files kept


@pytest.fixture(autouse=True)
def _own_compilation_cache():
    """JAX's persistent compilation cache is process-wide: a test that enables it (in a folder of its
    own) leaves it off again, so that later tests in the worker compile as they would alone."""
    yield
    jax = sys.modules.get("jax")
    if jax is not None and jax.config.jax_compilation_cache_dir is not None:
        from jax.experimental.compilation_cache import compilation_cache

        jax.config.update("jax_compilation_cache_dir", None)
        compilation_cache.reset_cache()

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


#: a tiny model trained in about a minute (the ``trained`` fixture's)
TINY_MODEL = """
model:
  r_max: 3.5 A
  n_basis: 4
  n_radial: 2
  nn: [8, 8]
  epochs: 3
  batch_size: 2
  valid_batch_size: 4
"""

#: a 3-epoch model's MD soon breaks the contact and bond guards and strays above twice its target temperature;
#: tests on resuming keep only the one-step blow-up bound
LOOSE_GUARDS = "guards:\n  contacts: null\n  bonds: null\n  temperature: {ratio: 4.9, steps: 1000000}\n"


def trained_spec(path: Path, extra: str) -> Path:
    """The tiny spec with xTB MD initial data (4 frames, one held out for testing), TINY_MODEL,
    LOOSE_GUARDS and ``extra``; its
    steps up to ``train.initial`` do not depend on ``extra``, so the ``trained`` work directory serves all."""
    spec = tiny_spec(path, initial_data=MD.format(n_steps=8, interval=2, chunk=500))
    spec.write_text(spec.read_text() + TINY_MODEL + LOOSE_GUARDS + "initial_split: {n_test: 1}\n" + extra)
    return spec


def nodes_until(spec: Path, last: str):
    """The spec's steps up to and including ``last``."""
    from ilcampaign.campaign.loader import load_spec
    from ilcampaign.engine.graph import build_graph

    nodes = build_graph(load_spec(spec), base=spec.parent)
    return nodes[: [n.name for n in nodes].index(last) + 1]


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Path:
    """A work directory with the steps of ``trained_spec`` up to the first model (train.initial)."""
    from ilcampaign.engine.run.runner import run_graph

    root = tmp_path_factory.mktemp("trained")
    spec = trained_spec(root / "spec.yaml", "sampling:\n  - samplers:\n      md: {n_steps: 10}\n"
                                            "    selection: {kind: random, n: 1}\n")
    run_graph(nodes_until(spec, "train.initial"), root / "wd", workers=1, progress=lambda *a: None)
    return root / "wd"


def campaign_cmd(*args: str | os.PathLike[str]) -> list[str]:
    return [sys.executable, "-m", "ilcampaign.campaign", *map(str, args)]


def run_cli(*args: str | os.PathLike[str], cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``campaign ARGS`` in a subprocess; returns the completed process (text output)."""
    env = dict(os.environ, COLUMNS="200")
    return subprocess.run(campaign_cmd(*args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def one_pair_box():
    """One BMIM BF4 pair packed at 1.0 g/cm^3 (RDKit conformers, PACKMOL)."""
    from ilcampaign.campaign.units import to_internal
    from ilcampaign.engine.structures.ions import conformer
    from ilcampaign.engine.structures.packing import pack_box

    ions = [(conformer("CCCCn1cc[n+](C)c1", 1), 1), (conformer("F[B-](F)(F)F", 1), 1)]
    return pack_box(ions, to_internal("1.0 g/cm^3", "density"), seed=1, tolerance=2.0)


def xtb_trained(model, box, folder: Path) -> Path:
    """``model`` trained on 4 rattled copies of ``box`` (2 more validate) with GFN2-xTB labels; its folder."""
    import numpy as np
    from ase.calculators.singlepoint import SinglePointCalculator
    from tblite.ase import TBLite

    from ilcampaign.engine.models.training import train

    rng = np.random.default_rng(0)
    frames = []
    for stdev in 0.02 + 0.02 * np.arange(6):
        atoms = box.copy()
        atoms.positions += rng.normal(0.0, stdev, atoms.positions.shape)
        atoms.calc = TBLite(method="GFN2-xTB", charge=0, verbosity=0)
        labels = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(), "stress": atoms.get_stress()}
        atoms.calc = SinglePointCalculator(atoms, **labels)
        frames.append(atoms)
    return train(model, frames[:4], frames[4:], folder, checkpoint_every=100).model_dir
