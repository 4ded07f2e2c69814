"""The public API: every name in biounet.__all__ is what the docs say, whatever was imported."""

import importlib
import pkgutil
import re
import types
from importlib.util import find_spec
from pathlib import Path

import pytest

import biounet

REPO = Path(__file__).resolve().parents[1]


def napari_gui_installed() -> bool:
    """The napari extra and a Qt binding, which the napari widget modules import."""
    bindings = ("PyQt5", "PyQt6", "PySide2", "PySide6")
    return all(find_spec(m) for m in ("napari", "magicgui", "qtpy")) and any(
        find_spec(b) for b in bindings
    )


def all_submodules() -> list[str]:
    """Every submodule; the napari widgets only where napari and Qt are installed."""
    names = [m.name for m in pkgutil.walk_packages(biounet.__path__, "biounet.")]
    if napari_gui_installed():
        return names
    return [n for n in names if not (n.startswith("biounet.napari.") and n.endswith("_widget"))]


def test_every_public_name_is_its_documented_object_after_importing_every_submodule():
    for name in all_submodules():
        importlib.import_module(name)  # sets biounet.<sub> attributes, as any use would
    exports = biounet._EXPORTS
    assert set(biounet.__all__) == {"__version__", *exports}
    for name, module in exports.items():
        obj = getattr(biounet, name)
        assert not isinstance(obj, types.ModuleType), name
        assert obj is getattr(importlib.import_module(module), name), name
        assert getattr(obj, "__module__", module) == module, (name, obj.__module__)
    from biounet import predict, train  # the README's names, after every import

    assert callable(predict) and callable(train)
    assert predict.__module__ == "biounet.inference.segmentation"


def test_no_public_name_is_also_a_top_level_submodule():
    top = {m.name for m in pkgutil.iter_modules(biounet.__path__)}
    assert not top & set(biounet.__all__)


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        biounet.nope  # noqa: B018


def test_readme_library_example_runs(monkeypatch, capsys):
    text = (REPO / "README.md").read_text()
    code = re.search(r"## Library\n.*?```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(REPO)
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    counts = re.search(r"objects per slice: \[(\d+), (\d+), (\d+)\]", out)
    assert counts and all(int(c) > 0 for c in counts.groups()), out
    pixel = float(re.search(r"pixel error: ([0-9.e-]+)", out).group(1))
    assert 0 <= pixel < 0.2, out
