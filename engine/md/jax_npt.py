"""jax_md's isotropic Martyna-Tobias-Klein NPT integrator with one energy gradient per step.

jax_md's ``npt_nose_hoover`` (apax's copy: ``apax.utils.jax_md_reduced.simulate``) differentiates the
energy three times per step: the box force dU/d(eps) at the step's start, the forces at the new
positions, and the box force there again. The first equals the previous step's last (same positions,
same box; only the momenta changed, and they enter the box force apart from U), and the last two are
one gradient of U(R, 1 + eps) with respect to R and eps. This copy takes that one gradient per step
and carries dU/d(eps) in its state (``strain_derivative``); everything else (chains, box mass,
propagators, the order of the half steps) is jax_md's, so its trajectory is jax_md's to rounding
(tests/test_jax_md.py compares them). ``energy_fn`` must take ``perturbation`` (a factor scaling the
box), as jax_md's ``quantity.pressure`` requires.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from apax.utils.jax_md_reduced import dataclasses, quantity, simulate, util


@dataclasses.dataclass
class NPTState:
    """jax_md's NPTNoseHooverState plus dU/d(eps) at the current positions and box."""

    position: jax.Array
    momentum: jax.Array
    force: jax.Array
    mass: jax.Array
    reference_box: jax.Array
    box_position: jax.Array
    box_momentum: jax.Array
    box_mass: jax.Array
    barostat: simulate.NoseHooverChain
    thermostat: simulate.NoseHooverChain
    strain_derivative: jax.Array


def gradients(energy_fn: Callable, position, box, **kwargs):
    """(forces, dU/d(eps)) of ``energy_fn`` at ``position`` in ``box``: one gradient of U(R, box (1 + eps))
    at eps = 0."""
    zero = jnp.zeros((), position.dtype)
    d_position, d_eps = jax.grad(lambda r, eps: energy_fn(r, box=box, perturbation=1 + eps, **kwargs),
                                 argnums=(0, 1))(position, zero)
    return -d_position, d_eps


def npt_nose_hoover(energy_fn: Callable, shift_fn: Callable, dt: float, pressure: float, kT: float,
                    barostat_kwargs: dict | None = None, thermostat_kwargs: dict | None = None):
    """(init_fn, apply_fn) as jax_md's ``simulate.npt_nose_hoover`` with the same arguments."""
    dt_2 = dt / 2
    barostat_kwargs = simulate.default_nhc_kwargs(1000 * dt, barostat_kwargs)
    barostat = simulate.nose_hoover_chain(dt, **barostat_kwargs)
    thermostat_kwargs = simulate.default_nhc_kwargs(100 * dt, thermostat_kwargs)
    thermostat = simulate.nose_hoover_chain(dt, **thermostat_kwargs)

    def box_force(alpha, volume, momentum, mass, strain_derivative, target):
        """jax_md's ``box_force`` with dU/d(eps) given."""
        dim = momentum.shape[1]
        return alpha * util.high_precision_sum(momentum**2 / mass) - strain_derivative - target * volume * dim

    def init_fn(key, position, box, mass=1.0, **kwargs):
        n, dim = position.shape
        _kT = kwargs.pop("kT", kT)
        box = jnp.eye(dim) * box if jnp.isscalar(box) or jnp.ndim(box) == 0 else box
        zero, one = jnp.zeros((), position.dtype), jnp.ones((), position.dtype)
        box_mass = dim * (n + 1) * kT * barostat_kwargs["tau"] ** 2 * one
        force, strain_derivative = gradients(energy_fn, position, box, **kwargs)
        state = NPTState(position, None, force, mass, box, zero, zero, box_mass,
                         barostat.initialize(1, quantity.kinetic_energy(momentum=zero, mass=box_mass), _kT), None,
                         strain_derivative)
        state = simulate.initialize_momenta(simulate.canonicalize_mass(state), key, _kT)
        return state.set(thermostat=thermostat.initialize(quantity.count_dof(position),
                                                          simulate.kinetic_energy(state), _kT))

    def exp_iL1(box, position, velocity, box_velocity, **kwargs):
        x = box_velocity * dt
        return shift_fn(position, position * (jnp.exp(x) - 1) + dt * velocity * jnp.exp(x / 2) * _sinhx_x(x / 2),
                        box=box, **kwargs)

    def exp_iL2(alpha, momentum, force, box_velocity):
        x = alpha * box_velocity * dt_2
        return momentum * jnp.exp(-x) + dt_2 * force * _sinhx_x(x / 2) * jnp.exp(-x / 2)

    def inner_step(state, **kwargs):
        target = kwargs.pop("pressure", pressure)
        momentum, mass, box_momentum, box_mass = state.momentum, state.mass, state.box_momentum, state.box_mass
        alpha = 1 + 1 / state.position.shape[0]
        volume, box_fn = simulate._npt_box_info(state)
        box_momentum = box_momentum + dt_2 * box_force(alpha, volume, momentum, mass, state.strain_derivative, target)
        momentum = exp_iL2(alpha, momentum, state.force, box_momentum / box_mass)
        state = state.set(box_position=state.box_position + box_momentum / box_mass * dt)
        volume, box_fn = simulate._npt_box_info(state)
        box = box_fn(volume)
        position = exp_iL1(box, state.position, momentum / mass, box_momentum / box_mass)
        force, strain_derivative = gradients(energy_fn, position, box, **kwargs)
        momentum = exp_iL2(alpha, momentum, force, box_momentum / box_mass)
        box_momentum = box_momentum + dt_2 * box_force(alpha, volume, momentum, mass, strain_derivative, target)
        return state.set(position=position, momentum=momentum, force=force, box_momentum=box_momentum,
                         strain_derivative=strain_derivative)

    def apply_fn(state, **kwargs):
        _kT = kwargs.pop("kT", kT)
        barostat_chain = barostat.update_mass(state.barostat, _kT)
        thermostat_chain = thermostat.update_mass(state.thermostat, _kT)
        n, dim = state.position.shape
        state = state.set(box_mass=jnp.array(dim * (n + 1) * _kT * state.barostat.tau**2, state.position.dtype))
        box_momentum, barostat_chain = barostat.half_step(state.box_momentum, barostat_chain, _kT)
        momentum, thermostat_chain = thermostat.half_step(state.momentum, thermostat_chain, _kT)
        state = inner_step(state.set(momentum=momentum, box_momentum=box_momentum), **kwargs)
        thermostat_chain = thermostat_chain.set(
            kinetic_energy=quantity.kinetic_energy(momentum=state.momentum, mass=state.mass))
        barostat_chain = barostat_chain.set(
            kinetic_energy=quantity.kinetic_energy(momentum=state.box_momentum, mass=state.box_mass))
        momentum, thermostat_chain = thermostat.half_step(state.momentum, thermostat_chain, _kT)
        box_momentum, barostat_chain = barostat.half_step(state.box_momentum, barostat_chain, _kT)
        return state.set(thermostat=thermostat_chain, barostat=barostat_chain, momentum=momentum,
                         box_momentum=box_momentum)

    return init_fn, apply_fn


def _sinhx_x(x):
    """jax_md's Taylor series of sinh(x) / x near 0."""
    return 1 + x**2 / 6 + x**4 / 120 + x**6 / 5040 + x**8 / 362_880 + x**10 / 39_916_800
