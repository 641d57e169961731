"""``md``: molecular dynamics with the current model, stopped on force uncertainty (eqn 8), run in
chunks of ``checkpoint_every`` steps (one task each, resumable, bit-identical when resumed).

Our JAX MD (ilcampaign.engine.md.jax) is used where it is valid and fast (Nose-Hoover chain NVT at a fixed
cell, box at least twice the cutoff; hybrid models with D3(BJ) included, D3 in JAX), and for NPT
where the spec asks for ``engine: jax`` (jax_md's isotropic MTK barostat, not ASE's NPT: ``auto``
keeps ASE's, the paper's); everything else runs through ASE with apax's calculator (plus
torch-dftd D3). A box too small for JAX MD always goes to ASE, and the record says which engine
ran and why. A hybrid with ``d3.mts_interval`` k > 1 integrates D3 every k steps in JAX MD (the spec
refuses it for runs that go to ASE); a box too small for JAX MD integrates it every step, in ASE,
and the record says that too.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from ilcampaign.campaign.spec import CampaignSpec, DispersionCorrection, MDSettings, Start, TemperatureGuard, not_hashed
from ilcampaign.engine.run.chunks import chunk_range, chunks, next_chunk, read_state, write_state
from ilcampaign.engine.step import GPU_TASK, StepContext, TaskResult, Work, WorkFacts, register
from ilcampaign.engine.steps.sampling import (
    ENDS,
    GuardedStep,
    SamplerStep,
    guard_fields,
    is_ensemble,
    model_r_max,
    start_frames,
    tag_candidates,
)


def choose_engine(sampler: MDSettings, box_ok: bool, d3: DispersionCorrection | None = None) -> tuple[str, str]:
    """(engine, reason) for a sampler, given whether the box is large enough for JAX MD and the D3
    term of a hybrid sampler. NPT goes to JAX only when asked for: its barostat is another one."""
    if sampler.engine == "ase":
        return "ase", "requested"
    if not box_ok:
        return "ase", "box not periodic or smaller than twice the cutoff: JAX MD would give wrong forces"
    if not sampler.runs_in_jax_md(d3):
        if sampler.engine == "jax":
            return "ase", ("JAX MD runs Nose-Hoover NVT without box ramps and NPT (D3 with BJ damping, NPT without "
                           "the tail correction) only")
        return "ase", ("Langevin, box ramps and zero-damping D3 run through ASE; NPT too unless engine: jax "
                       "(ASE's barostat is the paper's)")
    return "jax", "requested" if sampler.engine == "jax" else "fastest valid engine"


@register
class MDStep(GuardedStep, SamplerStep):
    """Sample candidates from an MD run that starts at the ``start`` input's last end structure; the
    run stops at the first frame that breaks the contact or bond guard (which is not kept), as at the
    uncertainty stop, and on the temperature guard."""

    kind: ClassVar[str] = "md"
    version: ClassVar[int] = 3
    inputs: ClassVar[tuple[str, ...]] = ("model", "start")

    sampler: MDSettings
    seed: int
    d3: DispersionCorrection | None = None  # set when the sampler runs the hybrid model
    temperature_guard: TemperatureGuard = Field(default_factory=TemperatureGuard)
    checkpoint_every: int = not_hashed(default=1000, ge=1, description="MD steps per chunk")

    @classmethod
    def from_sampler(cls, spec: CampaignSpec, settings: MDSettings, seed: int) -> MDStep:
        return cls(sampler=settings, seed=seed, d3=spec.d3 if settings.hybrid_d3 else None,
                   checkpoint_every=spec.checkpoints.md_steps, temperature_guard=spec.guards.temperature,
                   **guard_fields(spec))

    def start(self) -> Start:
        return self.sampler.start

    def note(self) -> str:
        return "" if self.d3 is None else f"model + {self.d3.describe()}"

    def expected_tasks(self) -> int:
        return -(-self.sampler.n_steps // self.checkpoint_every)

    def work(self, facts: WorkFacts) -> Work:
        """Planned with the engine of a box at least twice the model's cutoff, as a study's boxes are
        (``work_done`` reads the engine the run took)."""
        return self._md_work(self.sampler.n_steps * facts.atoms, choose_engine(self.sampler, True, self.d3)[0])

    def work_done(self, facts: WorkFacts, summary: dict[str, Any], tasks: dict[str, dict[str, Any]]) -> Work:
        return self._md_work(summary["steps_run"] * facts.atoms, summary["engine"])

    def _md_work(self, atom_steps: int, engine: str) -> Work:
        """A step costs per unit by its engine; a hybrid's also with the D3 pairs each atom sums: the
        volume of its cutoff sphere."""
        if self.d3 is None:
            return Work("MD steps x atoms", atom_steps, variant=engine)
        return Work("MD steps x atoms", atom_steps, weight=self.d3.cutoff_volume,
                    variant=f"{engine}, hybrid")

    def task_resources(self) -> dict[str, Any]:
        return dict(GPU_TASK)

    def tasks(self, ctx: StepContext) -> list[str]:
        return next_chunk(ctx.done_tasks(), self.sampler.n_steps, self.checkpoint_every)

    def run_task(self, ctx: StepContext, task_id: str) -> TaskResult:
        from ilcampaign.engine.models import apax as apax_model

        first, last = chunk_range(task_id)
        (atoms,) = start_frames(ctx, self.start())
        model_dir = ctx.model_dir()
        box_ok = bool(atoms.pbc.all()) and apax_model.jax_md_valid(atoms, model_r_max(ctx))
        engine, reason = choose_engine(self.sampler, box_ok, self.d3)
        if engine == "ase" and self.d3 is not None and self.d3.mts_interval > 1:
            reason += (f"; D3 integrated every step, not every {self.d3.mts_interval} (multiple time stepping "
                       "runs in JAX MD only)")
        state = read_state(ctx, task_id)
        run = _run_jax if engine == "jax" else _run_ase
        frames, rows, state, stopped_at, stop_reason = run(self, ctx, model_dir, atoms, first, last, state)
        collapse = self.first_collapse(ctx, frames)
        if collapse is not None:
            index, violation = collapse
            stopped_at = int(frames[index].info["step"])
            stop_reason, state = f"{violation.guard} at step {stopped_at}: {violation}", None
            frames, rows = frames[:index], [row for row in rows if row[0] <= stopped_at]
        if state is not None:
            write_state(ctx, task_id, state)
        return TaskResult(frames, {"engine": engine, "engine_reason": reason, "rows": rows,
                                   "stopped_at": stopped_at, "stop_reason": stop_reason})

    def finish(self, ctx: StepContext) -> tuple[list[str], dict[str, Any]]:
        from ilcampaign.archive.arrays import write_dataset
        from ilcampaign.engine.md.common import series

        done = ctx.done_tasks()
        ran = chunks(done)
        frames = tag_candidates([frame for task in ran for frame in ctx.task_frames(task)], "md")
        rows = [row for task in ran for row in done[task]["rows"]]
        write_dataset(ctx.out_dir / "series.nc", series(rows, self.sampler.timestep))
        last = done[ran[-1]]
        # the chain continues from the last frame; from the start where the run blew up before its first
        ends = frames[-1:] or start_frames(ctx, self.start())
        return [ctx.write_frames(frames), ctx.write_frames(ends, ENDS), "series.nc"], {
            "n_candidates": len(frames), "engine": last["engine"], "engine_reason": last["engine_reason"],
            "stopped_at": last["stopped_at"], "stop_reason": last["stop_reason"], "n_steps": self.sampler.n_steps,
            "steps_run": chunk_range(ran[-1])[1] if last["stopped_at"] is None else last["stopped_at"],
            "n_chunks": len(ran)}


def _run_ase(step: MDStep, ctx: StepContext, model_dir, atoms, first: int, last: int, state: dict | None):
    """One chunk through ASE with apax's calculator (plus torch-dftd D3 for hybrid samplers)."""
    from ilcampaign.engine.models import apax as apax_model
    from ilcampaign.engine.md.ase import run_md_chunk

    calc = apax_model.load_calculator(model_dir, cache_dir=ctx.jax_cache)  # a fresh calculator every chunk
    if step.d3 is not None:
        from ilcampaign.engine.dispersion.ase_hybrid import calculator_options, hybrid_calculator

        calc = hybrid_calculator(calc, **calculator_options(step.d3))
    uncertainty = (lambda a: apax_model.force_uncertainty(calc.results)) if is_ensemble(ctx) else None
    chunk = run_md_chunk(atoms, calc, step.sampler, seed=step.seed, first=first, last=last, state=state,
                         uncertainty=uncertainty, guard=step.temperature_guard)
    return chunk.frames, [list(map(float, row)) for row in chunk.rows], chunk.state, chunk.stopped_at, chunk.stop_reason


def _run_jax(step: MDStep, ctx: StepContext, model_dir, atoms, first: int, last: int, state: dict | None):
    """One chunk through our JAX MD (Nose-Hoover chain NVT or MTK NPT, plus D3 for a hybrid)."""
    from ilcampaign.engine.md.common import temperatures
    from ilcampaign.engine.dispersion.jax_term import D3Term
    from ilcampaign.engine.md.jax import JaxMDParameters, run_chunk

    s = step.sampler
    guard = step.temperature_guard
    d3 = None if step.d3 is None else D3Term.from_spec(step.d3)
    settings = JaxMDParameters(timestep=s.timestep, thermostat_time=s.thermostat_time, interval=s.interval,
                          threshold=s.uncertainty_threshold, blow_up_ratio=guard.blow_up_ratio, hot_ratio=guard.ratio,
                          hot_steps=guard.steps, d3=d3, pressure=s.pressure if s.ensemble == "npt" else None,
                          barostat_time=s.barostat_time, mts_interval=1 if step.d3 is None else step.d3.mts_interval,
                          mts_split=True if step.d3 is None else step.d3.mts_split)
    chunk = run_chunk(model_dir, atoms, temperatures(s), settings, seed=step.seed, first=first, last=last,
                      state=state, cache_dir=ctx.jax_cache)
    rows = [[step_, target, temperature, float(frame.get_masses().sum() / frame.get_volume()), energy, sigma]
            for frame, (step_, target, temperature, energy, sigma) in zip(chunk.frames, chunk.rows.tolist())]
    return chunk.frames, rows, chunk.state, chunk.stopped_at, chunk.stop_reason
