"""The conda specs of the rules pin the same stack as pyproject.toml."""

from __future__ import annotations

import re
import tomllib

import yaml
from packaging.requirements import Requirement

from .conftest import REPO


def _pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {Requirement(r).name.lower(): str(Requirement(r).specifier) for r in project["dependencies"]}


def _env_pip_requirements(path) -> dict[str, str]:
    spec = yaml.safe_load(path.read_text())
    pip = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict) and "pip" in d)
    reqs = [Requirement(r) for r in pip if not r.startswith("-")]
    return {r.name.lower(): str(r.specifier) for r in reqs}


def test_every_env_matches_pyproject():
    expected = _pyproject_requirements()
    envs = sorted((REPO / "envs").glob("*.yaml"))
    assert envs
    for env in envs:
        assert _env_pip_requirements(env) == expected, env.name


def test_the_stack_is_pinned_as_designed():
    pins = _pyproject_requirements()
    assert pins["torch"] == "==2.13.0"
    assert pins["mmcv"] == "==2.1.0"  # mmdet 3.3.0 asserts mmcv < 2.2.0
    assert pins["mmengine"] == "==0.10.7"
    assert pins["mmdet"] == "==3.3.0"
    assert pins["lvis"] == "==0.5.3"
    assert re.fullmatch(r"<9\.28,>=9\.27|>=9\.27,<9\.28", pins["snakemake"])


def test_envs_use_python_311():
    for env in (REPO / "envs").glob("*.yaml"):
        deps = yaml.safe_load(env.read_text())["dependencies"]
        assert "python=3.11" in deps, env.name


def test_rules_name_an_env_that_exists():
    for rule_file in (REPO / "rules").glob("*.smk"):
        for env in re.findall(r'conda:\s*\n\s*"([^"]+)"', rule_file.read_text()):
            assert (rule_file.parent / env).resolve().is_file(), (rule_file.name, env)
