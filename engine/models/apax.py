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

    from ilcampaign.engine.run import compilation

    compilation.listen()  # a task's compile time is reported apart from its work
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
    if cache_dir is not None:
        enable_compilation_cache(cache_dir)
    return _calculator_class()(Path(model_dir), dr_threshold=dr_threshold)


#: jitted steps (and jax_md neighbour functions) per model architecture and box kind, in this process
_STEPS: dict[tuple, tuple[Any, Any]] = {}


def _calculator_class() -> type:
    """apax's ``ASECalculator`` whose compiled step takes the parameters and atomic numbers as
    arguments. apax's own bakes them (and the box) into the compiled code, so every new model, or
    structure, traced and compiled again (~10 s on a CPU); this one reuses one compiled step per
    architecture in a process and, through JAX's persistent cache, across processes. Results
    are apax's (``tests/test_apax_model.py``)."""
    import jax.numpy as jnp
    from apax.md.ase_calc import ASECalculator, neighbor_calculable_with_jax
    from apax.utils.jax_md_reduced import space
    from ase.calculators.calculator import all_changes

    class SharedStepCalculator(ASECalculator):
        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
            if "numbers" in system_changes:
                self.step = None  # set up afresh: apax would then allocate the list again, without the box
            super().calculate(atoms, list(properties), system_changes)

        def initialize(self, atoms: Atoms) -> None:
            """apax's set-up, with the shared step: which neighbour list, the list itself."""
            box = jnp.asarray(atoms.cell.array, dtype=jnp.float64)
            self.r_max = self.model_config.model.basis.r_max
            self.neigbor_from_jax = neighbor_calculable_with_jax(box, self.r_max)
            periodic = bool(np.any(atoms.cell.array > 1e-6))
            step, self.neighbor_fn = _shared_step(self.model_config, self.n_models, "stress" in self.implemented_properties,
                                                  periodic, self.neigbor_from_jax, self.dr_threshold)
            numbers = jnp.asarray(atoms.numbers)
            self.shared_step = step
            self.step = lambda *args: step(self.params, numbers, *args)
            if self.neigbor_from_jax:
                positions = jnp.asarray(atoms.positions, dtype=jnp.float64)
                if periodic:
                    cell = atoms.cell.array.T
                    self.neighbors = self.neighbor_fn.allocate(space.transform(jnp.linalg.inv(cell), positions), box=cell)
                else:
                    self.neighbors = self.neighbor_fn.allocate(positions)
            else:
                from vesin import NeighborList

                pairs = NeighborList(cutoff=self.r_max, full_list=True).compute(
                    points=atoms.positions, box=atoms.cell.array, periodic=bool(np.any(atoms.pbc)), quantities="i")[0]
                self.padded_length = int(len(pairs) * self.padding_factor)

    return SharedStepCalculator


def _shared_step(config: Any, n_models: int, stress: bool, periodic: bool, from_jax: bool,
                 dr_threshold: float) -> tuple[Any, Any]:
    """apax's step function (``apax.md.ase_calc.get_step_fn``) with the parameters and atomic numbers
    as its first arguments, and its jax_md neighbour functions, built on the unit cube (every call
    passes the box); one per architecture and box kind in a process."""
    key = (config.model.model_dump_json(), n_models, stress, periodic, from_jax, dr_threshold)
    if key not in _STEPS:
        import jax
        import jax.numpy as jnp
        from apax.md.ase_calc import make_ensemble
        from apax.md.function_transformations import ProcessStress
        from apax.utils.jax_md_reduced import partition, space

        box = np.eye(3) if periodic else np.zeros((3, 3))
        displacement = neighbor_fn = None
        if from_jax:
            displacement = space.periodic_general(box, fractional_coordinates=True)[0] if periodic else space.free()[0]
            neighbor_fn = partition.neighbor_list(displacement, box, config.model.basis.r_max, dr_threshold,
                                                  fractional_coordinates=True, disable_cell_list=True,
                                                  format=partition.Sparse)
        builder = config.model.get_builder()(config.model.model_dump(), n_species=119)  # as apax's calculator
        apply = builder.build_energy_derivative_model(apply_mask=True, init_box=box,
                                                      inference_disp_fn=displacement).apply
        if n_models > 1:
            apply = jax.vmap(apply, in_axes=(0, None, None, None, None, None))

        def model(params, Z, positions, idx, box, offsets):
            def single(*args):
                return apply(params, *args)

            evaluate = make_ensemble(single) if n_models > 1 else single
            if stress:
                evaluate = ProcessStress().apply(evaluate)
            return evaluate(positions, Z, idx, box, offsets)

        if from_jax:
            @jax.jit
            def step(params, Z, positions, neighbor, box):
                if periodic:
                    box = box.T
                    positions = space.transform(jnp.linalg.inv(box), positions)
                    neighbor = neighbor.update(positions, box=box)
                else:
                    neighbor = neighbor.update(positions)
                offsets = jnp.full([neighbor.idx.shape[1], 3], 0)
                return model(params, Z, positions, neighbor.idx, box, offsets), neighbor
        else:
            @jax.jit
            def step(params, Z, positions, neighbor, box, offsets):
                return model(params, Z, positions, neighbor, box, offsets)

        _STEPS[key] = step, neighbor_fn
    return _STEPS[key]


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
