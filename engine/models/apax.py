"""apax GMNN ensembles: the ASE calculator, the force uncertainty (paper eqn 8) and JAX's
persistent compilation cache. Training is in ``training``, batch active learning in ``bal``, our
JAX MD in ilcampaign.engine.md.jax.

apax and JAX are imported inside the functions: importing apax pulls in TensorFlow (~8 s), and
the CLI must start fast. apax's replacement of the root logger's handlers is undone after each
call, and everything it writes goes under the given work directory.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

if TYPE_CHECKING:
    from ase import Atoms


@contextmanager
def apax_contained() -> Iterator[None]:
    """Restore the root logger after apax, which replaces its handlers with its own log file
    (train.log, md.log in its directory) and a stderr handler."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)


# --------------------------------------------------------------------------- inference


def enable_compilation_cache(directory: Path) -> None:
    """JAX's persistent compilation cache in ``directory`` (every compilation cached), so a new
    process, or a fresh calculator, reuses compiled code; JAX's cache state is reset if it was set
    up for another folder. The cached executables are those a compilation would make: results
    do not depend on the cache."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    if jax.config.jax_compilation_cache_dir == str(directory):
        return
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    compilation_cache.reset_cache()  # JAX sets its cache up once, at the first compilation


def load_calculator(model_dir: Path, *, dr_threshold: float = 0.5, cache_dir: Path | None = None) -> Any:
    """apax's ASE calculator for the ensemble in ``model_dir``: energy, forces and stress are the
    ensemble mean; ``results`` also hold ``forces_ensemble`` (n_atoms, 3, n_members) and
    ``forces_uncertainty`` (std over members per atom and component, see ``std_factor``).
    ``cache_dir``: JAX's persistent compilation cache (a fresh calculator then costs ~1 s, not ~10 s).

    apax 0.14 bug: its ``stress_ensemble`` is a copy of ``forces_ensemble``; do not use it.
    """
    from apax.md.ase_calc import ASECalculator

    if cache_dir is not None:
        enable_compilation_cache(cache_dir)
    return ASECalculator(Path(model_dir), dr_threshold=dr_threshold)


def force_uncertainty(results: dict[str, Any]) -> float:
    """Paper eqn 8 from the members' forces (``forces_ensemble``): max over atoms and components
    of their population standard deviation (1/N_ens), in eV/Angstrom."""
    if "forces_ensemble" not in results:
        raise KeyError("no forces_ensemble in the results: the model is not an ensemble")
    return float(np.max(np.std(results["forces_ensemble"], axis=-1)))


def std_factor(model_config: Any) -> float:
    """apax's ``forces_uncertainty`` over eqn 8's value: 1 for full ensembles (``jnp.std``),
    sqrt(N/(N-1)) for shallow ones (apax divides their variance by N - 1); 1 for a single model."""
    ensemble = model_config.model.ensemble
    if ensemble is None or ensemble.kind == "full":
        return 1.0
    return float(np.sqrt(ensemble.n_members / (ensemble.n_members - 1)))


def jax_md_valid(atoms: Atoms, r_max: float) -> bool:
    """Whether apax's JAX MD computes correct neighbours for this box: every perpendicular width of
    the (fully periodic) cell must exceed 2 r_max (apax uses one minimum image per pair). The
    neighbour-list skin does not enter: pairs are found by minimum image, whatever their distance."""
    if not atoms.pbc.any() and not atoms.cell.any():
        return True  # free space: apax runs it without a box
    if not atoms.pbc.all() or atoms.cell.rank < 3:
        return False
    widths = 1.0 / np.linalg.norm(atoms.cell.reciprocal(), axis=1)
    return bool(np.all(widths > 2 * r_max))


# --------------------------------------------------------------------------- JAX MD


def model_config(model_dir: Path) -> Any:
    """The model's apax config, pointed at ``model_dir`` wherever it was trained."""
    import yaml
    from apax.config import Config

    model_dir = Path(model_dir).resolve()
    raw = yaml.safe_load((model_dir / "config.yaml").read_text())
    raw["data"].update(directory=str(model_dir.parent), experiment=model_dir.name)
    return Config.model_validate(raw)
