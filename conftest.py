"""Collection rules for the whole repository (tests/ and the package's doctests).

The napari widget modules import napari and a Qt binding; without them (the
core install) their doctests are not collected. The widget tests in
tests/napari_plugin/ skip with their reason on their own.
"""

from __future__ import annotations

from importlib.util import find_spec


def napari_gui_available() -> bool:
    """napari, magicgui and a Qt binding are installed."""
    bindings = ("PyQt5", "PyQt6", "PySide2", "PySide6")
    return all(find_spec(m) for m in ("napari", "magicgui", "qtpy")) and any(
        find_spec(b) for b in bindings
    )


collect_ignore_glob = [] if napari_gui_available() else ["biounet/napari/*_widget.py"]
