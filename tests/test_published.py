"""The `published` target: the original's checkpoints downloaded (sha256 from the config), imported and
evaluated like ours.  Google Drive is not reachable here; the config's `url` points the download at a local
copy of a checkpoint in the original's format (mmcv 1.x layout), which is what a mirror looks like."""

from __future__ import annotations

import hashlib

import pytest

from .test_import_checkpoint import BASELINE, _as_original, _model
from .workflow_helpers import SMALL_CONFIG, run_snakemake, write_config

BASELINE_ONLY = {"baseline": SMALL_CONFIG["methods"]["baseline"]}


@pytest.fixture
def original_checkpoint(small_toy, tmp_path):
    (tmp_path / "mirror").mkdir()
    return _as_original(_model(BASELINE, small_toy).state_dict(), tmp_path / "mirror" / "epoch_12.pth")


@pytest.mark.slow
def test_published_checkpoint_is_verified_imported_and_evaluated(original_checkpoint, tmp_path):
    sha256 = hashlib.sha256(original_checkpoint.read_bytes()).hexdigest()
    published = {"baseline": {"sha256": sha256, "url": str(original_checkpoint)}}
    configfile = write_config(tmp_path, methods=BASELINE_ONLY, openimages=None, published=published)
    result = run_snakemake(tmp_path, configfile, "--cores", "2", "published")
    assert "rule train:" not in result.stdout + result.stderr  # nothing of ours is trained
    downloaded = tmp_path / "resources/downloads/eqlv2-original-lvis-v1-baseline.pth"
    assert downloaded.read_bytes() == original_checkpoint.read_bytes()
    assert (tmp_path / "results/toy/published/baseline/model_final.pth").is_file()
    table = (tmp_path / "results/toy/published_table.csv").read_text().splitlines()
    # CI's small setting bootstraps (evaluation.bootstrap: 50): each mask AP has its half-width column.
    assert table[0] == "method,end2end,AP,AP ±,APr,APr ±,APc,APc ±,APf,APf ±,AP (box)"
    assert table[1].startswith("Baseline,√,")


def test_without_a_sha256_the_download_stops_naming_the_config_key(original_checkpoint, tmp_path):
    published = {"baseline": {"sha256": None, "url": str(original_checkpoint)}}
    configfile = write_config(tmp_path, methods=BASELINE_ONLY, openimages=None, published=published)
    target = "resources/downloads/eqlv2-original-lvis-v1-baseline.pth"
    result = run_snakemake(tmp_path, configfile, "--cores", "1", target, check=False)
    assert result.returncode != 0
    log = (tmp_path / "logs/downloads/eqlv2-original-lvis-v1-baseline.pth.log").read_text()
    assert "set published.baseline.sha256 in the config" in log and "refusing" in log
    assert not (tmp_path / target).exists()


def test_a_wrong_sha256_leaves_nothing_behind(original_checkpoint, tmp_path):
    published = {"baseline": {"sha256": "0" * 64, "url": str(original_checkpoint)}}
    configfile = write_config(tmp_path, methods=BASELINE_ONLY, openimages=None, published=published)
    target = "resources/downloads/eqlv2-original-lvis-v1-baseline.pth"
    result = run_snakemake(tmp_path, configfile, "--cores", "1", target, check=False)
    assert result.returncode != 0
    assert (
        "sha256 mismatch" in (tmp_path / "logs/downloads/eqlv2-original-lvis-v1-baseline.pth.log").read_text()
    )
    assert not (tmp_path / target).exists()
