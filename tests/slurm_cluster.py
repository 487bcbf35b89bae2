"""A real single-node SLURM cluster on localhost for the tests (Debian's slurm-wlm and munge).

`SlurmCluster(folder).start()` writes a key, starts `munged` on its own socket, writes
`slurm.conf` (one node with this machine's CPUs and memory, `proctrack/linuxproc`, `task/none`,
`select/cons_tres`, no accounting storage; memory is gathered so a job over its memory is
killed), starts `slurmctld` and `slurmd` and waits until `sinfo` shows the node idle; `stop()`
shuts them down. The configuration goes to `/etc/slurm/slurm.conf`, where a cluster keeps it:
the executor plugin's job steps drop `SLURM_CONF` from their environment, so `srun` inside a job
finds only the default path. An existing file there that this harness did not write is left
alone (the cluster is not started).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd", "sinfo", "sbatch", "squeue", "scontrol")
CONF = Path("/etc/slurm/slurm.conf")
MARK = "# written by treganalysis tests/slurm_cluster.py"


def missing() -> list[str]:
    """What this machine lacks to run the cluster (empty when it can)."""
    found = [d for d in DAEMONS if shutil.which(d, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None]
    if os.geteuid() != 0:
        found.append("root (slurmd runs as root)")
    if CONF.exists() and MARK not in CONF.read_text(errors="replace"):
        found.append(f"a free {CONF} (one exists that these tests did not write)")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _memory_mb() -> int:
    with open("/proc/meminfo") as fh:
        total_kb = next(int(line.split()[1]) for line in fh if line.startswith("MemTotal:"))
    return total_kb // 1024


class SlurmCluster:
    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.node = socket.gethostname().split(".")[0]
        self.env = {**os.environ, "PATH": os.environ.get("PATH", "") + ":/usr/sbin:/sbin"}

    def _run(self, *args: str, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(args, capture_output=True, text=True, env=self.env, timeout=timeout, check=check)

    def start(self, timeout: float = 60.0) -> "SlurmCluster":
        f = self.folder
        for sub in ("state", "spool", "munge"):
            (f / sub).mkdir(parents=True, exist_ok=True)
        key = f / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self.socket = f / "munge" / "munge.sock"
        self._run("munged", f"--key-file={key}", f"--socket={self.socket}", f"--pid-file={f / 'munge' / 'munged.pid'}",
                  f"--log-file={f / 'munged.log'}", f"--seed-file={f / 'munge' / 'seed'}", "--force")
        CONF.parent.mkdir(parents=True, exist_ok=True)
        CONF.write_text(self.config())
        self._run("slurmctld", "-i")
        self._run("slurmd")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self._run("sinfo", "--noheader", "--format=%T", check=False).stdout.strip()
            if state == "idle":
                return self
            time.sleep(0.5)
        logs = "\n".join((f / name).read_text(errors="replace")[-2000:] for name in ("slurmctld.log", "slurmd.log")
                         if (f / name).exists())
        self.stop()
        raise RuntimeError(f"the SLURM node did not become idle within {timeout:.0f} s:\n{logs}")

    def config(self) -> str:
        f = self.folder
        memory = max(_memory_mb() - 2048, 1024)
        return f"""{MARK}
ClusterName=treganalysis-test
SlurmctldHost={self.node}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
AuthInfo=socket={self.socket}
StateSaveLocation={f / 'state'}
SlurmdSpoolDir={f / 'spool'}
SlurmctldPidFile={f / 'slurmctld.pid'}
SlurmdPidFile={f / 'slurmd.pid'}
SlurmctldLogFile={f / 'slurmctld.log'}
SlurmdLogFile={f / 'slurmd.log'}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=1
JobAcctGatherParams=OverMemoryKill
ReturnToService=2
MpiDefault=none
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory={memory} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""

    def stop(self) -> None:
        self._run("scontrol", "shutdown", check=False)
        for pidfile in ("slurmd.pid", "slurmctld.pid", "munge/munged.pid"):
            path = self.folder / pidfile
            deadline = time.monotonic() + 15
            while path.exists() and time.monotonic() < deadline:
                try:
                    os.kill(int(path.read_text().strip()), 15 if pidfile.startswith("munge") else 0)
                except (ProcessLookupError, ValueError):
                    break
                time.sleep(0.3)
        if CONF.exists() and MARK in CONF.read_text(errors="replace"):
            CONF.unlink()
