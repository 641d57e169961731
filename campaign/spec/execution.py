"""``execution``: where tasks run (never part of a step key: the same steps give the same results
wherever they run). ``campaign run --workers/--parsl`` overrides it."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field

from ilcampaign.campaign.spec.base import Section


class Resources(Section):
    """What one task of a step kind needs. Step kinds declare defaults (``task_resources`` in
    engine/steps/<kind>.py); the spec overrides them per kind (``campaign validate`` checks the kinds). The executor places tasks by them (Parsl: tasks wanting a GPU go
    to the executor labelled ``gpu``) and each record keeps them, for CPU and GPU hours."""

    cores: int | None = Field(default=None, ge=1, description="cores per task (default: the step kind's)")
    mpi_ranks: int | None = Field(default=None, ge=1, description="MPI ranks per task (CP2K: put them in reference.command)")
    gpus: int | None = Field(default=None, ge=0, description="GPUs per task, used where the executor has a gpu label")
    memory_gb: float | None = Field(default=None, gt=0, description="memory per task in GB (recorded; Parsl: per worker)")
    walltime_h: float | None = Field(default=None, gt=0, description="longest expected task in hours (recorded)")


class Estimates(Section):
    """What work costs where the real campaign runs, for the forecast of ``campaign rehearse``
    (measure them with a few real calculations and benchmarks/md_speed.py on the target machine)."""

    reference_call_core_hours: float | None = Field(
        default=None, gt=0, description="core-hours of one reference calculation on the system's box")
    md_atom_steps_per_gpu_second: float | None = Field(
        default=None, gt=0, description="MD steps x atoms per GPU-second of the real model (e.g. 240 atoms at "
                                        "20 steps/s: 4800)")
    epoch_frames_per_gpu_second: float | None = Field(
        default=None, gt=0, description="training epochs x frames per GPU-second of the real model")


class LocalExecution(Section):
    """Worker processes on this machine; independent steps run at the same time up to ``workers``."""

    kind: Literal["local"] = "local"
    workers: int = Field(default=1, ge=1, description="parallel worker processes (1: one task, one step at a time)")
    resources: dict[str, Resources] = Field(default_factory=dict, description="per step kind (as `campaign plan` lists them), over its defaults")
    estimates: Estimates = Field(default_factory=Estimates)


class ParslExecution(Section):
    """Tasks through Parsl: its HighThroughputExecutor on the provider a config file names
    (local processes, or Slurm jobs; see engine/run/parsl_executor.py and specs/parsl/)."""

    kind: Literal["parsl"]
    config: str = Field(description="Parsl configuration file (YAML or .py), relative to the spec's folder")
    resources: dict[str, Resources] = Field(default_factory=dict, description="per step kind (as `campaign plan` lists them), over its defaults")
    estimates: Estimates = Field(default_factory=Estimates)


Execution = Annotated[Union[LocalExecution, ParslExecution], Field(discriminator="kind")]
