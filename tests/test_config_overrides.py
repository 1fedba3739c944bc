"""Command-line overrides (``--config``): numerals where the schema asks for numbers are taken as numbers.

Snakemake reads ``--config key=value`` as an int, a float or a string, but the items of a list or a mapping
(``seeds=[0,1,2]``, ``resources={train: {gpus: 2}}``) through YAML's base loader, as strings only.
"""

from __future__ import annotations

import re

import pytest
import yaml
from snakemake.utils import update_config

from eqlv2.schema import ConfigError, check_config, coerce_overrides

from .conftest import REPO
from .workflow_helpers import run_snakemake, shell_command

SCHEMA_PATH = REPO / "workflow" / "schemas" / "config.schema.yaml"
SCHEMA = yaml.safe_load(SCHEMA_PATH.read_text())
DEFAULT = REPO / "config" / "config.yaml"
PAPER_METHODS = 8  # the embedded default's LVIS rows


def _checked(overrides: dict) -> dict:
    """The embedded default with the coerced overrides merged in as Snakemake merges --config (section
    by section, key by key), then checked."""
    config = yaml.safe_load(DEFAULT.read_text())
    update_config(config, coerce_overrides(overrides, SCHEMA))
    check_config(config, SCHEMA_PATH, ["--config"])
    return config


def test_a_list_of_numerals_under_integer_items_becomes_integers():
    assert coerce_overrides({"seeds": ["0", "1", "2"]}, SCHEMA) == {"seeds": [0, 1, 2]}
    assert _checked({"seeds": ["0", "1", "2"]})["seeds"] == [0, 1, 2]
    # The schema may be given as its file, as rules/common.smk does.
    assert coerce_overrides({"seeds": ["3", "+4"]}, SCHEMA_PATH) == {"seeds": [3, 4]}


def test_nested_resources_through_a_ref_become_integers():
    overrides = {"resources": {"train": {"gpus": "2", "threads": "8", "mem_mb": "64000", "runtime": "2880"}}}
    coerced = coerce_overrides(overrides, SCHEMA)
    assert coerced == {"resources": {"train": {"gpus": 2, "threads": 8, "mem_mb": 64000, "runtime": 2880}}}
    assert _checked(overrides)["resources"]["train"]["processes"] == 1  # the rest of the section kept
    assert coerce_overrides({"toy": {"seed": "3"}, "evaluation": {"bootstrap": "200"}}, SCHEMA) == {
        "toy": {"seed": 3}, "evaluation": {"bootstrap": 200}}  # fmt: skip


def test_integer_or_null_boolean_and_null_strings_of_the_base_loader():
    train = {"max_iters": "100", "deterministic": "true", "amp": "False"}
    coerced = coerce_overrides({"train": train}, SCHEMA)
    assert coerced == {"train": {"max_iters": 100, "deterministic": True, "amp": False}}
    assert coerce_overrides({"train": {"max_iters": "null"}}, SCHEMA) == {"train": {"max_iters": None}}


def test_numbers_booleans_and_null_already_typed_are_untouched():
    overrides = {"seeds": [0, 1], "train": {"deterministic": True, "amp": False, "max_iters": None},
                 "resources": {"train": {"gpus": 0}}}  # fmt: skip
    coerced = coerce_overrides(overrides, SCHEMA)
    assert coerced == overrides
    assert coerced["train"]["deterministic"] is True and coerced["resources"]["train"]["gpus"] == 0
    assert coerce_overrides({"dataset": None}, SCHEMA) == {"dataset": None}


def test_a_key_that_takes_strings_keeps_a_numeral():
    overrides = {"dataset": "2024", "train": {"cfg_options": ["a=1", "7"]},
                 "lvis": {"coco_dir": "null", "mirrors": {"x.zip": "42"}},
                 "methods": {"baseline": {"config": "1"}}}  # fmt: skip
    assert coerce_overrides(overrides, SCHEMA) == overrides


def test_an_integer_key_only_takes_integer_numerals():
    coerced = coerce_overrides({"seeds": ["2.0", "1e3", "0x10", "1_000", " 2", "inf"]}, SCHEMA)
    assert coerced == {"seeds": ["2.0", "1e3", "0x10", "1_000", " 2", "inf"]}


def test_a_number_key_takes_decimal_and_exponent_numerals():
    properties = {"rate": {"type": "number"}, "n": {"type": ["number", "null"]},
                  "pair": {"type": "array", "prefixItems": [{"type": "number"}]}}  # fmt: skip
    schema = {"type": "object", "properties": properties}
    coerced = coerce_overrides({"rate": "0.5", "n": "1e-4", "pair": ["-.5", "x"], "other": "3"}, schema)
    assert coerced == {"rate": 0.5, "n": 1e-4, "pair": [-0.5, "x"], "other": "3"}
    assert isinstance(coerce_overrides({"rate": "2"}, schema)["rate"], int)
    assert coerce_overrides({"rate": "nan"}, schema) == {"rate": "nan"}


def test_a_non_numeral_is_left_for_the_check_which_names_its_key():
    assert coerce_overrides({"seeds": ["0", "x"]}, SCHEMA) == {"seeds": [0, "x"]}
    refused = r"--config does not match .*: seeds\.1: 'x' is not of type 'integer'$"
    with pytest.raises(ConfigError, match=refused):
        _checked({"seeds": ["0", "x"]})
    with pytest.raises(ConfigError, match=r"resources\.train\.gpus: 'two' is not of type 'integer'"):
        _checked({"resources": {"train": {"gpus": "two"}}})
    # Unknown keys are no business of the coercion: the check refuses them.
    assert coerce_overrides({"bogus": {"gpus": "2"}}, SCHEMA) == {"bogus": {"gpus": "2"}}


# The workflow: `snakemake -n` on the embedded default, with --config as a user types it.


def _dry_run(tmp_path, *config: str, check: bool = True):
    # The target before --config, whose values would take it as one more (as --configfile would).
    return run_snakemake(tmp_path, DEFAULT, "-n", "-p", "all", "--config", *config, check=check)


def test_seeds_given_on_the_command_line_plan_three_runs_a_method(tmp_path):
    plan = _dry_run(tmp_path, "seeds=[0,1,2]").stdout
    assert len(re.findall(r"^rule train:$", plan, re.M)) == 3 * PAPER_METHODS
    train = shell_command(plan, "results/toy/crt/seed2/model_final.pth")
    assert " --seed 2" in train and "--load-from results/toy/baseline/seed2/surgery/" in train


def test_resources_given_on_the_command_line_reach_the_jobs(tmp_path):
    plan = _dry_run(tmp_path, "resources={train: {gpus: 2, mem_mb: 4000}}", "train={max_iters: 100}").stdout
    train = shell_command(plan, "results/toy/baseline/model_final.pth")
    assert "torchrun --standalone --nproc-per-node=2 -m eqlv2 train" in train and "--max-iters 100" in train
    job = plan[plan.index("output: results/toy/baseline/model_final.pth") :]
    assert re.search(r"resources: [^\n]*\bgpu=2, [^\n]*mem_mb=4000\b", job[: job.index("Shell command")])
    predict = shell_command(plan, "results/toy/baseline/predictions.segm.json")
    assert "torchrun" not in predict  # the other sections keep the embedded default's values


def test_a_non_numeral_seed_stops_the_run_with_one_line_naming_seeds(tmp_path):
    result = _dry_run(tmp_path, "seeds=[0,x]", check=False)
    assert result.returncode != 0
    lines = [line for line in (result.stdout + result.stderr).splitlines() if "is not of type" in line]
    assert len(lines) == 1, result.stdout + result.stderr
    assert lines[0].endswith(f"--config does not match {SCHEMA_PATH}: seeds.1: 'x' is not of type 'integer'")
