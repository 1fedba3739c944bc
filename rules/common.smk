from pathlib import Path

from snakemake.utils import validate


validate(config, schema="../workflow/schemas/config.schema.yaml")

DATASET = config["dataset"]
DATA_ROOT = f"resources/{DATASET}"
METHODS = list(config["methods"])


wildcard_constraints:
    dataset=DATASET,
    method="|".join(METHODS),
    iou_type="bbox|segm",
    split="train|val",


def get_annotation(split):
    """The LVIS-format annotation file of a split."""
    return f"{DATA_ROOT}/annotations/lvis_v1_{split}.json"


def get_model_config(wildcards):
    return config["methods"][wildcards.method]["config"]


def get_cfg_options(wildcards):
    options = config["train"]["cfg_options"]
    return "--cfg-options " + " ".join(options) if options else ""


def get_toy_args(wildcards):
    return " ".join(f"--{k.replace('_', '-')} {v}" for k, v in config["toy"].items())


def get_metrics_args(wildcards, input):
    return " ".join(f"{m}={path}" for m, path in zip(METHODS, input.metrics))


def get_final_output():
    return expand("results/{dataset}/paper_table.md", dataset=DATASET)
