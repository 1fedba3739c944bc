"""``eqlv2 launch-node``: start this node's torchrun for a training spanning several SLURM nodes.

The work is :func:`eqlv2.engine.multinode.launch_node`; the workflow's training rule runs it as
``srun --nodes=N --ntasks=N --ntasks-per-node=1 eqlv2 launch-node --nnodes N ... -- train ...``.
"""

from __future__ import annotations

import argparse

from eqlv2.engine.multinode import launch_node


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "launch-node",
        help="start this node's torchrun of a multi-node training (one srun task per node)",
        description=(
            "Run as one srun task per node of a SLURM allocation: starts torchrun for this node's "
            "processes, with --nnodes and a c10d rendezvous at the allocation's first node (which gives "
            "each node its rank), on a port derived from the job id unless --port is given.  "
            "Everything after -- is the eqlv2 verb each process runs.\n\nExample:\n"
            "  srun --nodes=2 --ntasks=2 --ntasks-per-node=1 eqlv2 launch-node --nnodes 2 "
            "--nproc-per-node 8 -- train lvis_v1/mask-rcnn_r50_fpn_eqlv2-loss_ms-1x_lvis-v1.py ... "
            "--launcher pytorch"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--nnodes", type=int, required=True, help="nodes of the training (srun tasks)")
    p.add_argument("--nproc-per-node", type=int, required=True, help="processes on each node")
    p.add_argument("--port", type=int, help="rendezvous port (default: derived from SLURM_JOB_ID)")
    p.add_argument("--socket-ifname", help="network interface for NCCL and gloo (e.g. ib0)")
    p.add_argument(
        "run", nargs=argparse.REMAINDER, metavar="-- VERB", help="the eqlv2 verb each process runs"
    )
    p.set_defaults(func=command, verb="launch-node")


def command(args: argparse.Namespace) -> None:
    verb = args.run[1:] if args.run[:1] == ["--"] else args.run
    if not verb:
        raise ValueError("no verb to run: give it after --, e.g. -- train CONFIG ...")
    launch_node(args.nnodes, args.nproc_per_node, verb, args.port, args.socket_ifname)
