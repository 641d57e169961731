"""A real one-node Slurm cluster for tests: its own munged, slurmctld and slurmd, all in a temp dir.

Everything lives in the folder given to :func:`slurm_cluster`: the munge key and socket, a
throwaway ``slurm.conf`` (``SLURM_CONF`` points at it while the cluster is up, so ``sbatch``,
``squeue``, ``scancel`` and Parsl's SlurmProvider find it), state, spool and log files. The
daemons run in the foreground as children of this process and are killed on the way out, even
when starting them failed. Nothing of the machine's own munge or Slurm set-up is touched: the
munged here listens on its own socket (``AuthInfo=socket=...``) and the Slurm daemons on free
ports of the loopback address.

Needs root (slurmd runs jobs as their users; SlurmUser=root) and Debian's ``slurm-wlm`` and
``munge`` packages; :func:`unavailable` says why not, for a clean ``pytest.skip``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

BINARIES = ("munged", "slurmctld", "slurmd", "sinfo", "srun", "sbatch", "squeue", "scancel")

SLURM_CONF = """\
ClusterName=test
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
KillWait=2
MinJobAge=300
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=60
MailProg=/bin/true
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def unavailable() -> str | None:
    """Why a Slurm cluster cannot be started here (None: it can)."""
    if os.geteuid() != 0:
        return "a test Slurm cluster needs root (slurmd and munged run as root)"
    missing = [name for name in BINARIES if shutil.which(name) is None]
    if missing:
        return f"Slurm/munge commands missing: {', '.join(missing)} (apt-get install slurm-wlm munge)"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class SlurmCluster:
    """A running one-node cluster: its folder, node name, partition and the environment to use it."""

    root: Path
    host: str
    cpus: int
    partition: str = "debug"
    processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        return dict(os.environ, SLURM_CONF=str(self.conf))

    def run(self, *args: str, check: bool = True, timeout: float = 60) -> str:
        """Run a Slurm client command against this cluster; its standard output."""
        result = subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}\n{self.logs()}")
        return result.stdout

    def jobs(self) -> list[str]:
        """Ids of the jobs queued or running."""
        return self.run("squeue", "-h", "-o", "%i").split()

    def cancel(self, job: str) -> None:
        self.run("scancel", job)

    def logs(self, tail: int = 30) -> str:
        """The last lines of the daemons' logs (for failure messages)."""
        parts = []
        for name in ("munged.log", "slurmctld.log", "slurmd.log"):
            path = self.root / name
            if path.exists():
                lines = path.read_text(errors="replace").splitlines()[-tail:]
                parts.append(f"--- {name}\n" + "\n".join(lines))
        return "\n".join(parts)

    # ----------------------------------------------------------------- start and stop
    def _spawn(self, *args: str) -> subprocess.Popen:
        out = open(self.root / f"{Path(args[0]).name}.out", "ab")
        process = subprocess.Popen(args, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        out.close()
        self.processes.append(process)
        return process

    def _check_alive(self) -> None:
        for process in self.processes:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args[0]} exited with {process.returncode}\n{self.logs()}")

    def _wait(self, what: str, ready, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            if ready():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}\n{self.logs()}")
            time.sleep(0.3)

    def start(self, timeout: float = 60) -> None:
        for name in ("state", "spool", "munge"):
            (self.root / name).mkdir(parents=True, exist_ok=True)
        munge = self.root / "munge"
        munge.chmod(0o700)
        key = munge / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        socket_path = munge / "munge.socket"
        self.conf.write_text(SLURM_CONF.format(
            host=self.host, cpus=self.cpus, root=self.root, munge_socket=socket_path,
            ctld_port=_free_port(), slurmd_port=_free_port()))
        self._spawn("munged", "--foreground", "--force", f"--socket={socket_path}", f"--key-file={key}",
                    f"--log-file={self.root / 'munged.log'}", f"--pid-file={munge / 'munged.pid'}",
                    f"--seed-file={munge / 'munged.seed'}")
        self._wait("munged", socket_path.exists, timeout)
        self._spawn("slurmctld", "-D", "-c", "-i", "-f", str(self.conf))
        self._wait("slurmctld", lambda: self.run("sinfo", "-h", check=False, timeout=10) != "", timeout)
        self._spawn("slurmd", "-D", "-f", str(self.conf), "-N", self.host)

        def idle() -> bool:
            state = self.run("sinfo", "-h", "-N", "-o", "%t", check=False, timeout=10).split()
            return state == ["idle"]

        self._wait("the node to be idle", idle, timeout)
        out = self.run("srun", "-N1", "-n1", "hostname", timeout=timeout)
        if not out.strip():
            raise RuntimeError(f"srun hostname printed nothing\n{self.logs()}")

    def stop(self) -> None:
        """Cancel what is left, then kill the daemons (and whatever they started), newest first."""
        try:
            if self.processes and all(p.poll() is None for p in self.processes):
                self.run("scancel", "--full", "--partition", self.partition, check=False, timeout=10)
                deadline = time.monotonic() + 15  # let slurmd end the jobs' processes itself
                while self.jobs() and time.monotonic() < deadline:
                    time.sleep(0.3)
        except Exception:  # noqa: BLE001  (tearing down regardless)
            pass
        for process in reversed(self.processes):
            if process.poll() is None:
                try:
                    os.killpg(process.pid, 15)
                except ProcessLookupError:
                    pass
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, 9)
                    process.wait()
        self.processes.clear()


@contextmanager
def slurm_cluster(root: Path, timeout: float = 60) -> Iterator[SlurmCluster]:
    """Start a one-node cluster in ``root``; ``SLURM_CONF`` is set in this process meanwhile."""
    cluster = SlurmCluster(root=Path(root), host=socket.gethostname().split(".")[0], cpus=os.cpu_count() or 1)
    previous = os.environ.get("SLURM_CONF")
    try:
        cluster.start(timeout=timeout)
        os.environ["SLURM_CONF"] = str(cluster.conf)
        yield cluster
    finally:
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
        cluster.stop()
