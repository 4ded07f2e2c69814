"""A folder named biounet beside the user's scripts shadows the package: the CLI says so."""

import sys
from pathlib import Path

from click.testing import CliRunner

import biounet
from biounet.cli import main, shadowing_folder

REPO = Path(biounet.__file__).resolve().parents[1]


def test_no_folder_or_this_package_is_no_shadow(tmp_path):
    assert shadowing_folder(tmp_path) is None
    assert shadowing_folder(REPO) is None  # the package itself, run from its clone


def test_an_empty_clone_named_biounet_shadows_a_hook_installed_package(tmp_path, monkeypatch):
    (tmp_path / "biounet").mkdir()  # the root of a clone: no __init__.py
    # with the package on sys.path, Python prefers it to a namespace folder
    assert shadowing_folder(tmp_path) is None
    # `pip install -e .` installs an import hook, not a path: the folder wins
    monkeypatch.setattr(sys, "path", [p for p in sys.path if Path(p or ".").resolve() != REPO])
    assert shadowing_folder(tmp_path) == tmp_path / "biounet"


def test_another_copy_of_the_package_shadows_it(tmp_path, monkeypatch):
    (tmp_path / "biounet").mkdir()
    (tmp_path / "biounet" / "__init__.py").write_text("")
    assert shadowing_folder(tmp_path) == tmp_path / "biounet"
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, ["summary", "--paper"])
    assert r.exit_code == 0
    (line,) = r.stderr.splitlines()
    assert line.startswith(f"Warning: {tmp_path / 'biounet'}: Python started in this folder ")
    assert line.endswith("rename it (e.g. biounet-src) or run your scripts elsewhere")
    assert r.stdout.startswith("the paper's network: U-Net")
