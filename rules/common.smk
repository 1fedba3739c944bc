import re
import shlex
from pathlib import Path

from snakemake.utils import update_config

from eqlv2.data.manifest import original_checkpoint_name
from eqlv2.methods import configured_methods, get_openimages_method
from eqlv2.schema import ConfigError, check_config, coerce_overrides

SCHEMA = Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"
# --config (or a profile's config:) hands the items of a list or a mapping over as strings
# (seeds=[0,1,2] gives ['0', '1', '2']): those the schema types as numbers, booleans or null are
# converted, and the rest is left for the check, which names the key of a value still wrong.
COMMAND_LINE = dict(workflow.config_settings.config)
update_config(config, coerce_overrides(COMMAND_LINE, SCHEMA))
check_config(
    config, SCHEMA, [*workflow.configfiles, *(["--config"] if COMMAND_LINE else [])]
)
# The rows of the paper table: the known methods and those of one's own (a key with a name).
try:
    METHOD_ROWS = configured_methods(config.get("methods", {}))
except ValueError as err:
    raise ConfigError(f"{', '.join(map(str, workflow.configfiles))}: {err}") from None

DATASET = config["dataset"]
# LVIS downloaded (v1, or v0.5 with its 1230 classes) rather than generated; the toy writes v1's names.
LVIS_DOWNLOADED = config["source"] in ("lvis_v1", "lvis_v0.5")
LVIS_VERSION = "v0.5" if config["source"] == "lvis_v0.5" else "v1"
DATA_ROOT = f"resources/{DATASET}"
METHODS = list(METHOD_ROWS)
# Every method trains once per seed.  One seed keeps the paths results/<dataset>/<method>/...; several
# put each run under results/<dataset>/<method>/seed<k>/, and the run key <method>/seed<k> is what the
# {method} wildcard of the training, inference and evaluation rules matches.
SEEDS = config["seeds"]
_SEED_SUFFIX = re.compile(r"[/]seed(\d+)$")  # (a bracket: not a path to the linter)


def runs_of(method):
    """The run keys of a method: itself for one seed, <method>/seed<k> for each of several."""
    return [method] if len(SEEDS) == 1 else [f"{method}/seed{seed}" for seed in SEEDS]


def method_of(run):
    """The configured method of a run key (a published checkpoint, published/<method>, is its method's)."""
    return _SEED_SUFFIX.sub("", run.removeprefix("published/"))


def seed_of(run):
    """The training seed of a run key."""
    return SEEDS[0] if len(SEEDS) == 1 else int(_SEED_SUFFIX.search(run).group(1))


RUNS = [run for method in METHODS for run in runs_of(method)]
# The curves of EQLv2's Fig. 1: the baseline against EQL and EQLv2, those of them the config trains.
GRADIENT_METHODS = [m for m in ("baseline", "eql", "eqlv2") if m in METHODS]
GRADIENT_RUNS = [run for method in GRADIENT_METHODS for run in runs_of(method)]
PUBLISHED = list(config.get("published", {}))  # the original's checkpoints to evaluate
OPENIMAGES = config.get("openimages", {})
OI_METHODS = list(OPENIMAGES.get("methods", {}))
# The OpenImages data: the toy's twin beside its LVIS files, or the whole dataset folder.
OI_ROOT = f"{DATA_ROOT}/openimages" if config["source"] == "toy" else DATA_ROOT
OI_SPLITS = ("train", "validation")
# The Challenge 2019 files, as the manifest names them, and the twin's names for the same files.
OI_FILES = {
    "classes": ("challenge-2019-classes-description-500.csv", "classes.csv"),
    "hierarchy": ("challenge-2019-label500-hierarchy.json", "hierarchy.json"),
    "train_boxes": ("challenge-2019-train-detection-bbox.csv", "train-bbox.csv"),
    "train_labels": (
        "challenge-2019-train-detection-human-imagelabels.csv",
        "train-image-labels.csv",
    ),
    "validation_boxes": (
        "challenge-2019-validation-detection-bbox.csv",
        "validation-bbox.csv",
    ),
    "validation_labels": (
        "challenge-2019-validation-detection-human-imagelabels.csv",
        "validation-image-labels.csv",
    ),
}


def one_of(names):
    """A wildcard constraint matching exactly these names (nothing at all for none: a branch left out)."""
    return "|".join(names) or "(?!)"


wildcard_constraints:
    dataset=DATASET,
    method=one_of(RUNS + [f"published/{m}" for m in PUBLISHED]),
    oi_method=one_of(OI_METHODS),
    oi_split="|".join(OI_SPLITS),
    iou_type="bbox|segm",
    surgery="remove|reset",
    split="train|val",


def get_annotation(split):
    """The LVIS-format annotation file of a split (as the LVIS archives name it)."""
    return f"{DATA_ROOT}/annotations/lvis_{LVIS_VERSION}_{split}.json"


def get_data_root(wildcards, input):
    """The dataset folder: two levels above an annotation file (<root>/annotations/<file>)."""
    return str(Path(input.ann).parents[1])


def get_toy_dir(wildcards, output):
    """Where `eqlv2 make-toy` writes: the dataset folder of its annotation outputs."""
    return str(Path(output.train).parents[1])


def get_images(split):
    """The image folder of a split, where a rule (rather than make-toy) provides it."""
    return [f"{DATA_ROOT}/{split}2017"] if LVIS_DOWNLOADED else []


def get_backbone_weights():
    """ImageNet weights the LVIS configs start from, downloaded so compute nodes need no internet."""
    return ["resources/downloads/resnet50-0676ba61.pth"] if LVIS_DOWNLOADED else []


def get_download_source(wildcards):
    """`--url` for a manifest file the config points at an existing copy or a mirror, and `--sha256`
    for a file whose hash the config gives (lvis.sha256: the LVIS v0.5 archives; a published
    checkpoint's sha256).  A null hash passes nothing, and `eqlv2 download` stops naming the key.
    """
    mirrors = {
        **config.get("lvis", {}).get("mirrors", {}),
        **OPENIMAGES.get("mirrors", {}),
    }
    args = []
    sha256 = config.get("lvis", {}).get("sha256", {}).get(wildcards.name)
    if sha256:
        args.append(f"--sha256 {sha256}")
    for method, spec in config.get("published", {}).items():
        if wildcards.name == original_checkpoint_name(method):
            if spec.get("url"):
                mirrors[wildcards.name] = spec["url"]
            if spec["sha256"]:
                args.append(f"--sha256 {spec['sha256']}")
    if wildcards.name in mirrors:
        args.insert(0, f"--url {mirrors[wildcards.name]}")
    return " ".join(args)


def get_coco_archive(wildcards):
    """The COCO image zip to unpack, unless the config links an existing COCO folder."""
    if config["lvis"]["coco_dir"]:
        return []
    return f"resources/downloads/{wildcards.split}2017.zip"


def get_coco_images_command(wildcards, input, output):
    """Link <coco_dir>/<split>2017, or unpack the downloaded zip (which holds <split>2017/)."""
    if config["lvis"]["coco_dir"]:
        source = Path(config["lvis"]["coco_dir"]).resolve() / f"{wildcards.split}2017"
        return f"ln -sfn {source} {output[0]}"
    return f"eqlv2 unpack {input[0]} --dest {Path(output[0]).parent}"


def get_train_input(wildcards):
    """Annotations, images and backbone weights, and for a decoupled method its surgery checkpoint."""
    inputs = {
        "ann": get_annotation("train"),
        "images": get_images("train"),
        "backbone": get_backbone_weights(),
    }
    method = method_of(wildcards.method)
    init = config["methods"][method].get("init")
    if init:  # the run of the same seed of the method it starts from
        seed_suffix = wildcards.method.removeprefix(method)
        inputs["init"] = (
            f"results/{wildcards.dataset}/{init['from']}{seed_suffix}/surgery/"
            f"model_reset_{init['surgery']}.pth"
        )
    return inputs


def get_output_dir(wildcards, output):
    """The folder of a rule's (single) output file."""
    return str(Path(output[0]).parent)


def get_model_config(wildcards):
    """A method's config; a published checkpoint (published/<method>) is evaluated with its method's.

    A relative path that is no file in the working directory is taken from the repository's root, so
    that a config under examples/ is found by a run in another --directory too; anything else is passed
    on as given (a name under src/eqlv2/configs/, which `eqlv2` resolves).
    """
    name = config["methods"][method_of(wildcards.method)]["config"]
    in_repository = Path(workflow.basedir) / name
    if not Path(name).is_file() and in_repository.is_file():
        return str(in_repository)
    return name


def get_train_args(wildcards, input):
    """`eqlv2 train` arguments: the run's seed, initial weights and the config's train section (an
    OpenImages method trains once, with the first seed)."""
    args = [f"--load-from {input.init}"] if "init" in input.keys() else []
    run = wildcards.method if "method" in wildcards.keys() else None
    args.append(f"--seed {SEEDS[0] if run is None else seed_of(run)}")
    if config["train"]["deterministic"]:
        args.append("--deterministic")
    if config["train"]["max_iters"] is not None:
        args.append(f"--max-iters {config['train']['max_iters']}")
    if config["train"]["amp"]:
        args.append("--amp")
    if config["train"]["cfg_options"]:
        args.append("--cfg-options " + " ".join(config["train"]["cfg_options"]))
    return " ".join(args)


def get_toy_args(wildcards):
    return " ".join(f"--{k.replace('_', '-')} {v}" for k, v in config["toy"].items())


def get_per_method_args(paths, runs=None):
    """`METHOD=PATH` for each run's file (runs: RUNS, in their order); a method trained with several
    seeds is named once per seed, which the table and the plots read as one method's seeds.
    """
    return " ".join(
        f"{method_of(run)}={path}" for run, path in zip(runs or RUNS, paths, strict=True)
    )


def get_metrics_args(wildcards, input):
    return get_per_method_args(input.metrics)


def get_own_methods_args(wildcards):
    """`eqlv2 table` arguments for the methods of one's own: their row labels, and which are decoupled."""
    own = [method for method in METHOD_ROWS.values() if method.own]
    args = []
    if own:
        args.append("--own " + " ".join(shlex.quote(f"{m.key}={m.name}") for m in own))
    decoupled = [m.key for m in own if not m.end2end]
    if decoupled:
        args.append("--decoupled " + " ".join(decoupled))
    return " ".join(args)


def get_resource(job, name):
    """One entry of the config's resources section, for a rule's threads/resources."""
    return config["resources"][job][name]


def get_job_resources(job):
    """What a job asks the executor for: its GPUs in the configured form (the plugin's gpu resource,
    sbatch --gpus; or gres, --gres=gpu[:model]:N per node), memory and wall time.  A training over
    several nodes also asks for its nodes with one task on each, and sets the plugin's `mpi` resource:
    the job step then runs the command as it is, instead of inside `srun -n1`, so that the command's own
    srun starts one task per node (get_launch).
    """
    spec, shared = config["resources"][job], config["resources"]
    gpus, nodes, model = spec["gpus"], spec["nodes"], shared["gpu_model"]
    resources = {}
    if gpus and (nodes > 1 or shared["gpu_request"] == "gres"):
        resources["gres"] = ":".join(["gpu", *([model] if model else []), str(gpus)])
    else:
        resources["gpu"] = gpus
        if gpus and model:
            resources["gpu_model"] = model
    resources.update(mem_mb=spec["mem_mb"], runtime=spec["runtime"])
    if nodes > 1:
        # tasks_per_gpu 0: the plugin would otherwise turn `tasks` into --ntasks-per-gpu
        resources.update(nodes=nodes, tasks=nodes, tasks_per_gpu=0, mpi="srun")
    return resources


def get_launch(job):
    """How a job's `eqlv2` command starts: a plain process, or torchrun with one process per GPU
    (or per CPU worker when gpus is 0), each told to join the process group (--launcher pytorch).
    Over several nodes: one srun task per node, each starting that node's torchrun through
    `eqlv2 launch-node` (a c10d rendezvous at the allocation's first node).
    """
    spec, shared = config["resources"][job], config["resources"]
    nproc, nodes = spec["gpus"] or spec["processes"], spec["nodes"]
    if nodes > 1:
        step = [f"--nodes={nodes}", f"--ntasks={nodes}", "--ntasks-per-node=1",
                f"--cpus-per-task={spec['threads']}", "--kill-on-bad-exit=1"]  # fmt: skip
        if spec["gpus"]:
            step.append(f"--gres={get_job_resources(job)['gres']}")
        node = [f"--nnodes {nodes}", f"--nproc-per-node {nproc}"]
        if shared["rendezvous_port"] is not None:
            node.append(f"--port {shared['rendezvous_port']}")
        if shared["socket_ifname"] is not None:
            node.append(f"--socket-ifname {shlex.quote(shared['socket_ifname'])}")
        return f"srun {' '.join(step)} eqlv2 launch-node {' '.join(node)} --"
    if nproc == 1:
        return "eqlv2"
    return f"torchrun --standalone --nproc-per-node={nproc} -m eqlv2"


def get_launcher_flag(job):
    spec = config["resources"][job]
    processes = (spec["gpus"] or spec["processes"]) * spec["nodes"]
    return "--launcher pytorch" if processes > 1 else ""


def get_openimages_file(kind):
    """A Challenge 2019 file (downloaded) or its twin in the toy (written by make-toy)."""
    official, twin = OI_FILES[kind]
    if config["source"] == "toy":
        return f"{OI_ROOT}/{twin}"
    return f"resources/downloads/{official}"


def get_openimages_images(split):
    """The linked image folder of a split (real data); the toy's are made with its annotations."""
    return [f"{OI_ROOT}/images/{split}"] if config["source"] == "openimages" else []


def get_openimages_split_input(wildcards):
    """What `eqlv2 convert-openimages` reads for a split: its box and label files, the classes, the images."""
    split = wildcards.oi_split
    inputs = {
        "boxes": get_openimages_file(f"{split}_boxes"),
        "labels": get_openimages_file(f"{split}_labels"),
        "classes": get_openimages_file("classes"),
    }
    inputs["images"] = get_openimages_images(split)
    return inputs


def get_openimages_images_source(wildcards):
    """The split's folder in the existing OpenImages copy the config names (openimages.images_dir)."""
    return str(Path(OPENIMAGES["images_dir"]).resolve() / wildcards.oi_split)


def get_openimages_images_dir(wildcards):
    return f"{OI_ROOT}/images/{wildcards.oi_split}"


def get_openimages_train_input(wildcards):
    """The converted training JSON and, for the real data, the backbone's ImageNet weights."""
    inputs = {"ann": f"{OI_ROOT}/annotations/train.json"}
    inputs["images"] = get_openimages_images("train")
    if config["source"] == "openimages":
        weights = get_openimages_method(wildcards.oi_method).backbone_weights
        if weights:
            inputs["backbone"] = f"resources/downloads/{weights}"
    return inputs


def get_openimages_model_config(wildcards):
    return OPENIMAGES["methods"][wildcards.oi_method]["config"]


def get_grouped_ap_counts(wildcards, input):
    """Classes are grouped by training instances: the shipped table of the 500 Challenge classes, or the
    training JSON of any other data."""
    if config["source"] == "openimages":
        return "--groups-table"
    return f"--train-ann {input.train_ann}"


def get_openimages_reports_args(wildcards, input):
    return " ".join(f"{m}={path}" for m, path in zip(OI_METHODS, input.reports))


def get_published_checkpoint(wildcards):
    return f"resources/downloads/{original_checkpoint_name(wildcards.method)}"


def get_published_metrics_args(wildcards, input):
    return " ".join(f"{m}={path}" for m, path in zip(PUBLISHED, input.metrics))


def get_final_output():
    """The paper table, per-class CSV and plots of the LVIS branch and, where the config has it, the
    OpenImages table and plot."""
    outputs = []
    plots = f"results/{DATASET}/plots"
    if METHODS:
        outputs.append(f"results/{DATASET}/paper_table.md")
        outputs.append(f"results/{DATASET}/per_class_ap.csv")
        outputs += [
            f"{plots}/{name}.png"
            for name in ("ap_vs_frequency", "group_ap", "loss_curves")
        ]
    if GRADIENT_METHODS:
        outputs.append(f"{plots}/gradient_ratio.png")
    if OI_METHODS:
        outputs.append(f"results/{DATASET}/openimages_table.md")
        outputs.append(f"{plots}/openimages_groups.png")
    return outputs


def get_doctor(job):
    """A GPU job first runs `eqlv2 doctor --require-gpu`, so an install whose mmcv has no CUDA operators
    for the node's cards (or a job given no GPU) fails in seconds, saying why, not after data loading.
    """
    if config["resources"][job]["gpus"] > 0:
        return "eqlv2 doctor --require-gpu && "
    return ""
