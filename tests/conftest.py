"""Shared fixtures: test device, random generator, ISBI data path, --runslow."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
ISBI_DIR = Path(os.environ.get("BIOUNET_ISBI_DIR", REPO.parent / "shared" / "data" / "isbi2012"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def test_device() -> str:
    """Device for tests that can run on a GPU: BIOUNET_TEST_DEVICE, default cpu."""
    return os.environ.get("BIOUNET_TEST_DEVICE", "cpu")


@pytest.fixture(scope="session")
def isbi_dir() -> Path:
    """The ISBI 2012 training data, or a skip saying where it was looked for."""
    needed = ["train-volume.tif", "train-labels.tif"]
    if not all((ISBI_DIR / name).is_file() for name in needed):
        pytest.skip(f"ISBI 2012 data not found in {ISBI_DIR} (set BIOUNET_ISBI_DIR)")
    return ISBI_DIR
