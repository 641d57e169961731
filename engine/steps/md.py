"""``md``: molecular dynamics with the current ensemble, stopped on force uncertainty (eqn 8).

apax's JAX MD is used where it is valid and fast (Nose-Hoover chain NVT without density ramp
or D3, box at least twice the cutoff); everything else runs through ASE with apax's
calculator. A box too small for JAX MD always goes to ASE (apax would only log an error and
give wrong forces), and the record says which engine ran and why.
"""

from __future__ import annotations

from typing import Any, ClassVar

from campaign.spec import DispersionCorrection, MDSampler
from engine.step import SingleTaskStep, StepContext, TaskResult, register
from engine.steps.sampling import candidates, model_r_max, start_frames


def choose_engine(sampler: MDSampler, box_ok: bool) -> tuple[str, str]:
    """(engine, reason) for a sampler, given whether the box is large enough for JAX MD."""
    jax_able = sampler.ensemble == "nvt" and sampler.thermostat == "nose_hoover_chain" and sampler.density is None
    jax_able = jax_able and not sampler.hybrid_d3
    if sampler.engine == "ase":
        return "ase", "requested"
    if not box_ok:
        return "ase", "box smaller than twice the cutoff: apax JAX MD would give wrong forces"
    if not jax_able:
        if sampler.engine == "jax":
            return "ase", "JAX MD supports Nose-Hoover NVT without density ramps or D3 only"
        return "ase", "Langevin, NPT, density ramps and D3 run through ASE"
    return "jax", "requested" if sampler.engine == "jax" else "fastest valid engine"


def d3_options(d3: DispersionCorrection) -> dict[str, Any]:
    """Keyword arguments of engine.d3's calculators for the spec's d3 section."""
    import torch

    return {"xc": d3.functional, "damping": d3.damping, "cutoff": d3.cutoff, "cn_cutoff": d3.cn_cutoff,
            "skin": d3.skin, "dtype": getattr(torch, d3.dtype)}


@register
class MD(SingleTaskStep):
    """Sample candidates from an MD run that starts at the last frame of ``start``."""

    kind: ClassVar[str] = "md"
    version: ClassVar[int] = 1
    task: ClassVar[str] = "run"
    extra_outputs: ClassVar[tuple[str, ...]] = ("series.nc",)
    inputs: ClassVar[tuple[str, ...]] = ("model", "start")

    sampler: MDSampler
    seed: int
    d3: DispersionCorrection | None = None  # set when the sampler runs the hybrid model

    def run_task(self, ctx: StepContext, task_id: str) -> TaskResult:
        from archive.arrays import write_dataset
        from engine import apax_model

        (atoms,) = start_frames(ctx, 1)
        model_dir = ctx.model_dir()
        engine, reason = choose_engine(self.sampler, apax_model.jax_md_valid(atoms, model_r_max(ctx)))
        if engine == "jax":
            result = apax_model.run_jax_md(model_dir, atoms, self.sampler, workdir=ctx.scratch / "jax_md", seed=self.seed)
            stopped_at, stop_reason = result.stopped_at, "uncertainty" if result.stopped_at is not None else None
        else:
            from engine.dynamics import run_md

            calc = apax_model.load_calculator(model_dir)
            if self.d3 is not None:
                from engine.d3 import hybrid_calculator

                calc = hybrid_calculator(calc, **d3_options(self.d3))
            result = run_md(atoms, calc, self.sampler, seed=self.seed,
                            uncertainty=lambda a: apax_model.force_uncertainty(calc.results))
            stopped_at, stop_reason = result.stopped_at, result.stop_reason
        write_dataset(ctx.archive.task_file(ctx.key, task_id, ".series.nc"), result.series)
        return candidates(result.frames, "md", engine=engine, engine_reason=reason, stopped_at=stopped_at,
                          stop_reason=stop_reason, n_steps=self.sampler.n_steps)
