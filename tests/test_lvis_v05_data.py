"""The data rules of config/lvis_v0.5.yaml: v0.5's annotation archives are downloaded only against a sha256
from the config (none is known to the manifest), then unpacked where the v0.5 configs read them.  The
archive comes from a local copy through ``lvis.mirrors``, which is how a mirror looks to the workflow."""

from __future__ import annotations

import hashlib
import zipfile

import yaml

from .conftest import REPO
from .real_config_helpers import make_lvis_v05
from .workflow_helpers import run_snakemake

ARCHIVE = "lvis_v0.5_val.json.zip"
TARGET = "resources/lvis_v0_5/annotations/lvis_v0.5_val.json"


def _config(tmp_path, archive, sha256):
    """config/lvis_v0.5.yaml with the val archive taken from ``archive`` and its hash set to ``sha256``."""
    config = yaml.safe_load((REPO / "config/lvis_v0.5.yaml").read_text())
    config["lvis"]["mirrors"] = {ARCHIVE: str(archive)}
    config["lvis"]["sha256"][ARCHIVE] = sha256
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _archive(tmp_path):
    ann = make_lvis_v05(tmp_path / "source", "val")
    archive = tmp_path / "mirror" / ARCHIVE
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(ann, ann.name)  # the archive holds lvis_v0.5_val.json at its top, as LVIS's does
    return ann, archive


def test_without_a_sha256_the_v05_download_stops_naming_the_config_key(tmp_path):
    _, archive = _archive(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    result = run_snakemake(work, _config(tmp_path, archive, None), "--cores", "1", TARGET, check=False)
    assert result.returncode != 0
    log = (work / f"logs/downloads/{ARCHIVE}.log").read_text()
    assert f"set lvis.sha256.{ARCHIVE} in the config" in log and "refusing" in log
    assert not (work / "resources/downloads" / ARCHIVE).exists() and not (work / TARGET).exists()


def test_with_its_sha256_the_v05_annotation_file_is_downloaded_and_unpacked(tmp_path):
    ann, archive = _archive(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    sha256 = hashlib.sha256(archive.read_bytes()).hexdigest()
    run_snakemake(work, _config(tmp_path, archive, sha256), "--cores", "1", TARGET)
    assert (work / "resources/downloads" / ARCHIVE).read_bytes() == archive.read_bytes()
    assert (work / TARGET).read_bytes() == ann.read_bytes()


def test_a_wrong_v05_sha256_leaves_nothing_behind(tmp_path):
    _, archive = _archive(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    result = run_snakemake(work, _config(tmp_path, archive, "0" * 64), "--cores", "1", TARGET, check=False)
    assert result.returncode != 0
    assert "sha256 mismatch" in (work / f"logs/downloads/{ARCHIVE}.log").read_text()
    assert not (work / "resources/downloads" / ARCHIVE).exists() and not (work / TARGET).exists()
