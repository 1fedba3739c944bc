"""A real SLURM cluster on this machine, for the tests: munge, slurmctld and slurmd on loopback.

One node by default.  With ``nodes=N`` it is N nodes (n1, n2, ...), each a slurmd of its own on its own
port, all on this host: Debian's slurm-wlm is built with multiple-slurmd support (``slurmd -N``).  A job
on two of them is a real two-node allocation, with SLURM's node list, task placement and step start-up;
only the network between them is loopback.

Debian's slurm-wlm and munge are installed on first use when missing (root and apt-get needed, as on CI).
The cluster's state and logs live in a temporary folder.  Its configuration has to be the system's
``/etc/slurm/slurm.conf``: the SLURM executor plugin's job step removes every ``SLURM_*`` variable
(``SLURM_CONF`` included) before it calls ``srun``.  So the file is written there, marked as the tests',
and removed afterwards; a slurm.conf that is not the tests' own is never replaced.  Every daemon this
module starts, it stops.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = ("slurm-wlm", "munge")
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
MARKER = "# written by the eqlv2 test suite (tests/slurm_cluster.py); removed when the tests stop\n"
SLURM_CONF = """\
ClusterName=eqlv2ci
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=300
MailProg=/bin/true
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd-%n.pid
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool-%n
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd-%n.log
{node_lines}
PartitionName=debug Nodes={node_names} Default=YES MaxTime=INFINITE State=UP
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ensure_packages() -> None:
    if all(shutil.which(tool) for tool in ("sbatch", "slurmctld", "slurmd", "munged")):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise RuntimeError(
            f"the SLURM test needs Debian's {' and '.join(PACKAGES)} (apt-get install, as root)"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "-q", *PACKAGES], check=True, env=env, capture_output=True)


@dataclass
class SlurmCluster:
    root: Path
    cpus: int = 2  # per node
    nodes: int = 1
    started: list[Path] = field(default_factory=list)  # pid files of the daemons this object started
    wrote_system_conf: bool = False

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.root / "slurm.conf")}

    def _run(self, *command: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(command, env=self.env, capture_output=True, text=True, **kwargs)

    def start(self) -> SlurmCluster:
        ensure_packages()
        self._start_munge()
        (self.root / "state").mkdir(parents=True, exist_ok=True)
        host = socket.gethostname().split(".")[0]
        if SYSTEM_CONF.exists() and not SYSTEM_CONF.read_text().startswith(MARKER):
            raise RuntimeError(f"{SYSTEM_CONF} exists and is not the tests' own: not replacing it")
        names = [host] if self.nodes == 1 else [f"n{i}" for i in range(1, self.nodes + 1)]
        lines = [f"NodeName={name} NodeHostname={host} NodeAddr=127.0.0.1 Port={_free_port()} "
                 f"CPUs={self.cpus} RealMemory=8000 State=UNKNOWN" for name in names]  # fmt: skip
        for name in names:
            (self.root / f"spool-{name}").mkdir(exist_ok=True)
        ports = {"ctld_port": _free_port(), "d_port": _free_port()}
        conf = MARKER + SLURM_CONF.format(host=host, root=self.root, node_lines="\n".join(lines),
                                          node_names=",".join(names), **ports)  # fmt: skip
        (self.root / "slurm.conf").write_text(conf)
        SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
        SYSTEM_CONF.write_text(conf)
        self.wrote_system_conf = True
        self._run("slurmctld", "-i", check=True)
        self.started.append(self.root / "slurmctld.pid")
        for name in names:
            self._run("slurmd", "-N", name, check=True)
            self.started.append(self.root / f"slurmd-{name}.pid")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            states = set(self._run("sinfo", "-h", "-N", "-o", "%T").stdout.split())
            if states == {"idle"}:
                return self
            if states & {"down", "drained", "down*"}:
                self._run("scontrol", "update", f"nodename={','.join(names)}", "state=resume")
            time.sleep(0.5)
        raise RuntimeError(f"SLURM nodes never became idle; see {self.root}/slurmctld.log and slurmd-*.log")

    def _start_munge(self) -> None:
        if subprocess.run(["pgrep", "-x", "munged"], capture_output=True).returncode == 0:
            return  # a munged is already running (the machine's own): use it, do not stop it
        run_dir = Path("/run/munge")
        run_dir.mkdir(parents=True, exist_ok=True)
        shutil.chown(run_dir, "munge", "munge")
        key = Path("/etc/munge/munge.key")
        if not key.exists():
            subprocess.run(["runuser", "-u", "munge", "--", "mungekey", "-c"], check=True)
        subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], check=True)
        self.started.append(run_dir / "munged.pid")

    def stop(self) -> None:
        for pid_file in reversed(self.started):
            try:
                pid = int(pid_file.read_text().split()[0])
                os.kill(pid, signal.SIGTERM)
            except (FileNotFoundError, ValueError, ProcessLookupError):
                continue
            for _ in range(50):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
        self.started.clear()
        if self.wrote_system_conf and SYSTEM_CONF.read_text().startswith(MARKER):
            SYSTEM_CONF.unlink()
            self.wrote_system_conf = False
