"""One node's part of a training that spans several SLURM nodes: torchrun, joined at the first node.

A multi-node training job is one SLURM allocation of N nodes running ``srun --nodes=N --ntasks=N
--ntasks-per-node=1 eqlv2 launch-node ...``: one task per node, each starting torchrun for that node's
processes.  The torchruns meet through torchrun's c10d rendezvous, and that is where runs are lost:

- the rendezvous host must be the allocation's first node, named the same way on every node: here the
  first of ``scontrol show hostnames $SLURM_JOB_NODELIST``, reached at the address SLURM itself uses
  for it (its ``NodeAddr``), never the submit host (``SLURM_LAUNCH_NODE_IPADDR``) nor ``hostname -i``
  (loopback on many images);
- every node must use the same port, and two jobs sharing a node must not: the port is derived from
  the job id unless given (a killed run leaves its port in TIME_WAIT, so a retry, which gets a new job
  id, gets another port);
- one task per node, which is checked: two torchruns on one node would both take its GPUs from 0.  No
  ``--node-rank`` is passed: c10d's rendezvous gives each node its rank as it joins (torchrun ignores
  the option for it, with a warning), which needs no agreement between SLURM's task ids and the nodes.

``NCCL_SOCKET_IFNAME`` and ``GLOO_SOCKET_IFNAME`` choose the network interface on clusters whose first
interface is not the one between nodes (InfiniBand's IPoIB, ``ib0``); they are exported when given.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

PORT_BASE = 20000
PORT_SPAN = (
    20000  # ports 20000-39999: above the privileged and registered-service range torchrun's 29500 sits in
)


class LaunchError(ValueError):
    """This node cannot join the training; the message says why in one line."""


@dataclass(frozen=True)
class NodeLaunch:
    """What this node runs: torchrun's arguments and the variables it adds to the environment."""

    command: list[str]
    env: dict[str, str]
    head: str
    address: str
    port: int


def rendezvous_port(job_id: str, port: int | None = None) -> int:
    """The given port, or one derived from the SLURM job id: the same on every node of a job."""
    if port is not None:
        return port
    if not job_id.isdigit():
        raise LaunchError(f"SLURM_JOB_ID is {job_id!r}, not a job id: give the rendezvous port")
    return PORT_BASE + int(job_id) % PORT_SPAN


def _scontrol(*args: str) -> str:
    try:
        return subprocess.run(["scontrol", *args], capture_output=True, text=True, check=True).stdout
    except FileNotFoundError as err:
        raise LaunchError("scontrol is not on PATH: launch-node runs inside a SLURM allocation") from err
    except subprocess.CalledProcessError as err:
        raise LaunchError(f"scontrol {' '.join(args)} failed: {err.stderr.strip()}") from err


def slurm_hostnames(nodelist: str) -> list[str]:
    """The allocation's nodes in SLURM's order (``scontrol show hostnames``)."""
    return _scontrol("show", "hostnames", nodelist).split()


def slurm_node_address(node: str) -> str:
    """The address SLURM reaches ``node`` at (its ``NodeAddr``; the node's name where SLURM has none)."""
    for field in _scontrol("show", "node", "--oneliner", node).split():
        if field.startswith("NodeAddr="):
            return field.split("=", 1)[1] or node
    return node


def _resolves(address: str) -> str | None:
    """None when ``address`` resolves, else the resolver's reason."""
    try:
        socket.getaddrinfo(address, None)
    except OSError as err:
        return str(err)
    return None


def plan_node(
    nnodes: int,
    nproc_per_node: int,
    verb: Sequence[str],
    environ: Mapping[str, str],
    port: int | None = None,
    socket_ifname: str | None = None,
    hostnames: Callable[[str], list[str]] = slurm_hostnames,
    node_address: Callable[[str], str] = slurm_node_address,
) -> NodeLaunch:
    """This node's torchrun command, from the SLURM task's environment.

    Args:
        nnodes: Nodes of the training, one SLURM task on each.
        nproc_per_node: Processes torchrun starts on this node (its GPUs, or CPU workers).
        verb: The ``eqlv2`` verb and its arguments each process runs (``train ...``).
        environ: The task's environment (``SLURM_JOB_ID``, ``SLURM_JOB_NODELIST``, ``SLURM_PROCID``,
            ``SLURM_NTASKS``).
        port: The rendezvous port; None derives it from the job id.
        socket_ifname: The network interface NCCL and gloo use; None leaves their own choice.
    """
    missing = [
        k
        for k in ("SLURM_JOB_ID", "SLURM_JOB_NODELIST", "SLURM_PROCID", "SLURM_NTASKS")
        if not environ.get(k)
    ]
    if missing:
        raise LaunchError(f"{missing[0]} is not set: launch-node runs as a task of srun, one per node")
    tasks = int(environ["SLURM_NTASKS"])
    if tasks != nnodes:
        raise LaunchError(
            f"srun started {tasks} tasks for {nnodes} nodes: run one task per node "
            f"(srun --nodes={nnodes} --ntasks={nnodes} --ntasks-per-node=1)"
        )
    nodes = hostnames(environ["SLURM_JOB_NODELIST"])
    if not nodes:
        raise LaunchError(f"SLURM_JOB_NODELIST {environ['SLURM_JOB_NODELIST']!r} names no node")
    head = nodes[0]
    address = node_address(head)
    if (reason := _resolves(address)) is not None:
        raise LaunchError(
            f"the rendezvous host {head} (address {address}) does not resolve on "
            f"{socket.gethostname()}: {reason}"
        )
    chosen = rendezvous_port(environ["SLURM_JOB_ID"], port)
    command = [
        "torchrun",
        f"--nnodes={nnodes}",
        f"--nproc-per-node={nproc_per_node}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={address}:{chosen}",
        f"--rdzv-id={environ['SLURM_JOB_ID']}",
        "-m",
        "eqlv2",
        *verb,
    ]
    env = {"NCCL_SOCKET_IFNAME": socket_ifname, "GLOO_SOCKET_IFNAME": socket_ifname} if socket_ifname else {}
    return NodeLaunch(command=command, env=env, head=head, address=address, port=chosen)


def launch_node(
    nnodes: int,
    nproc_per_node: int,
    verb: Sequence[str],
    port: int | None = None,
    socket_ifname: str | None = None,
) -> None:
    """Replace this process by the node's torchrun (signals from SLURM then reach torchrun itself)."""
    plan = plan_node(nnodes, nproc_per_node, verb, os.environ, port, socket_ifname)
    rank = os.environ["SLURM_PROCID"]
    print(
        f"eqlv2 launch-node: node {rank} of {nnodes} on {socket.gethostname()}, rendezvous at "
        f"{plan.head} ({plan.address}:{plan.port}): {' '.join(plan.command)}",
        file=sys.stderr,
        flush=True,
    )
    os.execvpe(plan.command[0], plan.command, {**os.environ, **plan.env})
