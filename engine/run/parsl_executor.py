"""Running a campaign's tasks through Parsl: on this machine, or on a cluster's batch system.

:class:`ParslExecutor` is a ``concurrent.futures.Executor``: the runner hands it the same
``run_task(TaskRef)`` calls it hands a process pool, and each becomes a Parsl ``python_app``
call on one of the configured Parsl executors (a HighThroughputExecutor each). Workers write
their results into the archive themselves, so the work directory must be on a filesystem that
the workers see (as it is on a cluster's shared filesystem). Parsl's own files (logs, batch
scripts, worker logs) go to ``<workdir>/parsl/NNN/``, one folder per run.

Configuration file (YAML), one executor::

    provider: slurm              # slurm | local (workers on this machine)
    partition: debug             # slurm: the partition (null: the cluster's default)
    account: null                # slurm: the account to charge (null: your default)
    qos: null                    # slurm: quality of service (null: none)
    constraint: null             # slurm: node features (--constraint), e.g. "a100"
    walltime: "00:10:00"         # slurm: the time limit of one block (a batch job), HH:MM:SS
    nodes_per_block: 1           # nodes in one batch job
    launcher: null               # single | srun: how a job starts its worker pools (null: srun for
                                 # slurm with more than one node per block, else single)
    init_blocks: 1               # batch jobs submitted at the start (default: 1 for the first executor, 0 else)
    min_blocks: 0                # batch jobs kept even when idle
    max_blocks: 1                # at most this many batch jobs at once
    cores_per_node: null         # slurm: --cpus-per-task of the job (null: not asked)
    mem_per_node: null           # slurm: memory per node in GB (null: not asked)
    gpus_per_node: null          # GPUs per node: one worker per GPU, each sees its own (CUDA_VISIBLE_DEVICES)
    cores_per_worker: 1          # cores one task uses
    workers_per_node: 2          # tasks a node runs at once (default: gpus_per_node, else
                                 # cores_per_node / cores_per_worker; local: this machine's cores)
    worker_init: "source /path/to/.venv/bin/activate"   # shell lines run before the workers start
    scheduler_options: ""        # slurm: extra "#SBATCH ..." lines, verbatim
    exclusive: true              # slurm: whole nodes (--exclusive)
    address: null                # where workers reach this process (null: Parsl tries this host's addresses)
    heartbeat_period: 30         # seconds between worker <-> interchange heartbeats
    heartbeat_threshold: 120     # seconds without a heartbeat before a worker pool counts as lost
    status_polling_interval: null  # slurm: seconds between job status queries (null: Parsl's 60)
    kinds: []                    # step kinds sent to this executor (see below)
    retries: 1                   # top level only: times a task is resubmitted after its worker or job died
    max_workers: null            # top level only: tasks kept in flight (null: the sum over executors
                                 # of max_blocks * nodes_per_block * workers_per_node)

Several executors: the same fields per executor under ``executors:`` (``retries`` and
``max_workers`` stay at the top level), each under its label::

    retries: 1
    executors:
      cpu: {provider: slurm, partition: cpu, workers_per_node: 64, ...}
      gpu: {provider: slurm, partition: gpu, gpus_per_node: 4, kinds: [train, md, production], ...}

A task goes to the executor whose ``kinds`` lists its step kind (``label``, ``train``, ``md``,
...: the ``kind`` of ``ilcampaign.engine.steps``); else, if it needs a GPU (its step's task resources, e.g.
training, MD, inference cost, or the spec's ``execution.resources``), to the first executor with
``gpus_per_node``; else to the first executor. ``submit(..., label=...)`` picks one explicitly.
The single-executor form is labelled ``cpu`` (``label:`` changes it).

Retries are for lost workers only (a killed batch job, a crashed worker): a task that raised is
not retried here (the spec's ``failures`` policy decides about those), and a task whose result
is already committed to the archive is not run again, so a retried task never counts twice.
A campaign process that dies (even by SIGKILL) takes Parsl's interchange with it, and its batch
jobs end within ``heartbeat_threshold`` seconds instead of idling to their walltime; the next
``campaign run`` resumes at the first unfinished task. On a cluster without Slurm accounting
(no ``sacct``) Parsl reads job states with ``squeue``, which forgets a finished job after
Slurm's MinJobAge (300 s by default): keep ``status_polling_interval`` below that.

Power users may give a ``.py`` file instead that defines ``config`` (a ``parsl.config.Config``)
and optionally ``kinds`` ({label: [step kinds]}) and ``max_workers``; its ``run_dir`` goes to
``<workdir>/parsl`` unless set to something other than Parsl's default.
"""

from __future__ import annotations

import inspect
import os
import re
import shlex
import sys
import threading
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

RUN_DIR = "parsl"  # under the work directory
DEFAULT_LABEL = "cpu"

_WALLTIME = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$")


class ExecutorConfig(BaseModel):
    """One Parsl HighThroughputExecutor and the provider of its workers."""

    model_config = ConfigDict(extra="forbid")

    provider: Literal["local", "slurm"] = "local"
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    walltime: str = "00:10:00"
    nodes_per_block: int = Field(default=1, ge=1)
    init_blocks: int | None = Field(default=None, ge=0)
    min_blocks: int = Field(default=0, ge=0)
    max_blocks: int = Field(default=1, ge=1)
    cores_per_node: int | None = Field(default=None, ge=1)
    mem_per_node: int | None = Field(default=None, ge=1)
    gpus_per_node: int | None = Field(default=None, ge=1)
    cores_per_worker: float = Field(default=1.0, gt=0)
    workers_per_node: int | None = Field(default=None, ge=1)
    worker_init: str = ""
    scheduler_options: str = ""
    exclusive: bool = True
    launcher: Literal["single", "srun"] | None = None
    address: str | None = None
    heartbeat_period: int = Field(default=30, ge=1)
    heartbeat_threshold: int = Field(default=120, ge=1)
    status_polling_interval: int | None = Field(default=None, ge=1)
    kinds: list[str] = Field(default_factory=list)

    @field_validator("walltime")
    @classmethod
    def _walltime(cls, value: str) -> str:
        if not _WALLTIME.match(value):
            raise ValueError(f"{value!r} is not a Slurm time limit like '01:30:00' or '1-00:00:00'")
        return value

    def workers(self) -> int:
        """Tasks one node runs at once."""
        if self.workers_per_node is not None:
            return self.workers_per_node
        if self.gpus_per_node is not None:
            return self.gpus_per_node
        cores = self.cores_per_node
        if cores is None and self.provider == "local":
            cores = os.cpu_count() or 1
        if cores is None:
            raise ValueError("give workers_per_node (or cores_per_node) for a slurm executor")
        return max(int(cores // self.cores_per_worker), 1)

    def slots(self) -> int:
        """Tasks this executor runs at once when all its blocks are up."""
        return self.workers() * self.nodes_per_block * self.max_blocks


class ParslConfig(BaseModel):
    """The configuration file: executors by label, retries, and the in-flight window."""

    model_config = ConfigDict(extra="forbid")

    retries: int = Field(default=1, ge=0)
    max_workers: int | None = Field(default=None, ge=1)
    executors: dict[str, ExecutorConfig] = Field(min_length=1)

    @field_validator("executors")
    @classmethod
    def _labels(cls, value: dict[str, ExecutorConfig]) -> dict[str, ExecutorConfig]:
        for label in value:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_-]*$", label):
                raise ValueError(f"executor label {label!r}: use letters, digits, '_' and '-'")
        return value

    def routes(self) -> dict[str, str]:
        """Step kind -> executor label."""
        routes: dict[str, str] = {}
        for label, block in self.executors.items():
            for kind in block.kinds:
                if kind in routes:
                    raise ValueError(f"step kind {kind!r} is sent to both {routes[kind]!r} and {label!r}")
                routes[kind] = label
        return routes

    def slots(self) -> int:
        return self.max_workers or sum(block.slots() for block in self.executors.values())


def _located(path: Path, loc: tuple, message: str) -> ValueError:
    field = ".".join(str(part) for part in loc) or "(top level)"
    return ValueError(f"{path}: field '{field}': {message}")


def load_config(path: str | os.PathLike[str]) -> ParslConfig:
    """Read and check a YAML configuration file; ValueError naming the file and field if wrong."""
    from ruamel.yaml import YAML, YAMLError

    path = Path(path)
    try:
        data = YAML(typ="safe").load(path.read_text())
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the Parsl configuration: {exc.strerror or exc}") from None
    except YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a Parsl configuration is a mapping of fields (see engine/run/parsl_executor.py)")
    single = "executors" not in data
    if single:  # the single-executor form
        top = {key: data.pop(key) for key in ("retries", "max_workers") if key in data}
        label = data.pop("label", DEFAULT_LABEL)
        data = dict(top, executors={str(label): data})
    try:
        config = ParslConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = tuple(error["loc"])
            if single and loc[:1] == ("executors",):
                loc = loc[2:]  # the single-executor form has no executors.<label> prefix in the file
            problems.append(f"field '{'.'.join(map(str, loc)) or '(top level)'}': "
                            + error["msg"].removeprefix("Value error, "))
        raise ValueError(f"{path}: " + "; ".join(problems)) from None
    import ilcampaign.engine.steps  # noqa: F401  (fills the registry)
    from ilcampaign.engine.step import REGISTRY

    for label, block in config.executors.items():
        where = () if single else ("executors", label)
        for kind in block.kinds:
            if kind not in REGISTRY:
                raise _located(path, (*where, "kinds"),
                               f"unknown step kind {kind!r}; known: {', '.join(sorted(REGISTRY))}")
        try:
            block.workers()
        except ValueError as exc:
            raise _located(path, (*where, "workers_per_node"), str(exc)) from None
    try:
        config.routes()
    except ValueError as exc:
        raise _located(path, ("executors",), str(exc)) from None
    return config


def parsl_config(config: ParslConfig, run_dir: Path):
    """The ``parsl.config.Config`` a checked configuration stands for."""
    from parsl.config import Config
    from parsl.executors import HighThroughputExecutor
    from parsl.launchers import SingleNodeLauncher, SrunLauncher
    from parsl.providers import LocalProvider, SlurmProvider

    executors = []
    for index, (label, block) in enumerate(config.executors.items()):
        init_blocks = block.init_blocks if block.init_blocks is not None else (1 if index == 0 else 0)
        init_blocks = min(max(init_blocks, block.min_blocks), block.max_blocks)
        launcher_kind = block.launcher or ("srun" if block.provider == "slurm" and block.nodes_per_block > 1
                                           else "single")
        launcher = SrunLauncher() if launcher_kind == "srun" else SingleNodeLauncher()
        worker_init = block.worker_init
        if block.provider == "local":  # workers on this machine run this Python's worker pool
            worker_init = f"export PATH={shlex.quote(str(_bin_dir()))}:$PATH\n{worker_init}"
        blocks = dict(init_blocks=init_blocks, min_blocks=block.min_blocks, max_blocks=block.max_blocks,
                      nodes_per_block=block.nodes_per_block, worker_init=worker_init, launcher=launcher)
        if block.provider == "slurm":
            slurm = SlurmProvider
            if block.status_polling_interval is not None:  # a read-only property in Parsl: a subclass sets it
                slurm = type("SlurmProvider", (SlurmProvider,), {"status_polling_interval": block.status_polling_interval})
            provider = slurm(
                partition=block.partition, account=block.account, qos=block.qos, constraint=block.constraint,
                walltime=block.walltime, cores_per_node=block.cores_per_node, mem_per_node=block.mem_per_node,
                gpus_per_node=block.gpus_per_node, scheduler_options=block.scheduler_options,
                exclusive=block.exclusive, **blocks)
        else:
            provider = LocalProvider(**blocks)
        extra: dict[str, Any] = {}
        if block.address is not None:
            extra["address"] = block.address
        if block.gpus_per_node is not None:
            extra["available_accelerators"] = block.gpus_per_node
        executors.append(HighThroughputExecutor(
            label=label, provider=provider, cores_per_worker=block.cores_per_worker,
            max_workers_per_node=block.workers(), heartbeat_period=block.heartbeat_period,
            heartbeat_threshold=block.heartbeat_threshold, interchange_launch_cmd=_interchange_cmd(), **extra))
    return Config(executors=executors, run_dir=str(run_dir), retries=config.retries, retry_handler=retry_cost,
                  strategy_period=2)


def _bin_dir() -> Path:
    """The folder of this Python's scripts (Parsl's interchange.py and process_worker_pool.py)."""
    return Path(sys.executable).parent


# Parsl's interchange outlives a campaign run killed with SIGKILL, and keeps its batch jobs' workers
# busy waiting until their walltime. Started through this, it gets SIGTERM when the thread that
# started it ends (Linux's parent-death signal, kept across exec): ParslExecutor starts Parsl in a
# thread that lives until shutdown, so the interchange goes with the run, however the run ends.
_WITH_PARENT = """\
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
except Exception:  # not Linux: as Parsl does it
    pass
os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
"""


def _interchange_cmd() -> list[str]:
    """The interchange (always on this machine) started by this Python, whatever PATH says, and
    ended with the run."""
    script = _bin_dir() / "interchange.py"
    run = [str(script)] if script.exists() else ["-m", "parsl.executors.high_throughput.interchange"]
    return [sys.executable, "-c", _WITH_PARENT, *run]


def retry_cost(exception: BaseException, task_record: Any) -> float:
    """Parsl's retry cost of a failure: a lost worker or job costs one retry; a task that raised
    is not retried (more than any ``retries``)."""
    from parsl.executors.errors import BadStateException
    from parsl.executors.high_throughput.errors import ManagerLost, WorkerLost

    if isinstance(exception, (ManagerLost, WorkerLost, BadStateException)):
        return 1
    return float("inf")


def run_task_once(ref) -> str:
    """``ilcampaign.engine.run.execute.run_task``, unless the task's result is already committed (a retry of a
    task whose worker died after committing): then only its id."""
    from ilcampaign.archive.store import Archive
    from ilcampaign.engine.run.execute import run_task

    if Archive(ref.archive_root).task_file(ref.key, ref.task_id, ".json").exists():
        return ref.task_id
    return run_task(ref)


def _call(fn: Callable, *args, **kwargs) -> Any:
    """``fn(*args, **kwargs)``: runs callables that Parsl cannot wrap as apps itself."""
    return fn(*args, **kwargs)


def _python_config(path: Path, run_dir: Path) -> tuple[Any, dict[str, str], int | None]:
    """``config``, ``kinds`` and ``max_workers`` of a ``.py`` configuration."""
    import runpy

    from parsl.config import Config

    try:
        names = runpy.run_path(str(path))
    except Exception as exc:  # noqa: BLE001  (any error in the user's file, shown with its name)
        raise ValueError(f"{path}: {type(exc).__name__}: {exc}") from None
    config = names.get("config")
    if not isinstance(config, Config):
        raise ValueError(f"{path}: field 'config': define config = parsl.config.Config(...)")
    if config.run_dir == "runinfo":
        config.run_dir = str(run_dir)
    labels = [executor.label for executor in config.executors]
    routes: dict[str, str] = {}
    for label, kinds in (names.get("kinds") or {}).items():
        if label not in labels:
            raise ValueError(f"{path}: field 'kinds': no executor labelled {label!r} (labels: {', '.join(labels)})")
        routes.update({kind: label for kind in kinds})
    max_workers = names.get("max_workers")
    if max_workers is not None and (not isinstance(max_workers, int) or max_workers < 1):
        raise ValueError(f"{path}: field 'max_workers': a positive integer")
    return config, routes, max_workers


def _python_slots(path: Path, config: Any) -> int:
    """Worker slots of a Parsl Config's executors, where they say (else ValueError)."""
    total = 0
    for executor in config.executors:
        per_node = getattr(executor, "max_workers_per_node", None)
        provider = getattr(executor, "provider", None)
        if not isinstance(per_node, int) or provider is None or per_node >= 2**31:
            raise ValueError(f"{path}: field 'max_workers': executor {executor.label!r} does not say how many "
                             "tasks it runs at once; set max_workers = N in the file")
        total += per_node * getattr(provider, "nodes_per_block", 1) * getattr(provider, "max_blocks", 1)
    return max(total, 1)


class ParslExecutor(Executor):
    """A ``concurrent.futures.Executor`` running calls as Parsl apps.

    ``config``: a YAML file as in this module's docstring, or a ``.py`` file defining ``config``.
    ``workdir``: the campaign work directory (Parsl's run directory goes to ``workdir/parsl``), or
    ``run_dir``: Parsl's run directory itself; one of the two is needed (never the current folder).
    Parsl starts at the first ``submit`` (no batch job for a run with nothing to do);
    ``shutdown`` stops it (cancelling its batch jobs), after which a new ParslExecutor may run.
    """

    def __init__(self, config: str | os.PathLike[str], workdir: str | os.PathLike[str] | None = None, *,
                 run_dir: str | os.PathLike[str] | None = None):
        if run_dir is None and workdir is None:
            raise TypeError("ParslExecutor needs the campaign's workdir (or Parsl's run_dir)")
        self.path = Path(config)
        self.run_dir = Path(run_dir).resolve() if run_dir is not None else Path(workdir).resolve() / RUN_DIR
        if self.path.suffix == ".py":
            self._config, self._routes, max_workers = _python_config(self.path, self.run_dir)
            self._max_workers = max_workers or _python_slots(self.path, self._config)
        else:
            checked = load_config(self.path)
            self._config = parsl_config(checked, self.run_dir)
            self._routes = checked.routes()
            self._max_workers = checked.slots()
        self.labels = [executor.label for executor in self._config.executors]
        self.gpu_labels = [executor.label for executor in self._config.executors  # those with GPUs
                           if getattr(executor, "available_accelerators", None)]
        self._dfk = None
        self._apps: dict[tuple[Callable, str], Any] = {}
        self._futures: set[Future] = set()
        self._lock = threading.Lock()
        self._shutdown = False
        self._stopped = threading.Event()
        self._keeper: threading.Thread | None = None

    def label_for(self, kind: str | None, resources: dict[str, Any] | None = None) -> str:
        """The executor label a task of step kind ``kind`` goes to: the executor whose ``kinds``
        list it; else, for a task that needs a GPU (``resources["gpus"]``, the runner's
        ``TaskRef.resources``), the first executor with GPUs; else the first executor."""
        if kind in self._routes:
            return self._routes[kind]
        if (resources or {}).get("gpus") and self.gpu_labels:
            return self.gpu_labels[0]
        return self.labels[0]

    def gpu_tasks(self, kind: str, resources: dict[str, Any]) -> bool:
        """Whether tasks of ``kind`` that need ``resources`` go to an executor with GPUs (the
        runner then counts their GPU hours)."""
        return bool(resources.get("gpus")) and self.label_for(kind, resources) in self.gpu_labels

    @property
    def dfk(self):
        """Parsl's DataFlowKernel (started at first use)."""
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            if self._dfk is None:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                self._dfk = self._start()
            return self._dfk

    def _start(self):
        """A DataFlowKernel created in a thread of its own that waits for ``shutdown`` (the
        interchange, started with a parent-death signal, stays up exactly as long as that thread)."""
        from parsl.dataflow.dflow import DataFlowKernel

        started = threading.Event()
        result: dict[str, Any] = {}

        def keep() -> None:
            try:
                result["dfk"] = DataFlowKernel(self._config)
            except BaseException as exc:  # noqa: BLE001  (raised in the caller's thread)
                result["error"] = exc
            started.set()
            if "dfk" in result:
                self._stopped.wait()

        self._keeper = threading.Thread(target=keep, name="parsl-dfk", daemon=True)
        self._keeper.start()
        started.wait()
        if "error" in result:
            raise result["error"]
        return result["dfk"]

    def _app(self, fn: Callable, label: str):
        with self._lock:
            app = self._apps.get((fn, label))
        if app is None:
            from parsl import python_app

            app = python_app(fn, data_flow_kernel=self.dfk, executors=[label])
            with self._lock:
                self._apps[(fn, label)] = app
        return app

    def submit(self, fn, /, *args, label: str | None = None, **kwargs) -> Future:
        """Run ``fn(*args, **kwargs)`` as a Parsl app on executor ``label`` (default: the one for
        the task's step kind); returns a Future fed by Parsl's AppFuture (``.parsl_future``), which
        unlike the AppFuture may be cancelled while it waits."""
        from ilcampaign.engine.run.execute import TaskRef, run_task

        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        ref = args[0] if args and isinstance(args[0], TaskRef) else None
        if label is None:
            label = self.label_for(ref.kind, getattr(ref, "resources", None)) if ref else self.labels[0]
        elif label not in self.labels:
            raise ValueError(f"no Parsl executor labelled {label!r} (labels: {', '.join(self.labels)})")
        if fn is run_task and ref is not None:
            fn = run_task_once
        try:
            inspect.signature(fn)
        except (TypeError, ValueError):  # a builtin without one (Parsl apps need a signature)
            fn, args = _call, (fn, *args)
        inner = self._app(fn, label)(*args, **kwargs)
        outer: Future = Future()
        outer.parsl_future = inner  # type: ignore[attr-defined]  (Parsl's AppFuture, for task_status())
        with self._lock:
            self._futures.add(outer)

        def relay(done: Future) -> None:
            with self._lock:
                self._futures.discard(outer)
            if not outer.set_running_or_notify_cancel():
                return  # cancelled by the caller: the Parsl task's result is dropped
            exception = done.exception()
            if exception is None:
                outer.set_result(done.result())
            else:
                outer.set_exception(exception)

        inner.add_done_callback(relay)
        return outer

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop Parsl: with ``wait``, after the submitted calls finish (those not cancelled by
        ``cancel_futures``); its batch jobs are cancelled and its workers stopped."""
        with self._lock:
            self._shutdown = True
            pending = list(self._futures)
            dfk, self._dfk = self._dfk, None
        if cancel_futures:
            for future in pending:
                future.cancel()
        if wait:
            from concurrent.futures import wait as wait_all

            wait_all([f for f in pending if not f.cancelled()])
        try:
            if dfk is not None:
                dfk.cleanup()
        finally:
            self._stopped.set()
