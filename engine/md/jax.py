"""Chunked, resumable NVT and NPT molecular dynamics of an apax model with jax_md's Nose-Hoover chains.

A long run is cut into chunks (``run_chunk``) that may run in separate processes: each chunk
starts from ``state``, a dict of float64 arrays with the complete integrator state (and the
neighbour-list capacity), and builds its neighbour list afresh, so a chunk's result is a pure
function of (state, inputs) and a resumed run is bit-identical to an uninterrupted one that went
through the same chunk boundaries. Compiled functions are cached per process (and, if asked, on
disk); results never depend on that cache. Conventions are those of ilcampaign.engine.md.ase (ASE MD), so the two engines are
interchangeable: same start momenta, thermostat target ``temperatures[s]`` for step s -> s+1
(a frame reports the target of the step that led to it), frames every ``interval`` steps,
eqn 8 uncertainty stop at frame steps, blow-up and temperature guards after every step.

A hybrid model (``JaxMDParameters.d3``) adds ilcampaign.engine.dispersion.jax_term's D3(BJ) term to the MLP energy inside
the same loop, with its own half list: the loop checks the skin criterion after every step and stops
the block where the list goes stale; the host rebuilds it there (with more room if it overflows) and
the run goes on. D3 is added once, outside the ensemble mean; the uncertainty is the MLP's, as in
the ASE hybrid.

NPT (``JaxMDParameters.pressure`` set) is jax_md's isotropic Martyna-Tobias-Klein integrator: a Nose-Hoover
chain on the particles (``thermostat_time``) and one on the box (``barostat_time``), the whole cell
scaled by one factor, the pressure from the volume derivative of the energy (MLP and D3 alike,
through jax_md's ``perturbation``), run through ilcampaign.engine.md.jax_npt's copy, which takes one gradient
per step where jax_md's takes three. It is not ASE's NPT (ilcampaign.engine.md.ase: Melchionna, box lengths
scaled separately), so the md step runs it only where a spec asks for ``engine: jax``. The D3 list's
image shifts are those of the box shrunk by NPT_SHRINK, the list is rebuilt on strain (see
ilcampaign.engine.dispersion.neighbours), and a box that shrinks further within a chunk stops the block, which is
rerun with the shifts it needs. jax_md's MLP list is rebuilt on displacement only, as apax's NPT does:
it misses no pair as long as the cell shrinks by less than skin / (r_max + skin) between rebuilds.

With ``JaxMDParameters.mts_interval`` k > 1 (the spec's ``d3.mts_interval``) the hybrid integrates
D3 by r-RESPA multiple time stepping (ilcampaign.engine.md.jax_mts): the step above with the MLP plus
D3's short range (ilcampaign.engine.dispersion.jax_term.near_energy on jax_md's MLP list, switched
off at the model's cutoff), and the rest of D3 (NPT: with its box force) as an impulse of k dt
every k steps; ``mts_split`` False puts the whole D3 term in the impulses. The D3 list is then
needed, and checked, only where a cycle ends: a stale one stops the block there with the closing
kick due, which the host applies once it has rebuilt the list. k = 1 is the integrator above,
unchanged.

Positions are jax_md's fractional coordinates, not wrapped into the box (``wrapped=False``), so
frames carry continuous (unwrapped) Cartesian trajectories, as ASE's integrators give them.
jax, apax and jax_md are imported inside functions: this module is imported by MD steps only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ilcampaign.engine.models.apax import std_factor, enable_compilation_cache, jax_md_valid
from ilcampaign.engine.md.common import blow_up, density, g_cm3, snapshot

if TYPE_CHECKING:
    from ase import Atoms

    from ilcampaign.engine.dispersion.jax_term import D3Term

#: neighbour-list capacity over the pairs found at allocation (jax_md's default)
CAPACITY_MULTIPLIER = 1.25
#: capacities are rounded up to one of this many sizes per doubling (at most 1/8 more pairs; None:
#: not rounded). The capacity decides the padding, and with it the last bits of sums over pairs
CAPACITY_STEPS: int | None = 8
#: a list of at most this many ordered pairs holds all of them: a small box then compiles its loop
#: once, whatever its density (its MD, and every other MD of its atom count, reuses the code)
ALL_PAIRS = 4096
#: after an overflow the list is reallocated with at least this multiple of its capacity and the block rerun
CAPACITY_GROWTH = 1.5
#: test hook: the capacity of the list each chunk starts with (None: the state's where the pairs fit,
#: else CAPACITY_MULTIPLIER x the pairs found); a tiny one forces the overflow path
FIRST_CAPACITY: int | None = None
#: test hook: the same for the D3 list of a hybrid model
FIRST_D3_CAPACITY: int | None = None
#: compiled simulators kept per process (one per model architecture, atom count and settings)
MAX_SIMULATORS = 16
#: NPT with D3: the D3 list searches the image shifts of the chunk's start box scaled by this factor,
#: so the box may shrink by 10 % (linear) within a chunk before the shifts are computed again
NPT_SHRINK = 0.9


@dataclass(frozen=True)
class JaxMDParameters:
    """Integrator settings: timestep and Nose-Hoover chain damping time (fs), frame ``interval``
    (steps), eqn 8 stop ``threshold`` (eV/Angstrom; None: never), neighbour-list ``skin`` (A) and
    the temperature guard (ilcampaign.campaign.spec.TemperatureGuard's fields); ``d3``: the D3 term of a hybrid
    model (None: the MLP alone); ``pressure`` (eV/Angstrom^3; None: NVT) and the barostat chain's
    damping time ``barostat_time`` (fs) for NPT; ``mts_interval``: integrate D3 every that many
    steps (r-RESPA, ilcampaign.engine.md.jax_mts; 1: every step, exactly), its short range within
    the model's cutoff every step unless ``mts_split`` is False. Frames are kept at cycle ends, so
    ``interval`` must be a multiple of ``mts_interval``."""

    timestep: float
    thermostat_time: float
    interval: int
    threshold: float | None
    skin: float = 0.5
    blow_up_ratio: float = 5.0
    hot_ratio: float = 2.0
    hot_steps: int = 20
    d3: D3Term | None = None
    pressure: float | None = None
    barostat_time: float = 75.0
    mts_interval: int = 1
    mts_split: bool = True

    def __post_init__(self):
        if self.pressure is not None and self.d3 is not None and self.d3.tail_correction:
            raise ValueError("NPT with the D3 tail correction needs the tail's pressure term: run it through ASE")
        if self.mts_interval < 1 or self.mts_interval > 1 and self.d3 is None:
            raise ValueError(f"mts_interval {self.mts_interval}: multiple time stepping splits off a D3 term, "
                             "so it needs one (and an interval of at least 1)")
        if self.interval % self.mts_interval:
            raise ValueError(f"frames are kept at the ends of D3 cycles: interval {self.interval} is not a multiple "
                             f"of mts_interval {self.mts_interval}")


@dataclass
class JaxMDChunk:
    """What a chunk gives back.

    ``frames``: copies of the start (charge, per-atom arrays) at the steps s > 0 with s % interval
    == 0, up to the chunk's end or the stop; a stop on uncertainty keeps its frame, a blow-up does not.
    ``rows``: per frame (step, target temperature of the step that led to it K, temperature K,
    potential energy eV, eqn 8 uncertainty eV/A or NaN for a single model). ``state``: the
    integrator at the chunk's end (or at the stop), for the next chunk. ``stopped_at`` and
    ``stop_reason``: the step where, and why, the run ended early (None: it goes on).
    """

    frames: list[Atoms]
    rows: np.ndarray
    state: dict[str, np.ndarray]
    stopped_at: int | None
    stop_reason: str | None


def run_chunk(model_dir: Path, start: Atoms, temperatures: np.ndarray, settings: JaxMDParameters, *, seed: int,
              first: int, last: int, state: dict | None, cache_dir: Path | None = None) -> JaxMDChunk:
    """Steps ``first`` -> ``last`` of the NVT (NPT) run of ``start`` with the apax model in ``model_dir``,
    from ``state`` (the previous chunk's; None at step 0: Maxwell-Boltzmann momenta at
    ``temperatures[0]`` from ``seed``, as ilcampaign.engine.md.ase draws them).

    ``temperatures[s]`` (K) is the thermostat target of step s -> s+1. ``cache_dir``: enable JAX's
    persistent compilation cache there first. ValueError for a box that is not periodic or too
    small for jax_md's minimum image, a threshold on a single model, targets at or below 0 K, or a
    state that does not start at ``first`` or comes from a run with another ``mts_interval``.
    """
    from apax.train.checkpoints import restore_parameters
    from ase import units

    if cache_dir is not None:
        enable_compilation_cache(cache_dir)
    temperatures = np.asarray(temperatures, dtype=float)
    if not 0 <= first < last < len(temperatures):
        raise ValueError(f"steps {first} -> {last} are not within the {len(temperatures) - 1} steps of the run")
    if temperatures.min() <= 0:
        raise ValueError(f"the target temperatures reach {temperatures.min():.4g} K")
    if state is None and first != 0:
        raise ValueError(f"a chunk from step {first} needs the state of the chunk before")
    if state is not None and int(state["step"]) != first:
        raise ValueError(f"the state is at step {int(state['step'])}, not at the chunk start {first}")
    if state is not None and int(state.get("mts_interval", 1)) != settings.mts_interval:
        raise ValueError(f"the state is of a run with D3 every {int(state.get('mts_interval', 1))} steps, "
                         f"not every {settings.mts_interval}")
    config, params = restore_parameters(Path(model_dir).resolve())
    r_max = config.model.basis.r_max
    if not start.pbc.all():
        raise ValueError("JAX MD runs periodic boxes only: the start is not periodic in every direction")
    if not jax_md_valid(start, r_max):
        raise ValueError(f"the box is too small for JAX MD: a perpendicular width is below 2 r_max = {2 * r_max:g} A")
    ensemble = config.model.ensemble is not None and config.model.ensemble.n_members > 1
    if settings.threshold is not None and not ensemble:
        raise ValueError("a single model has no force uncertainty: set the uncertainty threshold to None")

    sim = _simulator(config, len(start), settings)
    Z = np.asarray(start.numbers, dtype=np.int32)
    # columns are lattice vectors (jax_md's convention); a resumed NPT run goes on in its own box
    box = start.cell.array.T if state is None else sim.box_of(state, start.cell.array.T)
    d3 = sim.d3_inputs(Z, box.T)
    if state is None:
        state = sim.initial_state(params, Z, box, d3, start, temperatures[0], seed)
    neighbors = sim.allocate(state["position"], box, minimum=int(state["capacity"]))
    if FIRST_CAPACITY is not None:
        neighbors = sim.resize(neighbors, FIRST_CAPACITY)
    pairs = sim.fitted_d3(sim.allocate_d3(state["position"], box, d3, int(state.get("d3_capacity", 0)),
                                          FIRST_D3_CAPACITY), d3)
    nvt = sim.restore(params, Z, box, d3, state, (neighbors, pairs))
    kT = sim.kB * temperatures
    factor = std_factor(config)

    frames, rows, stopped_at, stop_reason = [], [], None, None
    step, interval, hot = first, settings.interval, int(state.get("hot_steps", 0))
    while step < last:
        end = min(last, (step // interval + 1) * interval)
        targets = np.concatenate([kT[step:end], np.full(interval + step - end, kT[end - 1])])
        done, new, (new_neighbors, _), stable, new_hot, stale = sim.block(
            params, Z, box, d3, nvt, (neighbors, pairs), targets, end - step, hot, step)
        if new_neighbors.did_buffer_overflow:  # rerun the block with the list it was meant to have
            neighbors = sim.allocate(neighbors.reference_position, sim.box_of(nvt, box),
                                     minimum=int(CAPACITY_GROWTH * neighbors.max_occupancy) + 1)
            continue
        if sim.outgrown(new, box):  # NPT: the box shrank past the D3 shifts; new shifts from this block's start
            if np.array_equal(box, sim.box_of(nvt, box)):  # they were made here: the box collapses within a block
                stopped_at = step
                stop_reason = (f"exploded at step {step}: the box shrank by more than {1 - NPT_SHRINK:.0%} "
                               f"within {interval} steps")
                break
            box = sim.box_of(nvt, box)
            d3 = sim.d3_inputs(Z, box.T)
            pairs = sim.allocate_d3(nvt.position, box, d3, int(pairs.i.shape[0]))
            continue
        nvt, neighbors, step, hot = new, new_neighbors, step + int(done), int(new_hot)
        current = sim.box_of(nvt, box)
        if stale:  # the D3 list where the block stopped, with the same room (more only if it overflows)
            pairs = sim.fitted_d3(sim.allocate_d3(nvt.position, current, d3, capacity=int(pairs.i.shape[0])), d3)
            if sim.mts:  # the block stopped at a cycle end whose D3 impulse waited for this list
                nvt = sim.settle(box, d3, nvt, (neighbors, pairs))
        if stable and step % interval:
            continue
        energy, sigma = (float(x) for x in sim.evaluate(params, Z, current, d3, nvt.position, (neighbors, pairs)))
        sigma /= factor  # eqn 8 (NaN for a single model)
        target = temperatures[step - 1]  # of the step that led here
        frame = _frame(start, nvt, current.T, step, settings.timestep, target, sigma if ensemble else None)
        if sim.npt:
            pressure = float(sim.pressure(params, Z, current, d3, nvt, (neighbors, pairs)))
            frame.info["pressure_bar"] = pressure / units.bar
        temperature = frame.info["temperature_K"]
        what = blow_up(energy, np.asarray(nvt.force), temperature, target, sigma if ensemble else None,
                        settings.blow_up_ratio)
        if not what and hot >= settings.hot_steps:
            what = (f"temperature above {settings.hot_ratio:g} x target for {hot} steps ({temperature:.0f} K, "
                    f"target {target:.0f} K)")
        if what:
            stopped_at, stop_reason = step, f"exploded at step {step}: {what}"
            break
        if step % interval:
            continue  # the in-block check fired at a rounding edge of the temperature limit only
        frames.append(frame)
        rows.append((step, target, temperature, energy, sigma))
        if settings.threshold is not None and sigma > settings.threshold:
            stopped_at, stop_reason = step, f"uncertainty {sigma:.3g} eV/A > {settings.threshold:.3g}"
            break
    return JaxMDChunk(frames, np.array(rows, dtype=float).reshape(-1, 5),
                      _arrays(nvt, step, (neighbors, pairs), hot, settings.mts_interval), stopped_at, stop_reason)


def _frame(start: Atoms, nvt: Any, cell: np.ndarray, step: int, timestep: float, target: float,
           sigma: float | None) -> Atoms:
    """The configuration at ``step``: a copy of ``start`` in ``cell`` (rows are lattice vectors) with the
    state's Cartesian (unwrapped) positions and momenta, and the info ilcampaign.engine.md.ase gives its frames
    (no uncertainty: None)."""
    frame = snapshot(start, label=False)
    frame.set_cell(cell, scale_atoms=False)
    frame.set_positions(np.asarray(nvt.position) @ cell, apply_constraint=False)
    frame.set_momenta(np.asarray(nvt.momentum), apply_constraint=False)
    frame.info.update(source="md", step=step, time_fs=step * timestep, target_temperature_K=float(target),
                      temperature_K=float(frame.get_temperature()), density_g_cm3=float(g_cm3(density(frame))))
    if sigma is not None:
        frame.info["uncertainty_eV_A"] = sigma
    return frame


def _leaf_names(tree: Any, prefix: str = "") -> list[str]:
    """Field paths of a jax_md state's leaves (``chain.momentum``), in tree-flatten order."""
    if not dataclasses.is_dataclass(tree):
        return [prefix]
    return [name for field in dataclasses.fields(tree) if not field.metadata.get("static", False)
            for name in _leaf_names(getattr(tree, field.name), f"{prefix}.{field.name}" if prefix else field.name)]


def _arrays(nvt: Any, step: int, lists: tuple, hot_steps: int = 0, mts_interval: int = 1) -> dict[str, np.ndarray]:
    """The integrator state as named float64 arrays, its global ``step``, the neighbour lists'
    capacities (the next chunk keeps them unless it needs more, so ``block`` is not recompiled),
    the steps in a row above the temperature guard's ratio and, with multiple time stepping, its
    ``mts_interval`` (the step is the phase within its cycles)."""
    import jax

    leaves = jax.tree_util.tree_leaves(nvt)
    names = _leaf_names(nvt)
    if len(names) != len(leaves) or not all(np.issubdtype(leaf.dtype, np.floating) for leaf in leaves):
        raise TypeError(f"unexpected jax_md state layout: {names}")
    arrays = {name: np.array(leaf, dtype=np.float64) for name, leaf in zip(names, leaves)}
    neighbors, pairs = lists
    capacities = {} if pairs is None else {"d3_capacity": np.array(pairs.i.shape[0])}
    cycle = {} if mts_interval == 1 else {"mts_interval": np.array(mts_interval)}
    return {"step": np.array(step), "capacity": np.array(neighbors.max_occupancy), "hot_steps": np.array(hot_steps),
            **capacities, **cycle, **arrays}


_SIMULATORS: dict[tuple, _Simulator] = {}


def _simulator(config: Any, n_atoms: int, settings: JaxMDParameters) -> _Simulator:
    """The simulator for this model architecture, atom count and settings, built once per process."""
    key = (config.model.model_dump_json(), n_atoms,
           dataclasses.replace(settings, interval=settings.mts_interval, threshold=None))
    if key not in _SIMULATORS:
        if len(_SIMULATORS) >= MAX_SIMULATORS:
            del _SIMULATORS[next(iter(_SIMULATORS))]
        _SIMULATORS[key] = _Simulator(config, n_atoms, settings)
    return _SIMULATORS[key]


class _Simulator:
    """apax's energy model (plus ilcampaign.engine.dispersion.jax_term's D3 for a hybrid), jax_md's Nose-Hoover chain and
    neighbour list, with the jitted functions a chunk calls. Parameters, atomic numbers, box and D3
    inputs are arguments, not constants: the compiled code (and its persistent cache entry) holds no
    weights and serves any box. jax_md's spaces are built on the unit cube and every call passes the
    box, so a forgotten one would show as wrong forces. A new list capacity compiles new versions
    (jax_md makes it a static shape). The jitted functions take ``lists`` = (jax_md's list, the D3
    half list or None). With multiple time stepping (``mts``) the integrator's energy is the MLP's
    plus D3's short range (none without the split) and ilcampaign.engine.md.jax_mts adds the rest of
    D3 as impulses."""

    def __init__(self, config: Any, n_atoms: int, settings: JaxMDParameters):
        import jax
        import jax.numpy as jnp
        from apax.md.ase_calc import make_ensemble, maybe_vmap
        from apax.md.simulate import create_energy_fn
        from apax.train.checkpoints import canonicalize_energy_model_parameters
        from apax.utils.jax_md_reduced import partition, quantity, simulate, space
        from ase import units

        self.kB, self.n_atoms, self.term = units.kB, n_atoms, settings.d3
        unit = np.eye(3)
        displacement, shift = space.periodic_general(unit, fractional_coordinates=True, wrapped=False)
        self.neighbor_fn = partition.neighbor_list(
            displacement, unit, config.model.basis.r_max, settings.skin, capacity_multiplier=1.0,
            fractional_coordinates=True, format=partition.Sparse, disable_cell_list=True,
        )  # allocate() pads its lists to their capacity
        ensemble = config.model.ensemble
        n_models = ensemble.n_members if ensemble is not None and ensemble.n_members > 1 else 1
        shallow = n_models > 1 and ensemble.kind == "shallow"
        builder = config.model.get_builder()(config.model.model_dump())
        energy_model = builder.build_energy_model(apply_mask=True, init_box=unit, inference_disp_fn=displacement)
        # the frame evaluation needs energy and member forces only: apax's stress would be computed for nothing
        derivative_builder = config.model.get_builder()({**config.model.model_dump(), "calc_stress": False})
        derivative_model = derivative_builder.build_energy_derivative_model(
            apply_mask=True, init_box=unit, inference_disp_fn=displacement)
        term, npt, k = settings.d3, settings.pressure is not None, settings.mts_interval
        dt = settings.timestep * units.fs
        self.npt, self.mts, self.mts_interval = npt, k > 1, k
        split = self.mts and settings.mts_split

        def dispersion(position, box, d3, pairs):
            """The D3 energy of fractional ``position`` (0 for the MLP alone); space.transform's custom
            derivative makes its gradient the Cartesian one, as jax_md's forces are."""
            if term is None:
                return 0.0
            from ilcampaign.engine.dispersion.jax_term import d3_energy

            return d3_energy(space.transform(box, position), box.T, d3, pairs, term)

        def near_dispersion(position, box, d3, neighbors):
            """Multiple time stepping's every-step share of D3 at fractional ``position``: its short range
            on jax_md's MLP list, switched off at r_max (0 without the split)."""
            if not split:
                return 0.0
            from ilcampaign.engine.dispersion.jax_term import near_energy

            i, j = neighbors.idx
            d = jax.vmap(lambda a, b: displacement(a, b, box=box))(position[j], position[i])
            return near_energy(d, i, j, i < n_atoms, d3, term, config.model.basis.r_max)

        def total_energy(params, Z, d3, with_d3=True):
            """The energy jax_md integrates: the (ensemble-mean) MLP plus D3 (``with_d3`` False: plus D3's
            short range only, multiple time stepping's fast part). ``perturbation`` (NPT's volume
            derivative) scales every distance, as a scaled box."""
            mlp = create_energy_fn(energy_model.apply, canonicalize_energy_model_parameters(params), Z,
                                   n_models, shallow)

            def energy(position, neighbor, box, perturbation=None, **kwargs):
                neighbors, pairs = neighbor
                scaled = box if perturbation is None else box * perturbation
                learned = mlp(position, neighbor=neighbors, box=box, perturbation=perturbation)
                return learned + (dispersion(position, scaled, d3, pairs) if with_d3
                                  else near_dispersion(position, scaled, d3, neighbors))

            return energy

        def nose_hoover(params, Z, d3, kT):
            """jax_md's (init, apply) for NVT, or NPT where the settings give a pressure."""
            energy = total_energy(params, Z, d3, with_d3=not self.mts)
            tau = settings.thermostat_time * units.fs
            if npt:  # jax_md's MTK integrator with one energy gradient per step instead of three
                from ilcampaign.engine.md.jax_npt import npt_nose_hoover

                return npt_nose_hoover(energy, shift, dt, settings.pressure, kT,
                                       barostat_kwargs={"tau": settings.barostat_time * units.fs},
                                       thermostat_kwargs={"tau": tau})
            return simulate.nvt_nose_hoover(energy, shift, dt, kT, tau=tau)

        def slow_gradients(position, box, d3, lists):
            """Multiple time stepping's slow part at fractional ``position`` in ``box``: the force of D3
            less its short range and, for NPT, that energy's dU/d(eps) (its share of the MTK box force)."""
            neighbors, pairs = lists

            def slow(r, box, perturbation=1.0):
                return dispersion(r, box * perturbation, d3, pairs) - near_dispersion(r, box * perturbation, d3,
                                                                                       neighbors)

            if npt:
                from ilcampaign.engine.md.jax_npt import gradients

                return gradients(slow, position, box)
            return (-jax.grad(slow)(position, box),)

        def current_box(state, box):
            """The box at ``state`` (NPT: jax_md's, from the box position; NVT: ``box``)."""
            return simulate.npt_box(state) if npt else box

        def stale(pairs, position, box):
            """Whether the D3 list may miss a pair at ``position`` (False for the MLP alone). The block
            stops there and the host rebuilds the list: a rebuild inside the loop (``lax.cond``) cost
            28 ms per step at 20 A, rebuild or not (benchmarks/d3_loop_breakdown.py)."""
            from ilcampaign.engine.dispersion.neighbours import needs_rebuild

            if pairs is None:
                return jnp.array(False)
            return needs_rebuild(pairs, space.raw_transform(box, position), box.T, term.cutoff, term.skin)

        @jax.jit
        def init(params, Z, box, d3, position, momentum, mass, lists, kT):
            """jax_md's initial state, with ``momentum`` for its own draw and the chain's kinetic energy to match."""
            init_fn, _ = nose_hoover(params, Z, d3, kT)
            if npt:
                state = init_fn(jax.random.PRNGKey(0), position, box, mass=mass, neighbor=lists).set(momentum=momentum)
                state = state.set(thermostat=state.thermostat.set(kinetic_energy=simulate.kinetic_energy(state)))
            else:
                state = init_fn(jax.random.PRNGKey(0), position, mass=mass, neighbor=lists, box=box).set(
                    momentum=momentum)
                state = state.set(chain=state.chain.set(kinetic_energy=simulate.kinetic_energy(state)))
            if self.mts:
                from ilcampaign.engine.md.jax_mts import with_slow

                state = with_slow(state, slow_gradients(position, box, d3, lists))
            return state

        @jax.jit
        def block(params, Z, box, d3, nvt, lists, kT, n, hot, first):
            """Up to ``n`` steps from global step ``first``, step i at target ``kT[i]``; stops early after a
            step that gives non-finite forces, an instantaneous temperature above blow_up_ratio x its
            target, the ``hot_steps``-th step in a row above hot_ratio x its target (``hot``: the count
            so far) or (NPT) a box shrunk past NPT_SHRINK of ``box``, the box the D3 shifts were made
            for; and after a step that leaves the D3 list stale (the last output: the host rebuilds it
            and goes on). With multiple time stepping only cycle ends use and check the list; where it
            is stale there, the cycle's closing kick is left to ``settle``."""
            _, apply_fn = nose_hoover(params, Z, d3, kT[0])

            def step(carry):
                i, nvt, (neighbor, pairs), _, hot, _ = carry
                fixed = {} if npt else {"box": box}  # NPT integrates its own box
                if self.mts:
                    from ilcampaign.engine.md import jax_mts

                    nvt, due = jax_mts.step(
                        lambda state: apply_fn(state, neighbor=(neighbor, pairs), kT=kT[i], **fixed),
                        lambda state: slow_gradients(state.position, current_box(state, box), d3, (neighbor, pairs)),
                        k, dt, nvt, first + i, lambda state: ~stale(pairs, state.position, current_box(state, box)))
                else:
                    nvt = apply_fn(nvt, neighbor=(neighbor, pairs), kT=kT[i], **fixed)
                now = current_box(nvt, box)
                neighbor = neighbor.update(nvt.position, box=now)
                kinetic_kT = 2 * simulate.kinetic_energy(nvt) / nvt.position.size
                hot = jnp.where(kinetic_kT > settings.hot_ratio * kT[i], hot + 1, 0)
                stable = (jnp.all(jnp.isfinite(nvt.force)) & (kinetic_kT <= settings.blow_up_ratio * kT[i])
                          & (hot < settings.hot_steps))
                if self.mts:
                    stable = stable & jnp.all(jnp.isfinite(nvt.slow_force))
                if pairs is not None and npt:
                    stable = stable & ~shrunk(now, box)
                return i + 1, nvt, (neighbor, pairs), stable, hot, due if self.mts else stale(pairs, nvt.position, now)

            return jax.lax.while_loop(lambda carry: (carry[0] < n) & carry[3] & ~carry[5], step,
                                      (jnp.zeros((), int), nvt, lists, jnp.array(True), jnp.asarray(hot),
                                       jnp.array(False)))

        @jax.jit
        def evaluate(params, Z, box, d3, position, lists):
            """Ensemble-mean energy plus D3 and the largest apax ``forces_uncertainty`` (NaN for a single model)."""
            neighbor, pairs = lists
            model = (make_ensemble(maybe_vmap(derivative_model.apply, params)) if n_models > 1 and not shallow
                     else lambda *args: derivative_model.apply(params, *args))
            results = model(position, Z, neighbor, box, jnp.zeros((neighbor.idx.shape[1], 3)))
            energy = results["energy"] + dispersion(position, box, d3, pairs)
            return energy, jnp.max(results.get("forces_uncertainty", jnp.nan))

        @jax.jit
        def pressure(params, Z, box, d3, state, lists):
            """The instantaneous pressure (eV/A^3, kinetic part included) that the NPT barostat acts on."""
            return quantity.pressure(total_energy(params, Z, d3), state.position, box,
                                     simulate.kinetic_energy(state), neighbor=lists)

        @jax.jit
        def settle(box, d3, state, lists):
            from ilcampaign.engine.md.jax_mts import close

            return close(state, lambda s: slow_gradients(s.position, current_box(s, box), d3, lists), k * dt / 2,
                         jnp.array(True))

        self.init, self.block, self.evaluate, self.pressure, self._settle = init, block, evaluate, pressure, settle
        self._current_box = jax.jit(current_box)
        self._template = None

    def box_of(self, state: Any, box: np.ndarray) -> np.ndarray:
        """The box (columns are lattice vectors) of a jax_md state or of a chunk's state arrays: NPT's
        own, else ``box``."""
        if not self.npt:
            return box
        if isinstance(state, dict):  # exp(box_position) x the reference box, as jax_md's npt_box
            return np.exp(float(state["box_position"])) * np.asarray(state["reference_box"])
        return np.asarray(self._current_box(state, None), dtype=float)

    def settle(self, box: np.ndarray, d3: Any, state: Any, lists: tuple) -> Any:
        """Multiple time stepping: the closing kick of the cycle that ended at ``state``, which the block
        left due because the D3 list was stale there, with the lists (the D3 one rebuilt at ``state``)."""
        return self._settle(box, d3, state, lists)

    def outgrown(self, state: Any, box: np.ndarray) -> bool:
        """NPT with D3: whether the block stopped because the box shrank past the D3 shifts made for ``box``."""
        return self.npt and self.term is not None and bool(shrunk(self.box_of(state, box), box))

    def allocate(self, position: Any, box: np.ndarray, minimum: int = 0) -> Any:
        """jax_md's neighbour list at ``position`` with room for ``minimum`` pairs where they fit (a
        resumed chunk keeps its capacity, so nothing is recompiled), else for CAPACITY_MULTIPLIER x
        its pairs; at most all pairs (jax_md's limit), and all of them in a small box (ALL_PAIRS)."""
        neighbors = self.neighbor_fn.allocate(position, box=box)  # exactly its pairs
        most = self.n_atoms * (self.n_atoms - 1)
        capacity = _room(neighbors.max_occupancy, minimum)
        if most <= ALL_PAIRS and capacity > minimum:
            capacity = most
        return self.resize(neighbors, min(capacity, most))

    def resize(self, neighbors: Any, capacity: int) -> Any:
        """``neighbors`` with room for ``capacity`` pairs (padded with index n_atoms, as jax_md pads), and
        flagged overflowed, as jax_md flags it, if its pairs do not fit."""
        import jax.numpy as jnp
        from apax.utils.jax_md_reduced.partition import PartitionErrorCode

        pairs = int(jnp.sum(neighbors.idx[0] < self.n_atoms))  # jax_md packs them first
        kept = min(pairs, capacity)
        idx = jnp.pad(neighbors.idx[:, :kept], ((0, 0), (0, capacity - kept)), constant_values=self.n_atoms)
        error = neighbors.error.update(PartitionErrorCode.NEIGHBOR_LIST_OVERFLOW, pairs > capacity)
        return neighbors.set(idx=idx, max_occupancy=capacity, error=error)

    def d3_inputs(self, numbers: np.ndarray, cell: np.ndarray) -> Any:
        """ilcampaign.engine.dispersion.jax_term's inputs for the D3 term of atoms ``numbers`` in ``cell`` (rows are lattice
        vectors; None for the MLP alone); NPT: the image shifts of the cell shrunk by NPT_SHRINK."""
        if self.term is None:
            return None
        from ilcampaign.engine.dispersion.jax_term import d3_inputs

        return d3_inputs(self.term, numbers, np.asarray(cell) * (NPT_SHRINK if self.npt else 1.0))

    def allocate_d3(self, position: Any, box: np.ndarray, d3: Any, minimum: int = 0,
                    capacity: int | None = None) -> Any:
        """The D3 half list at fractional ``position`` (None for the MLP alone), with room for ``minimum``
        pairs where they fit, else for CAPACITY_MULTIPLIER x its pairs, or exactly ``capacity`` (which
        may overflow: ``fitted_d3`` then reallocates)."""
        if self.term is None:
            return None
        from ilcampaign.engine.dispersion.neighbours import build

        cartesian = np.asarray(position) @ box.T
        if capacity is None:
            capacity = _room(int(build(cartesian, box.T, d3.shifts, self.term.cutoff, self.term.skin, 1).count),
                             minimum)
        return build(cartesian, box.T, d3.shifts, self.term.cutoff, self.term.skin, capacity)

    def fitted_d3(self, pairs: Any, d3: Any) -> Any:
        """``pairs``, or where it found more pairs than it has room for, the same list built again with
        room for CAPACITY_GROWTH x them (never a truncated list)."""
        from ilcampaign.engine.dispersion.neighbours import build

        while pairs is not None and int(pairs.count) > pairs.i.shape[0]:
            capacity = int(CAPACITY_GROWTH * int(pairs.count)) + 1
            pairs = build(pairs.ref_positions, pairs.ref_cell, d3.shifts, self.term.cutoff, self.term.skin, capacity)
        return pairs

    def initial_state(self, params: Any, Z: np.ndarray, box: np.ndarray, d3: Any, start: Atoms, temperature: float,
                      seed: int) -> dict[str, np.ndarray]:
        """The state at step 0: ``start`` with Maxwell-Boltzmann momenta drawn as ilcampaign.engine.md.ase draws them."""
        from ase.md.velocitydistribution import Stationary, thermalize_momenta

        atoms = start.copy()
        thermalize_momenta(atoms, temperature, rng=np.random.default_rng(seed))
        Stationary(atoms)
        position = atoms.positions @ np.linalg.inv(atoms.cell.array)
        lists = (self.allocate(position, box), self.allocate_d3(position, box, d3))
        nvt = self.init(params, Z, box, d3, position, atoms.get_momenta(), atoms.get_masses(), lists,
                        self.kB * temperature)
        return _arrays(nvt, 0, lists, mts_interval=self.mts_interval)

    def restore(self, params: Any, Z: np.ndarray, box: np.ndarray, d3: Any, state: dict[str, np.ndarray],
                lists: tuple) -> Any:
        """The jax_md state from ``state``'s arrays, on the tree of ``init``'s output (so no field is missed)."""
        import jax
        import jax.numpy as jnp

        if self._template is None:  # shapes only: nothing is computed
            position = np.zeros((self.n_atoms, 3))
            self._template = jax.eval_shape(self.init, params, Z, box, d3, position, position, np.ones(self.n_atoms),
                                            lists, 1.0)
        leaves, tree = jax.tree_util.tree_flatten(self._template)
        names = _leaf_names(self._template)
        missing = sorted(set(names) - set(state))
        if missing:
            raise KeyError(f"the state lacks {', '.join(missing)}")
        for name, leaf in zip(names, leaves):
            if np.shape(state[name]) != leaf.shape:
                raise ValueError(f"state {name} has shape {np.shape(state[name])}, expected {leaf.shape}")
        return jax.tree_util.tree_unflatten(tree, [jnp.asarray(state[name], dtype=jnp.float64) for name in names])


def _room(found: int, minimum: int) -> int:
    """A list's capacity for ``found`` pairs: ``minimum`` (the capacity it had) while they fit, so that
    the compiled loop is reused, else CAPACITY_MULTIPLIER x them rounded up to one of CAPACITY_STEPS
    sizes per doubling, so that runs of similar boxes (another temperature, model or size's
    preparation) share their compiled code."""
    if int(found) <= minimum:
        return int(minimum)
    wanted = int(CAPACITY_MULTIPLIER * int(found)) + 1
    if CAPACITY_STEPS is None:
        return wanted
    step = max(2 ** (wanted.bit_length() - 1) // CAPACITY_STEPS, 1)
    return -(-wanted // step) * step


def shrunk(box, reference):
    """Whether isotropic NPT scaled ``box`` below NPT_SHRINK of ``reference`` (same shape, columns are
    lattice vectors): compares the first lattice vectors' lengths."""
    import jax.numpy as jnp

    return jnp.linalg.norm(box[:, 0]) < NPT_SHRINK * jnp.linalg.norm(reference[:, 0])
