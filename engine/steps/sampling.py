"""Shared pieces of the sampler step kinds: where they start, chunked optimisations, and storing
candidates and end structures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from ilcampaign.campaign.spec import BondGuard, Contacts, Optimiser, Start, added_option, not_hashed
from ilcampaign.engine.run.chunks import chunk_range, chunks, next_chunk, read_state, write_state
from ilcampaign.engine.step import FRAMES, Step, StepContext, StepFailed, TaskResult, Work, WorkFacts

if TYPE_CHECKING:
    from ilcampaign.campaign.spec import CampaignSpec, SamplerSettings
    from ilcampaign.engine.structures.guards import FrameCheck, Violation

ENDS = "ends.h5"  # the structures a later sampler continues from, where they differ from the candidates


def start_frames(ctx: StepContext, start: Start) -> list:
    """The ``start`` input's end structures chosen by ``start`` (first or last n), without labels."""
    from ilcampaign.archive.frames import read_frames

    record = ctx.input_record("start")
    path = ctx.archive.output(ctx.inputs["start"], ENDS if ENDS in record["outputs"] else FRAMES)
    frames = read_frames(path)
    if len(frames) < start.count:
        raise StepFailed(f"step {record['name']} has {len(frames)} end structure(s); "
                         f"this sampler starts from {start.count}")
    chosen = frames[: start.first] if start.first is not None else frames[-start.count:]
    for frame in chosen:
        frame.calc = None
    return chosen


def model_r_max(ctx: StepContext) -> float:
    """The cutoff of the model feeding the ``model`` input (from its train step's record)."""
    return float(ctx.input_record("model")["params"]["model"]["r_max"])


def is_ensemble(ctx: StepContext) -> bool:
    """Whether the model feeding the ``model`` input is an ensemble (has a force uncertainty)."""
    return ctx.input_record("model")["params"]["model"].get("ensemble") is not None


def tag_candidates(frames: list, source: str) -> list:
    """Unlabelled candidate configurations tagged with the sampler that made them."""
    for index, frame in enumerate(frames):
        frame.calc = None
        frame.info.update(source=source, candidate=index)
    return frames


def candidates(frames: list, source: str, **summary: Any) -> TaskResult:
    """A task result of tagged candidates and a summary."""
    return TaskResult(tag_candidates(frames, source), {"n_candidates": len(frames), **summary})


class SamplerStep(Step):
    """The step of a sampler of the learning-on-the-fly loop (its kind is the sampler's), built from
    its spec section; by default it reads the model the iteration samples with and the structure
    it starts from."""

    @classmethod
    def from_sampler(cls, spec: CampaignSpec, settings: SamplerSettings, seed: int) -> SamplerStep:
        """The step of sampler ``settings`` of ``spec`` (``seed``: the iteration's)."""
        raise NotImplementedError

    def start(self) -> Start:
        """Which end structures of which step the sampler starts from."""
        raise NotImplementedError

    def sampler_inputs(self, model: str, chain: str) -> dict[str, str]:
        """Input slot -> step name: ``model`` (the previous iteration's train step) and the step
        named by ``start``, else ``chain`` (the last chained sampler before this one)."""
        return {"model": model, "start": self.start().step or chain}

    def note(self) -> str:
        """What ``campaign plan`` says about the step (e.g. the D3 term of a hybrid model)."""
        return ""


def guard_fields(spec: CampaignSpec) -> dict[str, Any]:
    """The guard fields of a guarded step: the contact and bond thresholds and the ions' SMILES."""
    return {"contacts": spec.guards.contacts, "bonds": spec.guards.bonds,
            "smiles": [ion.smiles for ion in spec.system.ions]}


class GuardedStep(Step):
    """Fields of a step whose frames pass the contact and bond guards: the thresholds and the ions'
    SMILES (which give the bonds). With the bond guard on, the step reads each bond's relaxed
    length from the ``molecules`` step, an input it then has."""

    contacts: Contacts | None = None
    bonds: BondGuard | None = added_option(None, description="bond lengths relative to the relaxed ions'")
    smiles: list[str] = Field(default_factory=list)

    def input_slots(self) -> tuple[str, ...] | None:
        slots = super().input_slots()
        return slots if slots is None or self.bonds is None else (*slots, "molecules")

    def guard_inputs(self) -> dict[str, str]:
        """Input slot -> step name of what the guards read: the relaxed ions, with the bond guard on."""
        return {} if self.bonds is None else {"molecules": "molecules"}

    def guard(self, ctx: StepContext) -> FrameCheck:
        """The check of this step's frames (the bond guard's relaxed lengths read from ``molecules``)."""
        from ilcampaign.engine.structures.guards import FrameCheck

        ions = ctx.input_frames("molecules") if self.bonds is not None else None
        return FrameCheck(self.contacts, self.bonds, self.smiles, ions)

    def violations(self, ctx: StepContext, frames: list) -> Iterator[tuple[int, Violation]]:
        """Each frame that breaks a guard (its index and worst violation), in order."""
        check = self.guard(ctx)
        if not check.checks:
            return
        for index, frame in enumerate(frames):
            violation = check(frame)
            if violation is not None:
                yield index, violation

    def first_collapse(self, ctx: StepContext, frames: list) -> tuple[int, Violation] | None:
        """The index of the first frame that breaks a guard and its worst violation, or None."""
        return next(self.violations(ctx, frames), None)


class OptimisingStep(GuardedStep, SamplerStep):
    """Optimises each start structure with the model in chunks of ``checkpoint_every`` optimiser
    steps (tasks ``s<structure>.steps<first>-<last>``, resumable); subclasses say which settings."""

    inputs: ClassVar[tuple[str, ...]] = ("model", "start")
    checkpoint_every: int = not_hashed(default=100, ge=1, description="optimiser steps per chunk")

    @classmethod
    def from_sampler(cls, spec: CampaignSpec, settings: SamplerSettings, seed: int) -> OptimisingStep:
        return cls(settings=settings, checkpoint_every=spec.checkpoints.optimisation_steps, **guard_fields(spec))

    def expected_tasks(self) -> int:
        settings = self.optimiser()
        return 0 if settings is None else self.start().count * -(-settings.max_steps // self.checkpoint_every)

    def work(self, facts: WorkFacts) -> Work:
        settings = self.optimiser()
        steps = settings.max_steps if settings is not None else 0
        return Work("optimiser steps x atoms", steps * self.start().count * facts.atoms)

    def work_done(self, facts: WorkFacts, summary: dict[str, Any], tasks: dict[str, dict[str, Any]]) -> Work:
        steps = sum(tasks[task]["n_frames"] for j in range(self.start().count) for task in chunks(tasks, self.prefix(j)))
        return Work("optimiser steps x atoms", steps * facts.atoms)

    def optimiser(self) -> Optimiser | None:
        """The optimiser settings, or None to skip optimising."""
        raise NotImplementedError

    @staticmethod
    def prefix(structure: int) -> str:
        return f"s{structure:03d}."

    def optimisation_tasks(self, ctx: StepContext) -> list[str]:
        """The next optimisation chunk of every structure still optimising."""
        settings, done = self.optimiser(), ctx.done_tasks()
        if settings is None:
            return []
        return [task for j in range(self.start().count)
                for task in next_chunk(done, settings.max_steps, self.checkpoint_every, self.prefix(j))]

    def optimised(self, ctx: StepContext, structure: int) -> bool:
        """Whether structure ``structure`` is done optimising (or needs no optimisation)."""
        return self.optimiser() is None or not next_chunk(
            ctx.done_tasks(), self.optimiser().max_steps, self.checkpoint_every, self.prefix(structure))

    def run_optimisation(self, ctx: StepContext, task_id: str) -> TaskResult:
        from ilcampaign.engine.models.apax import load_calculator
        from ilcampaign.engine.md.ase import optimise_chunk

        structure = int(task_id[1:4])
        first, last = chunk_range(task_id)
        atoms = start_frames(ctx, self.start())[structure]
        calc = load_calculator(ctx.model_dir(), cache_dir=ctx.jax_cache)
        frames, state, ended = optimise_chunk(atoms, calc, self.optimiser(),
                                              steps=last - first, state=read_state(ctx, task_id))
        collapse, reason = self.first_collapse(ctx, frames), None
        if collapse is not None:  # the optimisation ends at the last sane frame
            index, violation = collapse
            reason = f"{violation.guard} at optimiser step {frames[index].info['step']}: {violation}"
            frames, ended = frames[:index], True
        write_state(ctx, task_id, state)
        return TaskResult(frames, {"n_frames": len(frames), "stopped_at": last if ended else None,
                                   "stop_reason": reason})

    def guard_stops(self, ctx: StepContext) -> list[str]:
        """Why optimisations stopped at a guard, one line each."""
        return [f"structure {task[1:4]}: {result['stop_reason']}" for task, result in sorted(ctx.done_tasks().items())
                if result.get("stop_reason")]

    def optimisation_frames(self, ctx: StepContext, structure: int) -> list:
        """Every configuration the optimisation of ``structure`` visited, in order (the start
        structure itself when there was no optimisation, or the guard stopped it at once)."""
        visited = [] if self.optimiser() is None else [
            frame for task in chunks(ctx.done_tasks(), self.prefix(structure)) for frame in ctx.task_frames(task)]
        return visited or start_frames(ctx, self.start())[structure : structure + 1]
