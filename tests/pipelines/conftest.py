"""The pipelines are scripts, not a package: the tests load them by path."""

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def load_script(relative: str):
    """The module of the script at `relative` (from the repository's root)."""
    path = REPO / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def script():
    """``script("pipelines/ctc/run.py")``: a pipeline script as a module."""
    return load_script
