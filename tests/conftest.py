"""Shared fixtures: a small generated dataset, built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from eqlv2.datasets.toy import ToySpec, make_toy

REPO = Path(__file__).resolve().parents[1]
SMALL_SPEC = ToySpec(
    seed=3, num_train_images=300, num_val_images=60, max_images_per_class=160, val_images_per_class=3
)


@pytest.fixture(scope="session")
def small_toy(tmp_path_factory) -> Path:
    """A small embedded dataset (the CI setting's size), generated once."""
    root = tmp_path_factory.mktemp("toy")
    make_toy(root, SMALL_SPEC)
    return root
