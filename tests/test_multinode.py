"""One training over several nodes: SLURM allocates them, one srun task per node starts torchrun, torchrun's
c10d rendezvous joins them at the first node, and the model is the one a single node would train."""

from __future__ import annotations

import re
import subprocess
from types import SimpleNamespace

import pytest
import torch
from snakemake_executor_plugin_slurm.submit_string import get_submit_command
from snakemake_executor_plugin_slurm.utils import set_gres_string

from eqlv2.checkpoint import load_checkpoint
from eqlv2.engine.multinode import LaunchError, plan_node, rendezvous_port

from .conftest import REPO
from .slurm_cluster import SlurmCluster
from .workflow_helpers import SMALL_CONFIG, env, run_snakemake, shell_command, snakemake_command, write_config

TASK = {"SLURM_JOB_ID": "4242", "SLURM_JOB_NODELIST": "gpu[07-08]", "SLURM_PROCID": "1", "SLURM_NTASKS": "2"}
NODES = {"gpu[07-08]": ["gpu07", "gpu08"]}
VERB = ["train", "lvis_v1/x.py", "--launcher", "pytorch"]


def _plan(environ=TASK, **kwargs):
    return plan_node(
        2,
        8,
        VERB,
        environ,
        hostnames=NODES.__getitem__,
        node_address=lambda node: {"gpu07": "127.0.0.1"}[node],
        **kwargs,
    )


def test_each_node_starts_torchrun_with_its_rank_and_the_first_node_as_rendezvous():
    plan = _plan()
    assert plan.command == [
        "torchrun",
        "--nnodes=2",
        "--nproc-per-node=8",
        "--rdzv-backend=c10d",
        "--rdzv-endpoint=127.0.0.1:24242",
        "--rdzv-id=4242",
        "-m",
        "eqlv2",
        *VERB,
    ]
    assert plan.head == "gpu07" and plan.env == {}  # the first node, at the address SLURM reaches it by


def test_the_port_comes_from_the_job_id_unless_given_and_the_interface_is_passed_on():
    assert rendezvous_port("4242") == 24242 and rendezvous_port("123456") == 20000 + 123456 % 20000
    assert rendezvous_port("4243") != rendezvous_port("4242")  # two jobs on one node: two ports
    plan = _plan(port=29400, socket_ifname="ib0")
    assert "--rdzv-endpoint=127.0.0.1:29400" in plan.command
    assert plan.env == {"NCCL_SOCKET_IFNAME": "ib0", "GLOO_SOCKET_IFNAME": "ib0"}


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({**TASK, "SLURM_PROCID": ""}, "SLURM_PROCID is not set: launch-node runs as a task of srun"),
        ({**TASK, "SLURM_NTASKS": "16"}, "srun started 16 tasks for 2 nodes: run one task per node"),
        ({**TASK, "SLURM_JOB_ID": "x"}, "SLURM_JOB_ID is 'x', not a job id: give the rendezvous port"),
    ],
)
def test_a_task_that_cannot_join_says_why_in_one_line(environ, message):
    with pytest.raises(LaunchError, match=re.escape(message)) as refused:
        _plan(environ)
    assert "\n" not in str(refused.value)


def test_a_rendezvous_host_that_does_not_resolve_is_named():
    with pytest.raises(
        LaunchError,
        match=r"^the rendezvous host gpu07 \(address gpu07\.invalid\) does not "
        r"resolve on [^:]+: .+",
    ):
        plan_node(2, 8, VERB, TASK, hostnames=NODES.__getitem__, node_address=lambda node: f"{node}.invalid")


def test_the_verb_refuses_a_run_outside_srun_in_one_line():
    result = subprocess.run(
        ["eqlv2", "launch-node", "--nnodes", "2", "--nproc-per-node", "1", "--", "train"],
        capture_output=True,
        text=True,
        env={**env(), "SLURM_JOB_ID": ""},
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "eqlv2 launch-node: error: SLURM_JOB_ID is not set: launch-node runs as a task of srun, one per node"
    ]


# The jobs the workflow plans (`snakemake -n -p`), and the sbatch line the SLURM plugin makes of them.


def _train_job(tmp_path, train: dict, **shared) -> tuple[str, dict]:
    tmp_path.mkdir(exist_ok=True)
    resources = {
        **SMALL_CONFIG["resources"],
        **shared,
        "train": {**SMALL_CONFIG["resources"]["train"], "threads": 32, "mem_mb": 64000, **train},
    }
    methods = {"eqlv2": SMALL_CONFIG["methods"]["eqlv2"]}
    configfile = write_config(tmp_path, resources=resources, methods=methods, openimages=None)
    plan = run_snakemake(tmp_path, configfile, "-n", "-p", "results/toy/eqlv2/model_final.pth").stdout
    job = plan[plan.index("output: results/toy/eqlv2/model_final.pth") :]
    line = re.search(r"\n    resources: ([^\n]*)", job).group(1)
    planned = {}
    for item in line.split(", "):
        key, value = item.split("=", 1)
        planned[key] = int(value) if value.isdigit() else value
    return shell_command(plan, "results/toy/eqlv2/model_final.pth"), planned


class _Resources(dict):
    __getattr__ = dict.__getitem__


def _sbatch(planned: dict, threads: int = 32) -> str:
    """The plugin's own sbatch line for a job with these resources (as its submit composes it)."""
    job = SimpleNamespace(resources=_Resources(planned), threads=threads, is_group=lambda: False)
    params = {
        "run_uuid": "run",
        "slurm_logfile": "log",
        "comment_str": "rule_train",
        "account": "",
        "partition": "",
        "workdir": None,
    }
    return " ".join((get_submit_command(job, params) + set_gres_string(job)).split())


def test_one_node_keeps_the_standalone_command_and_asks_for_gpus_or_gres(tmp_path):
    command, planned = _train_job(tmp_path / "gpus", {"gpus": 8}, gpu_model="a100")
    assert "eqlv2 doctor --require-gpu && torchrun --standalone --nproc-per-node=8 -m eqlv2 train" in command
    assert "srun" not in command and "launch-node" not in command
    assert planned["gpu"] == 8 and planned["gpu_model"] == "a100" and "nodes" not in planned
    sbatch = _sbatch(planned)
    assert "--gpus=a100:8" in sbatch and "--gres" not in sbatch and "--nodes" not in sbatch

    command, planned = _train_job(tmp_path / "gres", {"gpus": 8}, gpu_request="gres", gpu_model="a100")
    assert "torchrun --standalone --nproc-per-node=8 -m eqlv2 train" in command
    assert planned["gres"] == "gpu:a100:8" and "gpu" not in planned
    sbatch = _sbatch(planned)
    assert "--gres=gpu:a100:8" in sbatch and "--gpus" not in sbatch and "--cpus-per-task=32" in sbatch


@pytest.mark.parametrize("form", ["gpus", "gres"])
def test_two_nodes_ask_for_each_nodes_gpus_and_start_one_torchrun_per_node(tmp_path, form):
    command, planned = _train_job(
        tmp_path, {"gpus": 8, "nodes": 2}, gpu_request=form, socket_ifname="ib0", rendezvous_port=29400
    )
    assert planned["gres"] == "gpu:8" and "gpu" not in planned  # --gpus would count the job's GPUs
    assert (planned["nodes"], planned["tasks"], planned["mpi"]) == (2, 2, "srun")
    sbatch = _sbatch(planned)
    for flag in ("--nodes=2", "--ntasks=2", "--gres=gpu:8", "--cpus-per-task=32", "--mem 64000"):
        assert flag in sbatch
    assert "--ntasks-per-gpu" not in sbatch and "--gpus" not in sbatch
    assert (
        "eqlv2 doctor --require-gpu && srun --nodes=2 --ntasks=2 --ntasks-per-node=1 --cpus-per-task=32 "
        "--kill-on-bad-exit=1 --gres=gpu:8 eqlv2 launch-node --nnodes 2 --nproc-per-node 8 --port 29400 "
        "--socket-ifname ib0 -- train toy/mask-rcnn_r18_fpn_eqlv2-loss_toy.py "
    ) in command
    assert "--launcher pytorch" in command


def test_only_a_training_spans_nodes(tmp_path):
    resources = {**SMALL_CONFIG["resources"], "predict": {**SMALL_CONFIG["resources"]["predict"], "nodes": 2}}
    configfile = write_config(tmp_path, resources=resources)
    result = run_snakemake(tmp_path, configfile, "-n", "all", check=False)
    assert result.returncode != 0
    assert "resources.predict.nodes: only a training spans several nodes" in result.stdout + result.stderr


# For real: a two-node SLURM on this machine, gloo between the nodes.

ITERS = 4


def _toy_eqlv2(tmp_path, small_toy, train: dict):
    (tmp_path / "resources").mkdir(parents=True)
    (tmp_path / "resources" / "toy").symlink_to(small_toy)  # make_toy's outputs, already there
    resources = {**SMALL_CONFIG["resources"], "train": {**SMALL_CONFIG["resources"]["train"], **train}}
    return write_config(
        tmp_path,
        resources=resources,
        methods={"eqlv2": SMALL_CONFIG["methods"]["eqlv2"]},
        openimages=None,
        train={**SMALL_CONFIG["train"], "max_iters": ITERS},
    )


@pytest.fixture
def two_nodes(tmp_path_factory):
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"), cpus=1, nodes=2).start()
    yield cluster
    cluster.stop()


@pytest.mark.slow
def test_two_nodes_of_one_process_train_the_model_of_one_node_of_two(two_nodes, tmp_path, small_toy):
    target = "results/toy/eqlv2/model_final.pth"
    one_node = tmp_path / "one_node"
    run_snakemake(one_node, _toy_eqlv2(one_node, small_toy, {"processes": 2}), "--cores", "2", target)

    two = tmp_path / "two_nodes"
    configfile = _toy_eqlv2(two, small_toy, {"processes": 1, "nodes": 2, "threads": 1, "mem_mb": 2000})
    command = snakemake_command(
        two,
        configfile,
        "--profile",
        "slurm",
        "--verbose",
        "--jobs",
        "1",
        "--slurm-status-command",
        "squeue",
        "--slurm-init-seconds-before-status-checks",
        "2",
        "--slurm-keep-successful-logs",
        target,
    )
    result = subprocess.run(
        command,
        cwd=REPO,
        env={**env(), "SLURM_CONF": two_nodes.env["SLURM_CONF"]},
        capture_output=True,
        text=True,
        timeout=1200,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    sbatch = re.search(r"sbatch call: ([^\n]*rule_train[^\n]*)", output).group(1)
    assert "--nodes=2" in sbatch and "--ntasks=2" in sbatch and "--cpus-per-task=1" in sbatch
    log = (two / "logs/toy/eqlv2/train.log").read_text()
    start = r"eqlv2 launch-node: node (\d) of 2 on \S+, rendezvous at n1 \(127\.0\.0\.1:(\d+)\)"
    starts = sorted(re.findall(start, log))
    assert [rank for rank, _ in starts] == ["0", "1"] and starts[0][1] == starts[1][1]

    # The same model, EQLv2's statistics (buffers of the loss) and classifier gradients included.
    mine, theirs = (load_checkpoint(root / target)["state_dict"] for root in (two, one_node))
    assert mine.keys() == theirs.keys() and "roi_head.bbox_head.loss_cls.pos_grad" in mine
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert mine["roi_head.bbox_head.loss_cls.pos_grad"].sum() > 0
    gradients = [
        torch.load(root / "results/toy/eqlv2/train/classifier_gradients.pt", weights_only=True)
        for root in (two, one_node)
    ]
    assert torch.equal(gradients[0]["pos_grad"], gradients[1]["pos_grad"])
    assert torch.equal(gradients[0]["neg_grad"], gradients[1]["neg_grad"])


def test_the_lvis_v1_reproduction_on_two_nodes_is_one_command_line_override(tmp_path):
    """`snakemake --profile slurm all --config 'resources={train: {nodes: 2}}'`: the paper's 8 GPUs a node,
    on two nodes; the rest of the training section is config/lvis_v1.yaml's."""
    plan = run_snakemake(
        tmp_path,
        REPO / "config" / "lvis_v1.yaml",
        "-n",
        "-p",
        "results/lvis_v1/eqlv2/model_final.pth",
        "--config",
        "resources={train: {nodes: 2}}",
    ).stdout
    command = shell_command(plan, "results/lvis_v1/eqlv2/model_final.pth")
    assert (
        "srun --nodes=2 --ntasks=2 --ntasks-per-node=1 --cpus-per-task=32 --kill-on-bad-exit=1 --gres=gpu:8"
        in command
    )
    assert (
        "eqlv2 launch-node --nnodes 2 --nproc-per-node 8 -- train lvis_v1/mask-rcnn_r50_fpn_eqlv2-loss"
        in command
    )
