"""Take docs/figures/napari_widget.png: the Segment (U-Net) widget in a napari window.

Follows the README's napari steps and nothing more: *File > Open Sample >
biounet U-Net > EM slice* (``viewer.open_sample``), *Plugins > biounet U-Net >
Segment (U-Net)* (``add_plugin_dock_widget``, as the menu does), *Segment*
with the bundled model; no layer is selected by hand. Then it saves the
whole window. Needs a display; on a headless machine run it under Xvfb, from
the repository's root (so that this checkout's biounet is the one imported)::

    PYTHONPATH=. xvfb-run -a -s "-screen 0 1600x1000x24" \
        python docs/figures/make_napari_screenshot.py

It needs Qt's X11 libraries (README, napari section): with
``QT_QPA_PLATFORM=offscreen`` instead, the window is drawn but the canvas in
the picture stays black.
"""

from pathlib import Path

import napari
from PIL import Image
from qtpy.QtCore import QEventLoop, QTimer

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "figures" / "napari_widget.png"


def wait_until(condition, timeout_s: float = 600.0) -> None:
    """Run the Qt event loop until `condition()` holds."""
    loop = QEventLoop()
    timer = QTimer()
    timer.timeout.connect(lambda: loop.quit() if condition() else None)
    timer.start(100)
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    loop.exec_()
    timer.stop()
    if not condition():
        raise TimeoutError("the segmentation did not finish")


def pause(seconds: float) -> None:
    """Let Qt draw for a while."""
    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec_()


def main() -> None:
    """Segment the sample in a napari window and save the window."""
    viewer = napari.Viewer(title="napari: biounet")
    viewer.window._qt_window.resize(1400, 860)
    viewer.open_sample("biounet", "em_synthetic")
    _, widget = viewer.window.add_plugin_dock_widget("biounet", "Segment (U-Net)")
    assert widget.image.value is viewer.layers["em_synthetic"], "the sample is not chosen"
    widget.device.value = "cpu"
    widget.run_button.native.click()
    wait_until(lambda: widget.worker is None)
    labels = viewer.layers["em_synthetic labels"]
    labels.opacity = 0.45
    viewer.scale_bar.visible = True
    viewer.reset_view()
    pause(2.0)
    # keep napari's pop-up notices (e.g. about its Qt binding) off the picture
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for notice in viewer.window._qt_window.findChildren(NapariQtNotification):
        notice.close()
    pause(1.0)
    viewer.screenshot(OUT, canvas_only=False, flash=False)
    # 256 colours (no dithering) keep the picture and a third of the bytes
    shot = Image.open(OUT).convert("RGB")
    shot.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        OUT, optimize=True
    )
    import biounet

    print(f"{OUT.relative_to(ROOT)}: {widget.status.value} (biounet from {biounet.__file__})")
    viewer.close()


if __name__ == "__main__":
    main()
