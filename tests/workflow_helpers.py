"""Running the workflow from tests: a private working directory per test, the real Snakefile."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from .conftest import REPO

SMALL_CONFIG = yaml.safe_load((REPO / ".test" / "config_small" / "config.yaml").read_text())


def write_config(workdir: Path, **overrides) -> Path:
    """The CI setting of the embedded default, with top-level sections replaced by ``overrides`` (a
    section overridden with None is left out, e.g. ``openimages=None`` for the LVIS branch alone)."""
    config = {key: value for key, value in {**SMALL_CONFIG, **overrides}.items() if value is not None}
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def snakemake_command(workdir: Path, configfile: Path, *args: str) -> list[str]:
    bindir = Path(sys.executable).parent
    return [str(bindir / "snakemake"), "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
            "--configfile", str(configfile), *args]  # fmt: skip


def env() -> dict[str, str]:
    """The test's interpreter first on PATH, so rules find its `eqlv2`."""
    bindir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}


def run_snakemake(workdir: Path, configfile: Path, *args: str, check: bool = True, timeout: int = 1200):
    result = subprocess.run(
        snakemake_command(workdir, configfile, *args), capture_output=True, text=True, env=env(),
        timeout=timeout,
    )  # fmt: skip
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def shell_command(plan: str, output: str) -> str:
    """The shell command of the job that writes ``output``, from a plan printed with -p."""
    job = rf"\n    output: [^\n]*{re.escape(output)}[^\n]*\n(?:    .*\n)*?Shell command: ([^\n]*)"
    match = re.search(job, plan)
    assert match, plan
    return match.group(1)
