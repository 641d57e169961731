"""r-RESPA (impulse) multiple time stepping for ilcampaign.engine.md.jax: MLP forces every step, the
D3 term every ``k`` steps as an impulse of k dt.

The hybrid's Liouvillian is split into iL_slow, the D3 term's forces, and iL_fast, everything else
(MLP forces, the Nose-Hoover chains and, for NPT, the box). One cycle of k steps of dt is

    exp(iL_slow k dt / 2) [exp(iL_fast dt)]^k exp(iL_slow k dt / 2),

exp(iL_fast dt) being the step ilcampaign.engine.md.jax takes for the MLP alone (NVT: jax_md's Nose-Hoover
chain around velocity Verlet; NPT: ilcampaign.engine.md.jax_npt's MTK step), so the thermostats
act inside the cycle ("XI-RESPA", Tuckerman, Berne and Martyna, J. Chem. Phys. 97, 1990 (1992)).
exp(iL_slow h) moves momenta only: the particles' by h F_D3 and, in NPT, the box momentum by
-h dU_D3/d(eps), the D3 part of the box force (the MTK box force is a sum over the energy's
terms), so the barostat sees D3's virial as impulses at the same instants as the particles see
its forces. The tail correction, a function of the volume alone, adds no force (NPT with it
is refused upstream).

The state carries the D3 force (and dU_D3/d(eps)) of the last cycle end, where the closing kick
used it, for the next cycle's opening kick, so a cycle costs one D3 gradient. Steps are
numbered from the run's start, so a step s opens a cycle where s % k == 0 and closes one where
(s + 1) % k == 0: the global step, which chunks carry, is the phase. At a cycle end the momenta
are synchronised (the run's frames are taken there); within a cycle they have had the opening
kick only. The chains' kinetic energies follow each kick (jax_md's chain half step uses the
stored value, not the momenta).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from apax.utils.jax_md_reduced import dataclasses, quantity, simulate

from ilcampaign.engine.md.jax_npt import NPTState


@dataclasses.dataclass
class NVTImpulseState(simulate.NVTNoseHooverState):
    """jax_md's NVT Nose-Hoover state plus the D3 force of the last cycle end."""

    slow_force: jax.Array


@dataclasses.dataclass
class NPTImpulseState(NPTState):
    """ilcampaign.engine.md.jax_npt's state plus the D3 force and dU_D3/d(eps) of the last cycle end."""

    slow_force: jax.Array
    slow_strain_derivative: jax.Array


def slow_fields(state) -> tuple[str, ...]:
    """The fields of ``state`` (an impulse state, or the jax_md state it extends) that hold the slow
    term's gradients."""
    return ("slow_force", "slow_strain_derivative") if isinstance(state, NPTState) else ("slow_force",)


def with_slow(state, slow: tuple):
    """A jax_md state (NVT or our NPT) as its impulse state, with the slow gradients ``slow``."""
    cls = NPTImpulseState if isinstance(state, NPTState) else NVTImpulseState
    fields = {field.name: getattr(state, field.name) for field in dataclasses.fields(state)}
    return cls(**fields, **dict(zip(slow_fields(state), slow)))


def kick(state, h, apply):
    """Where ``apply``: the momenta moved by ``h`` times the stored slow force (NPT: the box momentum by
    -h dU_D3/d(eps)) and the chains' kinetic energies set to match; else ``state`` unchanged."""
    momentum = jnp.where(apply, state.momentum + h * state.slow_force, state.momentum)
    kinetic = quantity.kinetic_energy(momentum=momentum, mass=state.mass)
    if isinstance(state, NPTImpulseState):
        box_momentum = jnp.where(apply, state.box_momentum - h * state.slow_strain_derivative, state.box_momentum)
        box_kinetic = quantity.kinetic_energy(momentum=box_momentum, mass=state.box_mass)
        return state.set(
            momentum=momentum, box_momentum=box_momentum,
            thermostat=state.thermostat.set(
                kinetic_energy=jnp.where(apply, kinetic, state.thermostat.kinetic_energy)),
            barostat=state.barostat.set(
                kinetic_energy=jnp.where(apply, box_kinetic, state.barostat.kinetic_energy)))
    return state.set(momentum=momentum,
                     chain=state.chain.set(kinetic_energy=jnp.where(apply, kinetic, state.chain.kinetic_energy)))


def close(state, slow: Callable, h, apply):
    """Where ``apply`` (a cycle ends here): the slow gradients ``slow(state)`` stored and the closing
    kick of ``h``; elsewhere ``state`` unchanged and ``slow`` not evaluated (``lax.cond``)."""
    names = slow_fields(state)
    stored = tuple(getattr(state, name) for name in names)
    fresh = jax.lax.cond(apply, lambda: tuple(slow(state)), lambda: stored)
    return kick(state.set(**dict(zip(names, fresh))), h, apply)


def step(apply_fn: Callable, slow: Callable, k: int, dt: float, state, s, closable: Callable):
    """Global step ``s`` -> s + 1 of the cycle scheme: the opening kick where s opens a cycle, the fast
    step ``apply_fn(state)``, and where s + 1 ends a cycle, ``closable(state)`` permitting, the
    closing kick (``slow`` evaluated at the new positions). Returns (state, whether the closing
    kick is still due: the host applies it with :func:`close` once the D3 list is rebuilt)."""
    half = k * dt / 2
    state = apply_fn(kick(state, half, s % k == 0))
    ends = (s + 1) % k == 0
    ready = closable(state)
    return close(state, slow, half, ends & ready), ends & ~ready
